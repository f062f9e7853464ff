//! Crash safety (issue 3): `kill -9` a backup at random points, and a gc at
//! random points; after each kill `verify` is clean and every generation
//! committed before the kill restores byte for byte.
//!
//! CI runs a short loop; `VMKEEP_CRASH_BACKUPS` and `VMKEEP_CRASH_GCS` set
//! the number of kills for a long soak (`scripts/soak.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use vmkeep_tests::cli::{random_bytes, s, text_bytes, write_at, Rig};

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `vmkeep ARGS` and kills it with SIGKILL after `after`; returns true
/// when the process was still running (a real crash), false when it had
/// already finished.
fn kill_after(rig: &Rig, args: &[&str], after: Duration) -> bool {
    let mut child = rig
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vmkeep");
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    running
}

/// Checks the repository after a crash: verify (which reads and re-hashes
/// every referenced chunk) is clean, and the generations not checked before
/// restore to the image their source name says. `seen` remembers the
/// generations already restored, so the whole history is restored once.
fn check(rig: &Rig, images: &BTreeMap<String, PathBuf>, seen: &mut BTreeSet<String>, what: &str) {
    let v = rig.run(["verify"]);
    assert_eq!(v.code, 0, "{what}: verify after the kill: {v}");
    for g in rig.generations() {
        let src = g["source"].as_str().unwrap().to_string();
        let id = g["id"].as_str().unwrap().to_string();
        if seen.insert(id.clone()) {
            rig.assert_restores(&id[..16], &images[&src]);
        }
    }
}

/// Restores every generation again (after the last kill).
fn check_all(rig: &Rig, images: &BTreeMap<String, PathBuf>, what: &str) {
    check(rig, images, &mut BTreeSet::new(), what);
}

#[test]
fn killed_backups_never_damage_the_repository() {
    let rig = Rig::new("64K");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut images = BTreeMap::new();
    // A committed generation to protect from the start.
    let base = rig.path("base.raw");
    std::fs::write(&base, text_bytes(1, 12 << 20)).unwrap();
    rig.backup(&base, "base", &[]);
    images.insert("base".to_string(), base.clone());
    // Every image is the base with new data in a few places, so every
    // backup writes new chunks.
    let changed = |rng: &mut rand::rngs::StdRng, img: &std::path::Path| {
        std::fs::copy(&base, img).unwrap();
        for _ in 0..4 {
            let at = rng.gen_range(0..(12u64 << 20) - (1 << 20));
            write_at(img, at, &random_bytes(rng.gen(), 1 << 20));
        }
    };
    // How long does an unkilled backup of such an image take?
    let probe = rig.path("probe.raw");
    changed(&mut rng, &probe);
    let t0 = Instant::now();
    rig.backup(&probe, "probe", &[]);
    let full = t0.elapsed();
    images.insert("probe".to_string(), probe);
    let n = count("VMKEEP_CRASH_BACKUPS", 50);
    let mut crashed = 0;
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let img = rig.path(&format!("img{i}.raw"));
        changed(&mut rng, &img);
        let name = format!("d{i}");
        images.insert(name.clone(), img.clone());
        let after = full.mul_f64(rng.gen_range(0.0..1.2));
        if kill_after(
            &rig,
            &["backup", "--image", s(&img), "--disk", &name],
            after,
        ) {
            crashed += 1;
        }
        check(
            &rig,
            &images,
            &mut seen,
            &format!("backup kill {i} after {after:?}"),
        );
    }
    check_all(&rig, &images, "after every backup kill");
    assert!(
        crashed >= n / 2,
        "only {crashed} of {n} kills hit a running backup"
    );
    // The repository still takes backups, and they dedup against what survived.
    let v = rig.backup(&base, "base", &[]);
    assert_eq!(v["new_chunks"], 0, "{v}");
}

#[test]
fn killed_gcs_never_damage_the_repository() {
    let rig = Rig::new("64K");
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let mut images = BTreeMap::new();
    let n = count("VMKEEP_CRASH_GCS", 20);
    let mut crashed = 0;
    let mut seen = BTreeSet::new();
    for i in 0..n {
        // Two new generations, then forget all but the newest three, and age
        // every object so gc may collect what is unreferenced.
        for j in 0..2 {
            let name = format!("g{i}-{j}");
            let img = rig.path(&format!("{name}.raw"));
            std::fs::write(&img, random_bytes(rng.gen(), 4 << 20)).unwrap();
            rig.backup(&img, &name, &[]);
            images.insert(name, img);
        }
        let gens = rig.generations();
        for g in &gens[..gens.len().saturating_sub(3)] {
            let id = g["id"].as_str().unwrap();
            // Forget by removing the generation file, as `forget` does.
            std::fs::remove_file(rig.repo.join("generations").join(id)).unwrap();
        }
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {0}/chunks {0}/pages {0}/manifests -type f -exec touch -d '2 hours ago' {{}} +",
                rig.repo.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        let t0 = Instant::now();
        let probe = rig.run(["gc", "--help"]);
        assert_eq!(probe.code, 0);
        let startup = t0.elapsed();
        let after = startup.mul_f64(rng.gen_range(0.5..4.0));
        if kill_after(&rig, &["gc"], after) {
            crashed += 1;
        }
        check(
            &rig,
            &images,
            &mut seen,
            &format!("gc kill {i} after {after:?}"),
        );
    }
    // A complete gc afterwards leaves a clean repository and an empty trash.
    let v = rig.ok(["gc"]);
    assert!(v["pending_batches"].as_array().unwrap().is_empty(), "{v}");
    check_all(&rig, &images, "final gc");
    assert_eq!(rig.files("trash"), 0);
    assert!(crashed > 0, "no kill hit a running gc");
}
