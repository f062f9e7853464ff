//! `vmkeep gc` and `vmkeep stats` on a repository with a damaged
//! generation (issue 13): both succeed, and both name the generation (gc
//! as a warning saying what it keeps and how to collect it); `gc` right
//! after `forget` says why it freed nothing; `stats` tells garbage from
//! referenced data.

use std::path::Path;

use serde_json::Value;
use vmkeep_tests::cli::{random_bytes, Rig};

const MIB: usize = 1 << 20;

/// Backs up 1 MiB of random data from `seed`; returns the generation id.
fn backup(rig: &Rig, seed: u64) -> String {
    let img = rig.path(&format!("disk-{seed}.raw"));
    std::fs::write(&img, random_bytes(seed, MIB)).unwrap();
    let v = rig.backup(&img, "d1", &[]);
    v["generation"].as_str().unwrap().to_string()
}

/// Flips a byte in the middle of a file.
fn damage(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(path, &b).unwrap();
}

#[track_caller]
fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

#[test]
fn gc_and_stats_go_on_past_a_damaged_generation() {
    let rig = Rig::new("64K");
    let _good = backup(&rig, 1);
    let bad = backup(&rig, 2);
    damage(&rig.repo.join("generations").join(&bad));
    let short = &bad[..8];
    let warning = format!("vmkeep: warning: generation {short} cannot be read");

    let r = rig.run(["gc"]).ok();
    assert!(r.stderr.contains(&warning), "{r}");
    assert!(r.stderr.contains("every manifest is kept"), "{r}");
    assert!(r.stderr.contains(&format!("vmkeep forget {bad}")), "{r}");
    let v = r.json();
    let u = &v["unreadable"][0];
    assert_eq!(u["type"], "generation", "{v}");
    assert_eq!(u["id"], bad.as_str(), "{v}");
    assert_eq!(n(&v, "generations"), 1, "{v}");
    let r = rig.human(["gc"]).ok();
    assert!(r.stderr.contains(&warning), "{r}");

    let r = rig.run(["stats"]).ok();
    assert!(r.stderr.contains(&warning), "{r}");
    let v = r.json();
    assert_eq!(n(&v, "generations"), 1, "{v}");
    assert_eq!(n(&v, "damaged_generation_count"), 1, "{v}");
    assert_eq!(v["damaged_generations"][0]["id"], bad.as_str(), "{v}");
    assert_eq!(n(&v, "chunks"), 16, "the readable generation's: {v}");
    let r = rig.human(["stats"]).ok();
    assert!(r.stderr.contains(&warning), "{r}");
    assert!(
        r.stdout.contains("damaged generations: 1") && r.stdout.contains(short),
        "{r}"
    );
}

#[test]
fn gc_right_after_forget_says_why_it_freed_nothing() {
    let rig = Rig::new("64K");
    backup(&rig, 3);
    backup(&rig, 4);
    rig.ok(["forget", "--keep-last", "1"]);

    let v = rig.ok(["stats"]);
    assert_eq!(n(&v, "chunks"), 16, "{v}");
    assert_eq!(n(&v, "garbage_chunks"), 16, "the forgotten one's: {v}");
    assert!(n(&v, "garbage_stored_bytes") > MIB as u64, "{v}");
    let dedup = v["dedup_ratio"].as_f64().unwrap();
    assert!((dedup - 1.0).abs() < 1e-9, "over referenced data only: {v}");

    let v = rig.ok(["gc"]);
    assert_eq!(n(&v, "trashed"), 0, "{v}");
    assert_eq!(
        n(&v, "kept_recent"),
        18,
        "16 chunks, a page, a manifest: {v}"
    );
    assert!(n(&v, "kept_recent_bytes") > MIB as u64, "{v}");
    assert_eq!(n(&v, "clock_margin"), 60, "{v}");
    assert_eq!(v["cutoff_reason"], "60 s clock margin", "{v}");
    let msg = v["kept_recent_message"].as_str().unwrap();
    let cut = v["cutoff_time"].as_str().unwrap();
    assert!(
        msg.starts_with("18 unreferenced objects (")
            && msg.contains(&format!("newer than the cut-off {cut} (60 s clock margin)"))
            && msg.ends_with("stay until a later gc"),
        "{msg}"
    );
    let r = rig.human(["gc"]).ok();
    assert!(
        r.stdout.contains("18 unreferenced objects (")
            && r.stdout.contains("stay until a later gc"),
        "{r}"
    );
}
