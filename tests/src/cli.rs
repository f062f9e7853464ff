//! The command-line part of the test rig: builds the `vmkeep` binary with
//! cargo (once per test process), gives each test its own repository and
//! cache directory, runs commands with `--json` and hands back exit code,
//! stdout and stderr, and makes and compares disk images.
//!
//! Invariants: the binary is built into the workspace's target directory
//! (`CARGO_TARGET_DIR` or `<workspace>/target`), so `cargo test --workspace`
//! from a clean clone works and always tests the current sources; child
//! processes see only the `VMKEEP_*` variables the rig sets, and never a
//! terminal on stdin (so they never prompt).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use serde_json::Value;

pub use crate::vddk::{target_dir, workspace_root};

/// The password every rig repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";
/// Cheap Argon2id costs for tests.
pub const KDF: [&str; 4] = ["--kdf-memory-kib", "1024", "--kdf-iterations", "1"];
/// Variables a child must not inherit from the test's environment.
const SCRUB: [&str; 7] = [
    "VMKEEP_REPOSITORY",
    "VMKEEP_PASSWORD",
    "VMKEEP_PASSWORD_FILE",
    "VMKEEP_NEW_PASSWORD",
    "VMKEEP_NEW_PASSWORD_FILE",
    "VMKEEP_CACHE_DIR",
    "RUST_LOG",
];

/// The `vmkeep` binary, built with `cargo build -p vmkeep-cli` once per
/// process.
pub fn vmkeep_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let out = Command::new(cargo)
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", target_dir())
            .args(["build", "--quiet", "-p", "vmkeep-cli", "--bin", "vmkeep"])
            .stdin(Stdio::null())
            .output()
            .expect("run cargo to build the vmkeep binary");
        assert!(
            out.status.success(),
            "building vmkeep failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = target_dir().join("debug").join("vmkeep");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The outcome of one `vmkeep` run.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Asserts exit code `code` and that stderr holds every needle.
    #[track_caller]
    pub fn fails(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(self.code, code, "wrong exit code: {self}");
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}: {self}");
        }
        assert!(
            self.stderr.contains("vmkeep: error: "),
            "no error line: {self}"
        );
        self
    }

    /// The JSON document on stdout (its last non-empty line).
    #[track_caller]
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output: {self}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout\n{}--- stderr\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// A scratch directory with a repository location, a cache directory and
/// room for images; all removed on drop.
pub struct Rig {
    pub tmp: tempfile::TempDir,
    /// The repository (`<tmp>/repo` unless changed).
    pub repo: PathBuf,
    /// The index cache directory.
    pub cache: PathBuf,
    /// The password the commands get in `VMKEEP_PASSWORD`.
    pub password: String,
}

impl Rig {
    /// A rig with no repository yet.
    pub fn empty() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vmkeep-cli-")
            .tempdir()
            .unwrap();
        Rig {
            repo: tmp.path().join("repo"),
            cache: tmp.path().join("cache"),
            password: PASSWORD.to_string(),
            tmp,
        }
    }

    /// A rig with an encrypted repository of `chunk_size` (e.g. "64K", "1M").
    pub fn new(chunk_size: &str) -> Self {
        let r = Self::empty();
        let mut args = vec!["init", "--chunk-size", chunk_size];
        args.extend(KDF);
        let v = r.ok(&args);
        assert_eq!(v["encrypted"], true, "{v}");
        r
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Gives `c` this rig's repository, password and cache, and no other
    /// `VMKEEP_*` variable (for `vmkeep` itself or a shell that runs it).
    pub fn environment(&self, c: &mut Command) {
        for v in SCRUB {
            c.env_remove(v);
        }
        c.env("VMKEEP_REPOSITORY", &self.repo)
            .env("VMKEEP_PASSWORD", &self.password)
            .env("VMKEEP_CACHE_DIR", &self.cache)
            .stdin(Stdio::null());
    }

    /// `vmkeep ARGS` for humans (no `--json`) with this rig's environment.
    pub fn human_command<I, A>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut c = Command::new(vmkeep_bin());
        self.environment(&mut c);
        c.args(args);
        c
    }

    /// Runs `vmkeep ARGS` for humans (no `--json`).
    pub fn human<I, A>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        run_command(self.human_command(args))
    }

    /// `vmkeep --json ARGS` with this rig's repository, password and cache.
    pub fn command<I, A>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut c = Command::new(vmkeep_bin());
        self.environment(&mut c);
        c.arg("--json").args(args);
        c
    }

    /// Runs `vmkeep --json ARGS`.
    pub fn run<I, A>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        run_command(self.command(args))
    }

    /// Runs `vmkeep --json ARGS`, asserts success, returns its JSON.
    #[track_caller]
    pub fn ok<I, A>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        self.run(args).ok().json()
    }

    /// `backup --image IMAGE --disk DISK EXTRA...`; returns its JSON.
    #[track_caller]
    pub fn backup(&self, image: &Path, disk: &str, extra: &[&str]) -> Value {
        let mut a = vec!["backup", "--image", s(image), "--disk", disk];
        a.extend_from_slice(extra);
        let v = self.ok(&a);
        assert!(
            v["generation"].as_str().is_some_and(|g| g.len() == 64),
            "{v}"
        );
        v
    }

    /// `generations`: the list, oldest first.
    #[track_caller]
    pub fn generations(&self) -> Vec<Value> {
        match self.ok(["generations"]) {
            Value::Array(v) => v,
            other => panic!("generations printed {other}"),
        }
    }

    /// Restores `generation` to a fresh file in the scratch directory.
    #[track_caller]
    pub fn restore(&self, generation: &str) -> PathBuf {
        let to = self.path(&format!("restore-{}.raw", unique()));
        let v = self.ok(["restore", generation, "--to", s(&to)]);
        assert_eq!(v["target"], format!("file {}", to.display()), "{v}");
        to
    }

    /// Restores `generation` and asserts it equals `expected` byte for
    /// byte; removes the restored file.
    #[track_caller]
    pub fn assert_restores(&self, generation: &str, expected: &Path) {
        let to = self.restore(generation);
        assert_same(&to, expected);
        std::fs::remove_file(&to).unwrap();
    }

    /// Number of files under `<repo>/sub` ("" for the whole repository).
    pub fn files(&self, sub: &str) -> usize {
        count_files(&self.repo.join(sub))
    }
}

