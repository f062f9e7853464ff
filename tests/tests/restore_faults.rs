//! Restores that fail, and backups of what is not an image (issue 13,
//! items 8 and 9): a failed restore to a file leaves no target and no
//! partial file (an existing target keeps its content), a failed restore to
//! a block device says the device is now partial, the exit code is that of
//! the cause (5 damaged chunk, 7 no space), and `backup --image` of a FIFO,
//! a character device, a directory or a socket fails at once, naming it.
//!
//! Invariant of the helpers: every loop device and tmpfs a test sets up is
//! released on drop, also when the test panics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmkeep_tests::cli::*;

const MIB: u64 = 1 << 20;
/// The rig repositories' chunk size (`Rig::new("64K")`).
const CHUNK: usize = 64 << 10;

/// Names of the entries in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Every file under `<repo>/chunks`.
fn chunk_files(rig: &Rig) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&rig.repo.join("chunks"), &mut out);
    out
}

/// Flips one byte in the middle of a chunk file (its checksum then fails).
fn damage(chunk: &Path) {
    let mut b = std::fs::read(chunk).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x5a;
    std::fs::write(chunk, b).unwrap();
}

/// A rig with one generation of disk `d1`, 4 MiB of random data (64
/// chunks), and the image it was taken from; returns the generation id.
fn backed_up(rig: &Rig, seed: u64) -> (String, PathBuf) {
    let image = rig.path(&format!("image-{seed}.raw"));
    std::fs::write(&image, random_bytes(seed, 4 * MIB as usize)).unwrap();
    let v = rig.backup(&image, "d1", &[]);
    (v["generation"].as_str().unwrap().to_string(), image)
}

/// An empty directory for restore targets.
fn out_dir(rig: &Rig) -> PathBuf {
    let d = rig.path(&format!("out-{}", unique()));
    std::fs::create_dir(&d).unwrap();
    d
}

#[test]
fn a_damaged_chunk_leaves_no_target_and_no_partial_file() {
    let rig = Rig::new("64K");
    let (g, _) = backed_up(&rig, 1);
    damage(chunk_files(&rig).iter().nth(10).unwrap());
    let dir = out_dir(&rig);
    let to = dir.join("x.raw");
    let r = rig
        .run(["restore", &g, "--to", s(&to)])
        .fails(5, &["restore failed", s(&to), "was not created", "chunk"]);
    assert_eq!(r.json()["exit_code"], 5, "{r}");
    assert!(!to.exists(), "a failed restore left its target: {r}");
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
}

#[test]
fn a_damaged_chunk_leaves_an_existing_target_unchanged_with_force() {
    let rig = Rig::new("64K");
    let (g, _) = backed_up(&rig, 2);
    damage(chunk_files(&rig).iter().nth(20).unwrap());
    let dir = out_dir(&rig);
    let to = dir.join("x.raw");
    // Another size than the disk's, so a truncation would show too.
    let old = random_bytes(3, 3 * MIB as usize + 123);
    std::fs::write(&to, &old).unwrap();
    rig.run(["restore", &g, "--to", s(&to), "--force"])
        .fails(5, &["restore failed", s(&to), "was not changed"]);
    assert!(
        std::fs::read(&to).unwrap() == old,
        "the existing target was changed"
    );
    assert_eq!(entries(&dir), ["x.raw"]);
}

#[test]
fn no_space_for_the_target_exits_7_and_leaves_nothing() {
    let rig = Rig::new("64K");
    let image = rig.path("big.raw");
    std::fs::write(&image, random_bytes(4, 16 * MIB as usize)).unwrap();
    let g = rig.backup(&image, "big", &[]);
    let g = g["generation"].as_str().unwrap();
    let mnt = Tmpfs::mount(&rig.path("small-fs"), "8M");
    std::fs::write(mnt.dir.join("keep.txt"), b"was here before").unwrap();
    let to = mnt.dir.join("x.raw");
    let r = rig
        .run(["restore", g, "--to", s(&to)])
        .fails(7, &["restore failed", s(&to), "was not created"]);
    assert!(
        r.stderr.to_lowercase().contains("no space left"),
        "the error does not say the space ran out: {r}"
    );
    assert_eq!(r.json()["exit_code"], 7, "{r}");
    assert_eq!(entries(&mnt.dir), ["keep.txt"]);
    assert_eq!(
        std::fs::read(mnt.dir.join("keep.txt")).unwrap(),
        b"was here before"
    );
    drop(mnt);
}

