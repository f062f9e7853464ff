//! Concurrency (issue text: "a backup and a gc started together, in both
//! orders, many times: no generation ever references a missing chunk"),
//! through two real `vmkeep` processes per round.
//!
//! Every round first makes garbage that the round's backup needs again:
//! `forget --keep-last 1` drops the generation before the newest, every
//! chunk, page and manifest is aged two hours (so gc's 60 s clock margin
//! does not protect it: "old garbage"), and the new image takes back some
//! slots (every fifth round: all of them) from the forgotten generation.
//! Then `vmkeep backup` and `vmkeep gc` start together: backup first in
//! even rounds, gc first in odd ones, 0 to 30 ms apart. Every other pair of
//! rounds gc uses its own cache directory (as a gc run from another host
//! would), so the two really run side by side instead of taking turns on
//! the local RocksDB index, and the backup deduplicates against index
//! entries gc has just made stale. Every third round's backup is
//! incremental (`--parent` and `--changed-areas`).
//!
//! Both processes must succeed: locks let a backup and a gc run together
//! (SPEC.md §13.1), so even the "locked" exit code would be a failure.
//! After every round `verify` is clean and every generation restores byte
//! for byte; every fourth round a gc with nothing running must empty the
//! trash, and verify must still be clean, so nothing any generation needs
//! was left in (or deleted from) the trash. A final gc of the aged
//! repository leaves no trash and exactly the referenced chunks.
//!
//! `VMKEEP_CONCURRENCY_ROUNDS` sets the number of rounds (default 16) for
//! a longer soak.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use vmkeep_tests::cli::{random_bytes, s, write_areas, Rig, Run};

/// The repository's chunk size.
const SLOT: usize = 64 << 10;
/// Slots per image: 16 MiB, one manifest page.
const SLOTS: usize = 256;
/// Slots that get new random data in a partial round.
const FRESH: usize = 40;
/// Slots that take back the forgotten generation's data in a partial round.
const REVERTED: usize = 24;

fn rounds() -> usize {
    std::env::var("VMKEEP_CONCURRENCY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// A string field of a JSON document.
#[track_caller]
fn st<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// A number field of a JSON document.
#[track_caller]
fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// Sets the modification time of every file under `dir` to `t`.
fn age(dir: &Path, t: SystemTime) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            age(&e.path(), t);
        } else {
            File::open(e.path()).unwrap().set_modified(t).unwrap();
        }
    }
}

/// Makes every object of the repository two hours old, so that gc may
/// collect whatever nothing references.
fn age_objects(repo: &Path) {
    let t = SystemTime::now() - Duration::from_secs(2 * 3600);
    for d in ["chunks", "pages", "manifests"] {
        age(&repo.join(d), t);
    }
}

/// Writes an image file from its slots.
fn write_image(path: &Path, slots: &[Vec<u8>]) {
    std::fs::write(path, slots.concat()).unwrap();
}

/// A started `vmkeep` process.
struct Started {
    cmdline: String,
    child: Child,
}

fn start(mut c: Command) -> Started {
    let cmdline = format!("{c:?}");
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Started { cmdline, child }
}