/// A number unique within this process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command, collecting exit code and output.
pub fn run_command(mut c: Command) -> Run {
    let cmdline = format!("{c:?}");
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Run {
        cmdline,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs an external tool and asserts it succeeds; a missing tool fails the
/// test with a message saying which package provides it.
#[track_caller]
pub fn tool(program: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the Debian package {package}")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// `len` bytes of compressible text (words drawn with `seed`).
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "disk",
        "chunk",
        "vmkeep",
        "backup",
        "restore",
        "generation",
        "manifest",
        "slot",
        "zero",
        "index",
        "the",
        "of",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
        v.push(if rng.gen_range(0..10) == 0 {
            b'\n'
        } else {
            b' '
        });
    }
    v.truncate(len);
    v
}

/// Writes `data` at `offset` of an existing file.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
}

/// A sparse file of `len` bytes holding nothing.
pub fn sparse_file(path: &Path, len: u64) {
    File::create(path).unwrap().set_len(len).unwrap();
}

/// A raw image made by `qemu-img create -f raw -o preallocation=PREALLOC`.
pub fn qemu_img_create(path: &Path, len: u64, prealloc: &str) {
    tool(
        "qemu-img",
        "qemu-utils",
        &[
            "create",
            "-q",
            "-f",
            "raw",
            "-o",
            &format!("preallocation={prealloc}"),
            s(path),
            &len.to_string(),
        ],
    );
    assert_eq!(std::fs::metadata(path).unwrap().len(), len);
}

/// Asserts two files hold the same bytes (naming the first difference),
/// and that `cmp` agrees.
#[track_caller]
pub fn assert_same(a: &Path, b: &Path) {
    let (la, lb) = (file_len(a), file_len(b));
    assert_eq!(
        la,
        lb,
        "{} has {la} bytes, {} has {lb}",
        a.display(),
        b.display()
    );
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    while pos < la {
        let n = ((la - pos) as usize).min(ba.len());
        fa.read_exact(&mut ba[..n]).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).unwrap();
            panic!(
                "{} and {} differ at byte {}",
                a.display(),
                b.display(),
                pos + i as u64
            );
        }
        pos += n as u64;
    }
    let st = Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .expect("run cmp (diffutils)");
    assert!(
        st.success(),
        "cmp {} {} reports a difference",
        a.display(),
        b.display()
    );
}

/// A file's length.
pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .len()
}

/// Number of regular files under `dir` (0 when it does not exist).
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            count_files(&e.path())
        } else {
            1
        }
    })
    .sum()
}

/// The allocated areas of a file (SEEK_DATA/SEEK_HOLE), as (offset, length).
pub fn allocated_areas(path: &Path) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom};
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let data = match seek(&f, SeekFrom::Data(pos as i64)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA on {}: {e}", path.display()),
        };
        let hole = seek(&f, SeekFrom::Hole(data as i64)).unwrap();
        out.push((data, hole.min(len) - data));
        pos = hole;
    }
    out
}

/// Writes a changed-areas file: one `offset,length` line per area.
pub fn write_areas(path: &Path, areas: &[(u64, u64)]) {
    let text: String = areas.iter().map(|(o, l)| format!("{o},{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A tmpfs mounted for a test; unmounted on drop (also when the test
/// panics).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "8M") on the new directory `dir`.
    /// Fails the test with a clear message when mounting is not allowed.
    #[track_caller]
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (this test needs root or CAP_SYS_ADMIN): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy: detach it so the scratch directory can still go.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
