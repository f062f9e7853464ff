//! Lock files a command finds in `locks/` (issue 13, item 7; SPEC.md
//! §13.1), through the `vmkeep` binary: a valid lock written with spaces
//! after the colons is read like a compact one, so a dead holder's lock is
//! stale; a torn lock blocks, naming its file, only until it is 30 minutes
//! old; plain `unlock` removes stale locks, naming each, and reports the
//! live ones it keeps.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;

/// A rig repository and a 2 MiB image to back up.
fn setup() -> (Rig, PathBuf) {
    let rig = Rig::new("64K");
    let img = rig.path("disk.raw");
    sparse_file(&img, 2 * MIB);
    write_at(&img, 0, &random_bytes(7, 300_000));
    (rig, img)
}

/// Unix seconds now.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// This host's name as vmkeep records it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A pid no process has now (the highest free one below pid_max).
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (2..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

/// A lock line of SPEC.md §13.1 with a space after every colon and comma.
fn spaced_lock(host: &str, pid: u32, mode: &str, started: i64, refreshed: i64) -> String {
    format!(
        "{{\"host\": \"{host}\", \"pid\": {pid}, \"command\": \"vmkeep backup\", \
         \"mode\": \"{mode}\", \"started\": {started}, \"refreshed\": {refreshed}, \
         \"parent\": null}}\n"
    )
}

/// Writes `locks/<name>` of the rig's repository.
fn plant(rig: &Rig, name: &str, text: &[u8]) -> PathBuf {
    let p = rig.repo.join("locks").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// Sets a file's modification time `secs` into the past.
fn age(p: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// The strings of a JSON array field.
#[track_caller]
fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key:?} in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_spaced_lock_of_a_dead_process_is_stale_and_unlock_removes_it() {
    let (rig, img) = setup();
    let t = now() - 2 * 3600;
    let name = "00000000deadbeef";
    let p = plant(
        &rig,
        name,
        spaced_lock(&hostname(), dead_pid(), "exclusive", t, t).as_bytes(),
    );
    rig.backup(&img, "d1", &[]);
    let v = rig.ok(["unlock"]);
    let removed = strings(&v, "removed");
    assert_eq!(removed.len(), 1, "{v}");
    assert!(removed[0].contains(&format!("locks/{name}")), "{v}");
    assert!(removed[0].contains("vmkeep backup"), "{v}");
    assert!(strings(&v, "live").is_empty(), "{v}");
    assert!(!p.exists());
}

#[test]
fn a_torn_lock_blocks_naming_its_file_until_it_is_30_minutes_old() {
    let (rig, img) = setup();
    let line = spaced_lock(&hostname(), std::process::id(), "shared", now(), now());
    let name = "0123456789abcdef";
    let p = plant(&rig, name, &line.as_bytes()[..line.len() / 2]);

    let r = rig
        .run(["backup", "--image", s(&img), "--disk", "d1"])
        .fails(6, &[&format!("locks/{name}"), "unreadable", "unlock --all"]);
    assert!(rig.generations().is_empty(), "{r}");
    // Young: plain unlock keeps it and says so.
    let v = rig.ok(["unlock"]);
    assert!(strings(&v, "removed").is_empty(), "{v}");
    assert_eq!(strings(&v, "live").len(), 1, "{v}");
    assert!(p.exists());

    age(&p, 31 * 60);
    rig.backup(&img, "d1", &[]);
    let v = rig.ok(["unlock"]);
    let removed = strings(&v, "removed");
    assert_eq!(removed.len(), 1, "{v}");
    assert!(removed[0].contains(&format!("locks/{name}")), "{v}");
    assert!(removed[0].contains("unreadable"), "{v}");
    assert!(!p.exists());
}

#[test]
fn unlock_reports_and_keeps_a_live_lock() {
    let (rig, _img) = setup();
    let name = "feedfacefeedface";
    let p = plant(
        &rig,
        name,
        spaced_lock(&hostname(), std::process::id(), "shared", now(), now()).as_bytes(),
    );
    let v = rig.ok(["unlock"]);
    assert!(strings(&v, "removed").is_empty(), "{v}");
    let live = strings(&v, "live");
    assert_eq!(live.len(), 1, "{v}");
    assert!(live[0].contains(&format!("locks/{name}")), "{v}");
    assert!(
        live[0].contains(&format!("pid {}", std::process::id())),
        "{v}"
    );
    let r = rig.human(["unlock"]);
    assert!(
        r.stdout.contains("no stale locks; 1 live lock remains:")
            && r.stdout.contains(&format!("locks/{name}")),
        "{r}"
    );
    assert!(p.exists());
}