#[test]
fn a_good_restore_leaves_only_its_target_and_a_missing_directory_is_named() {
    let rig = Rig::new("64K");
    let (g, image) = backed_up(&rig, 5);
    let dir = out_dir(&rig);
    let to = dir.join("x.raw");
    // What a killed restore leaves: replaced, then gone.
    std::fs::write(dir.join("x.raw.vmkeep-partial"), vec![0xEEu8; 5 << 20]).unwrap();
    let v = rig.ok(["restore", &g, "--to", s(&to)]);
    assert_eq!(v["target"], format!("file {}", to.display()), "{v}");
    assert_same(&to, &image);
    assert_eq!(entries(&dir), ["x.raw"]);
    // Again over it with --force.
    let v = rig.ok(["restore", &g, "--to", s(&to), "--force"]);
    assert_eq!(v["generation"], g.as_str(), "{v}");
    assert_same(&to, &image);
    assert_eq!(entries(&dir), ["x.raw"]);

    let missing = rig.path("no/such/dir");
    let to = missing.join("x.raw");
    rig.run(["restore", &g, "--to", s(&to)])
        .fails(1, &[s(&to), s(&missing), "does not exist"]);
    assert!(!rig.path("no").exists());
}

/// A loop device over a file; detached on drop (also on panic).
struct LoopDev {
    dev: PathBuf,
}

impl LoopDev {
    #[track_caller]
    fn attach(backing: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run losetup ({e}): this test needs util-linux's losetup")
            });
        assert!(
            out.status.success(),
            "losetup --find --show {} failed ({}): this test needs root and /dev/loop-control: {}",
            backing.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            dev.starts_with("/dev"),
            "losetup printed {:?}, not a device",
            dev
        );
        LoopDev { dev }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let ok = Command::new("losetup")
            .arg("-d")
            .arg(&self.dev)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: cannot detach {}", self.dev.display());
        }
    }
}

#[test]
fn a_failed_restore_to_a_block_device_says_it_is_partial() {
    let rig = Rig::new("64K");
    let (g0, image0) = backed_up(&rig, 6);
    let before = chunk_files(&rig);
    // The same disk with only its last 14 chunks new: the damaged chunk
    // is slot 50 or later.
    let image1 = rig.path("image-1.raw");
    let mut data = std::fs::read(&image0).unwrap();
    data[50 * CHUNK..].copy_from_slice(&random_bytes(7, 14 * CHUNK));
    std::fs::write(&image1, &data).unwrap();
    let g1 = rig.backup(&image1, "d1", &[]);
    let g1 = g1["generation"].as_str().unwrap();
    let new: Vec<_> = chunk_files(&rig).difference(&before).cloned().collect();
    assert_eq!(new.len(), 14, "{new:?}");
    damage(&new[0]);

    let backing = rig.path("loop-backing.raw");
    std::fs::write(&backing, vec![0x11u8; 4 * MIB as usize]).unwrap();
    let lo = LoopDev::attach(&backing);
    let dev = s(&lo.dev);
    // One worker: its window (8 slots) lets the reader reach slot 50 only
    // after the writer wrote 40 slots, so writing surely started.
    let r = rig
        .run(["restore", g1, "--to", dev, "--threads", "1"])
        .fails(5, &["restore failed", dev, "is now partial", "chunk"]);
    assert!(
        !r.stderr.contains("was not"),
        "the error says the device was left alone: {r}"
    );
    let v = rig.ok(["restore", &g0, "--to", dev]);
    assert_eq!(v["target"], format!("device {dev}"), "{v}");
    let got = std::fs::read(&lo.dev).unwrap();
    assert!(
        got == std::fs::read(&image0).unwrap(),
        "{dev} does not read back the image"
    );
}

/// Runs `c`, killing it and failing the test when it takes longer than
/// `limit`. Output goes to files, so a child that hangs cannot block it.
#[track_caller]
fn run_with_timeout(rig: &Rig, mut c: Command, limit: Duration) -> Run {
    let cmdline = format!("{c:?}");
    let (out, err) = (rig.path("child.out"), rig.path("child.err"));
    c.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmdline} still ran after {limit:?} (killed); stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        cmdline,
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

#[test]
fn backup_of_a_fifo_device_directory_or_socket_fails_at_once_naming_it() {
    let rig = Rig::new("64K");
    let fifo = rig.path("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
    // A symlink is followed (as for /dev/disk/by-id/...) and still refused.
    let link = rig.path("fifo-link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let dir = rig.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let sock = rig.path("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for (p, what) in [
        (fifo.as_path(), "is a FIFO"),
        (link.as_path(), "is a FIFO"),
        (Path::new("/dev/zero"), "is a character device"),
        (dir.as_path(), "is a directory"),
        (sock.as_path(), "is a socket"),
    ] {
        let c = rig.command(["backup", "--image", s(p), "--disk", "d1"]);
        let r = run_with_timeout(&rig, c, Duration::from_secs(20)).fails(
            1,
            &[s(p), what, "neither a regular file nor a block device"],
        );
        assert_eq!(r.json()["exit_code"], 1, "{r}");
    }
    assert!(rig.generations().is_empty());
}