/// Waits for a started process; returns its outcome and when it ended
/// (measured from `t0`).
fn finish(p: Started, t0: Instant) -> (Run, Duration) {
    let out = p.child.wait_with_output().unwrap();
    let ended = t0.elapsed();
    (
        Run {
            cmdline: p.cmdline,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        ended,
    )
}

/// Verify is clean and every generation restores to its image.
#[track_caller]
fn check(rig: &Rig, images: &HashMap<String, PathBuf>, what: &str) {
    let v = rig.run(["verify"]);
    assert_eq!(v.code, 0, "{what}: verify: {v}");
    assert_eq!(v.json()["clean"], true, "{what}: verify: {v}");
    for g in rig.generations() {
        let id = st(&g, "id");
        let img = images
            .get(id)
            .unwrap_or_else(|| panic!("{what}: unknown generation {id}"));
        rig.assert_restores(id, img);
    }
}

/// A gc with nothing else running: every trash batch is emptied.
#[track_caller]
fn quiet_gc(rig: &Rig, what: &str) -> Value {
    let v = rig.ok(["gc"]);
    assert_eq!(
        v["pending_batches"].as_array().map(Vec::len),
        Some(0),
        "{what}: a gc with nothing running left batches: {v}"
    );
    assert_eq!(rig.files("trash"), 0, "{what}: trash not empty after {v}");
    assert_eq!(rig.files("trashlog"), 0, "{what}: trashlog left after {v}");
    v
}

#[test]
fn backup_and_gc_started_together_never_lose_a_chunk() {
    let rig = Rig::new("64K");
    let t_start = Instant::now();
    let gc_cache = rig.path("gc-cache");
    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    // The slots of the two live generations' images (older first), the
    // generations in commit order, and each live generation's image file.
    let mut history: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut gens: Vec<String> = Vec::new();
    let mut images: HashMap<String, PathBuf> = HashMap::new();
    for k in 0..2 {
        let slots: Vec<Vec<u8>> = (0..SLOTS).map(|_| random_bytes(rng.gen(), SLOT)).collect();
        let img = rig.path(&format!("setup{k}.raw"));
        write_image(&img, &slots);
        let b = rig.backup(&img, "vm", &[]);
        let id = st(&b, "generation").to_string();
        images.insert(id.clone(), img);
        gens.push(id);
        history.push(slots);
    }

    let n_rounds = rounds();
    let (mut overlapped, mut interleaved) = (0, 0);
    let (mut trashed, mut deleted, mut restored, mut pending) = (0, 0, 0, 0);
    for r in 0..n_rounds {
        let backup_first = r % 2 == 0;
        let separate_caches = (r / 2) % 2 == 1;
        let incremental = r % 3 == 2;
        let full_revert = r % 5 == 4;
        let delay = Duration::from_millis(*[0u64, 0, 1, 3, 10, 30].choose(&mut rng).unwrap());
        let what = format!(
            "round {r} ({} first, {} apart, {} caches, {} backup, {} revert)",
            if backup_first { "backup" } else { "gc" },
            if delay.is_zero() {
                "0 ms".to_string()
            } else {
                format!("{delay:?}")
            },
            if separate_caches {
                "separate"
            } else {
                "shared"
            },
            if incremental { "incremental" } else { "full" },
            if full_revert { "full" } else { "partial" },
        );

        // Garbage the backup will need again: forget the older of the two
        // live generations and make everything old.
        let (older, newer) = (gens[gens.len() - 2].clone(), gens[gens.len() - 1].clone());
        let f = rig.ok(["forget", "--keep-last", "1"]);
        let kept: Vec<&str> = f["generations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["keep"] == true)
            .map(|g| st(g, "id"))
            .collect();
        assert_eq!(
            kept,
            [newer.as_str()],
            "{what}: `forget --keep-last 1` did not keep the newest generation {newer} \
             (generations: {:?}): {f}",
            rig.generations()
        );
        std::fs::remove_file(&images[&older]).unwrap();
        images.remove(&older);
        age_objects(&rig.repo);

        // The new image: the newest one, with some slots new and some (or
        // all) taken back from the forgotten generation.
        let (forgotten, prev) = (&history[history.len() - 2], &history[history.len() - 1]);
        let mut slots = prev.clone();
        let mut changed = vec![false; SLOTS];
        if full_revert {
            slots = forgotten.clone();
            for (i, c) in changed.iter_mut().enumerate() {
                *c = forgotten[i] != prev[i];
            }
        } else {
            let mut differing: Vec<usize> =
                (0..SLOTS).filter(|&i| forgotten[i] != prev[i]).collect();
            differing.shuffle(&mut rng);
            for &i in differing.iter().take(REVERTED) {
                slots[i] = forgotten[i].clone();
                changed[i] = true;
            }
            let mut rest: Vec<usize> = (0..SLOTS).filter(|&i| !changed[i]).collect();
            rest.shuffle(&mut rng);
            for &i in rest.iter().take(FRESH) {
                slots[i] = random_bytes(rng.gen(), SLOT);
                changed[i] = true;
            }
        }
        let reused_garbage = (0..SLOTS)
            .filter(|&i| changed[i] && slots[i] == forgotten[i])
            .count();
        assert!(reused_garbage > 0, "{what}: no garbage to reuse");
        let img = rig.path(&format!("img{r}.raw"));
        write_image(&img, &slots);
        let mut backup_args = vec![
            "backup".to_string(),
            "--image".into(),
            s(&img).into(),
            "--disk".into(),
            "vm".into(),
        ];
        if incremental {
            let cbt = rig.path(&format!("img{r}.cbt"));
            let areas: Vec<(u64, u64)> = (0..SLOTS)
                .filter(|&i| changed[i])
                .map(|i| ((i * SLOT) as u64, SLOT as u64))
                .collect();
            write_areas(&cbt, &areas);
            backup_args.extend([
                "--parent".into(),
                newer.clone(),
                "--changed-areas".into(),
                s(&cbt).into(),
            ]);
        }

        // Both at once.
        let backup_cmd = rig.command(&backup_args);
        let mut gc_cmd = rig.command(["gc"]);
        if separate_caches {
            gc_cmd.env("VMKEEP_CACHE_DIR", &gc_cache);
        }
        let (first_cmd, second_cmd) = if backup_first {
            (backup_cmd, gc_cmd)
        } else {
            (gc_cmd, backup_cmd)
        };
        let t0 = Instant::now();
        let mut first = start(first_cmd);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let first_running = first.child.try_wait().unwrap().is_none();
        let second = start(second_cmd);
        let second_started = t0.elapsed();
        let ((r1, e1), (r2, e2)) = std::thread::scope(|sc| {
            let h1 = sc.spawn(|| finish(first, t0));
            let h2 = sc.spawn(|| finish(second, t0));
            (h1.join().unwrap(), h2.join().unwrap())
        });
        let ((backup, backup_end), (gc, gc_end)) = if backup_first {
            ((r1, e1), (r2, e2))
        } else {
            ((r2, e2), (r1, e1))
        };
        assert!(
            backup.code == 0 && gc.code == 0,
            "{what}: a backup and a gc must both succeed side by side\n{backup}\n{gc}"
        );
        let (bj, gj) = (backup.json(), gc.json());
        if first_running {
            overlapped += 1;
        }
        trashed += n(&gj, "trashed");
        deleted += n(&gj, "deleted");
        restored += n(&gj, "restored");
        let pend = gj["pending_batches"].as_array().map_or(0, Vec::len);
        // Garbage chunks the backup found gone (swept before it got there)
        // and stored again; between 0 and all of them means the sweep ran
        // while the backup was deduplicating.
        let fresh = if full_revert { 0 } else { FRESH as u64 };
        let stored_again = n(&bj, "new_chunks").saturating_sub(fresh);
        pending += usize::from(pend > 0);
        interleaved += usize::from(stored_again > 0 && stored_again < reused_garbage as u64);
        eprintln!(
            "{what}: second started at {second_started:?} (first still running: {first_running}); \
             backup ended {backup_end:?} (new {}, dedup {}, reused {}, stored again \
             {stored_again} of {reused_garbage} garbage chunks), gc ended {gc_end:?} \
             (trashed {}, deleted {}, put back {}, pending batches {pend})",
            n(&bj, "new_chunks"),
            n(&bj, "dedup_chunks"),
            n(&bj, "reused_slots"),
            n(&gj, "trashed"),
            n(&gj, "deleted"),
            n(&gj, "restored"),
        );

        let id = st(&bj, "generation").to_string();
        images.insert(id.clone(), img);
        gens.push(id);
        history.push(slots);
        if history.len() > 2 {
            history.remove(0);
        }
        check(&rig, &images, &what);
        if r % 4 == 3 {
            let v = quiet_gc(&rig, &what);
            restored += n(&v, "restored");
            deleted += n(&v, "deleted");
            check(&rig, &images, &format!("{what}, after a quiet gc"));
        }
    }

    // Nothing running: a gc of the aged repository keeps exactly what the
    // live generations reference, and leaves no trash.
    age_objects(&rig.repo);
    quiet_gc(&rig, "final gc");
    check(&rig, &images, "final gc");
    let v = rig.ok(["verify"]);
    assert_eq!(
        rig.files("chunks") as u64,
        n(&v, "chunks_referenced"),
        "the final gc left unreferenced chunks: {v}"
    );
    assert_eq!(rig.files("generations"), 2);

    eprintln!(
        "{n_rounds} rounds in {:?}: second process started while the first ran in {overlapped}; \
         gc trashed {trashed}, deleted {deleted}, put back {restored} objects, \
         left batches pending in {pending} rounds; the sweep ran during the backup's \
         deduplication in {interleaved}",
        t_start.elapsed()
    );
    // The rounds did what they are for: real overlap, and real garbage.
    assert!(
        overlapped * 2 >= n_rounds,
        "only {overlapped} of {n_rounds} rounds overlapped"
    );
    assert!(trashed > 0 && deleted > 0, "gc never collected anything");
}
