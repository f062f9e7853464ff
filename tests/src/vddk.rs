//! The VDDK part of the test rig: builds the stand-in library
//! (`tests/vddk-sim`) with cargo, exposes it as `libvixDiskLib.so.8` in a
//! libdir, lays out a datastore directory with monolithic-flat VMDKs, sets
//! the stand-in's environment, and re-runs a test in a child process when
//! it must set its own environment or is expected to abort.
//!
//! Invariants: the stand-in is built once per process and variant, in its
//! own target directory under the workspace's (`CARGO_TARGET_DIR` or
//! `<workspace>/target`), so `cargo test --workspace` from a clean clone
//! works; the process-wide environment is set once, before the first VDDK
//! call, by [`Rig::get`]. One process uses one variant (VDDK is initialised
//! once per process).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use vmkeep_engine::vddk::ConnectSpec;

/// Which build of the stand-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Every function, like VDDK 8.
    Full,
    /// Without QueryAllocatedBlocks/FreeBlockList, like VDDK before 6.7.
    NoQueryAllocated,
}

impl Variant {
    fn dir_name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::NoQueryAllocated => "no-query-allocated",
        }
    }
}

/// User, password and thumbprint the stand-in expects (set by [`Rig::get`]).
pub const USER: &str = "vmkeep";
pub const PASSWORD: &str = "s3cret";
pub const THUMBPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01";
/// The datastore name the rig maps.
pub const DATASTORE: &str = "LocalDS_0";

/// The workspace root (the parent of the `tests` package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds the stand-in variant (once per process) and returns a libdir
/// holding `libvixDiskLib.so.8`.
pub fn sim_libdir(variant: Variant) -> PathBuf {
    static DIRS: OnceLock<Mutex<Vec<(Variant, PathBuf)>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(|| Mutex::new(Vec::new()));
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = dirs.lock().unwrap().iter().find(|(v, _)| *v == variant) {
        return d.clone();
    }
    let base = target_dir().join("vddk-sim").join(variant.dir_name());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "vddk-sim", "--target-dir"])
        .arg(&base);
    if variant == Variant::NoQueryAllocated {
        cmd.args(["--features", "no-query-allocated"]);
    }
    let out = cmd.output().expect("run cargo to build the VDDK stand-in");
    assert!(
        out.status.success(),
        "building vddk-sim failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let so = base.join("debug").join("libvixDiskLib.so");
    assert!(so.exists(), "{} was not built", so.display());
    let libdir = base.join("libdir");
    std::fs::create_dir_all(&libdir).unwrap();
    let link = libdir.join("libvixDiskLib.so.8");
    let tmp = libdir.join(format!(".libvixDiskLib.so.8.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&so, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    dirs.lock().unwrap().push((variant, libdir.clone()));
    libdir
}

/// One process's VDDK test environment.
pub struct Rig {
    pub libdir: PathBuf,
    /// The datastore directory mapped as [`DATASTORE`].
    pub datastore: PathBuf,
    /// The stand-in's access log (Open/Close/PrepareForAccess/EndAccess).
    pub access_log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Rig {
    /// Builds the stand-in and sets its environment, once per process.
    /// Extra `VDDK_SIM_*` settings come from the parent for child runs.
    pub fn get(variant: Variant) -> &'static Rig {
        static RIG: OnceLock<Rig> = OnceLock::new();
        let rig = RIG.get_or_init(|| {
            let libdir = sim_libdir(variant);
            let tmp = tempfile::tempdir().unwrap();
            let datastore = tmp.path().join("LocalDS_0");
            std::fs::create_dir_all(&datastore).unwrap();
            let access_log = tmp.path().join("access.log");
            std::env::set_var(
                "VDDK_SIM_DATASTORES",
                format!("{DATASTORE}={}", datastore.display()),
            );
            std::env::set_var("VDDK_SIM_CREDENTIALS", format!("{USER}:{PASSWORD}"));
            std::env::set_var("VDDK_SIM_THUMBPRINT", THUMBPRINT);
            std::env::set_var("VDDK_SIM_ACCESS_LOG", &access_log);
            Rig {
                libdir,
                datastore,
                access_log,
                _tmp: tmp,
            }
        });
        assert_eq!(
            rig.libdir,
            sim_libdir(variant),
            "one process uses one stand-in variant"
        );
        rig
    }

    /// A remote spec for VM `vm-42` with the right credentials.
    pub fn remote_spec(&self) -> ConnectSpec {
        ConnectSpec {
            server: Some("vcsim.test".into()),
            user: Some(USER.into()),
            password: Some(PASSWORD.into()),
            thumbprint: Some(THUMBPRINT.into()),
            vm_moref: Some("vm-42".into()),
            transport: Some("nbdssl:nbd".into()),
            ..Default::default()
        }
    }

    /// Creates `<datastore>/<rel>.vmdk` (+ `-flat.vmdk`) of `size` bytes and
    /// returns its datastore path "[LocalDS_0] rel.vmdk".
    pub fn datastore_disk(&self, rel: &str, size: u64) -> String {
        let desc = self.datastore.join(format!("{rel}.vmdk"));
        make_flat_vmdk(&desc, size);
        format!("[{DATASTORE}] {rel}.vmdk")
    }

    /// The flat file behind "[LocalDS_0] rel.vmdk".
    pub fn flat_of(&self, rel: &str) -> PathBuf {
        self.datastore.join(format!("{rel}-flat.vmdk"))
    }

    /// Lines of the access log.
    pub fn access_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Writes a monolithic-flat VMDK: descriptor `desc` and a sparse
/// `<stem>-flat.vmdk` of `size` bytes (a multiple of 512) beside it.
pub fn make_flat_vmdk(desc: &Path, size: u64) -> PathBuf {
    assert_eq!(size % 512, 0);
    let stem = desc.file_stem().unwrap().to_string_lossy().into_owned();
    let flat_name = format!("{stem}-flat.vmdk");
    let flat = desc.with_file_name(&flat_name);
    std::fs::create_dir_all(desc.parent().unwrap()).unwrap();
    let sectors = size / 512;
    let cyl = (sectors / (16 * 63)).max(1);
    let text = format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\n# Extent description\n\
         RW {sectors} FLAT \"{flat_name}\" 0\n\n# The Disk Data Base\n#DDB\n\n\
         ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"{cyl}\"\n\
         ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"lsilogic\"\nddb.uuid = \"60 00 C2 9a 11 22 33 44-55 66 77 88 99 aa bb cc\"\n"
    );
    std::fs::write(desc, text).unwrap();
    let f = std::fs::File::create(&flat).unwrap();
    f.set_len(size).unwrap();
    flat
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// The environment variable that marks a child run of a test.
pub const CHILD_VAR: &str = "VMKEEP_VDDK_CHILD";

/// Whether this process is the child run of test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

/// Re-runs test `name` of the current test binary in a child process with
/// `envs` added, and returns its output.
pub fn run_child(name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .envs(envs.iter().copied())
        .output()
        .expect("run the test binary as a child")
}

/// Asserts a child aborted (SIGABRT) and its stderr contains `needle`.
pub fn assert_aborted(out: &Output, needle: &str) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "child should abort; status {:?}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(needle),
        "stderr lacks {needle:?}:\n{stderr}"
    );
}

fn libc_sigabrt() -> i32 {
    6 // SIGABRT on Linux
}

/// Asserts a child run passed.
pub fn assert_child_passed(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A filter that matched nothing would also "succeed": make sure it ran.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child ran no test:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Backs up `source` as disk `name` into `repo` with the engine's pipeline
/// and returns the manifest.
pub fn backup_manifest(
    repo: &vmkeep_engine::repo::Repository,
    index: &dyn vmkeep_engine::index::Index,
    name: &str,
    source: Box<dyn vmkeep_engine::source::DiskSource>,
    use_allocation: bool,
) -> vmkeep_format::manifest::Manifest {
    let job = vmkeep_engine::backup::DiskJob {
        disk_name: name.to_string(),
        source,
        use_allocation,
        areas: None,
        parent: None,
        chunk_size: vmkeep_format::manifest::MIN_CHUNK_SIZE,
        change_id: String::new(),
        lock: None,
        cancel: None,
    };
    vmkeep_engine::backup::backup_disk(
        &vmkeep_engine::session::WriteSession::new(repo, index, 2).expect("session"),
        job,
        &vmkeep_engine::progress::NoProgress,
    )
    .expect("backup_disk")
    .manifest
}

/// A fresh unencrypted repository in `dir` and an in-memory index.
pub fn scratch_repo(
    dir: &Path,
) -> (
    vmkeep_engine::repo::Repository,
    vmkeep_engine::index::MemIndex,
) {
    use std::sync::Arc;
    let backend = Arc::new(vmkeep_engine::backend::LocalBackend::new(dir));
    let opts = vmkeep_engine::repo::InitOptions {
        encryption: vmkeep_format::config::Encryption::None,
        ..Default::default()
    };
    let repo = vmkeep_engine::repo::Repository::init(backend, None, &opts).expect("init repo");
    (repo, vmkeep_engine::index::MemIndex::new())
}

/// Fills `flat` (a sparse file) with a mix of random data, zeros written as
/// data, and holes, chunk-unaligned on purpose.
pub fn scatter_data(flat: &Path, size: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(flat).unwrap();
    let mut off = 3 * 4096u64;
    let mut i = 0u64;
    while off < size {
        let len = (((i * 7919) % 300) + 1) * 1024;
        let len = len.min(size - off);
        if i % 5 == 3 {
            f.write_all_at(&vec![0u8; len as usize], off).unwrap();
        } else {
            f.write_all_at(&random_bytes(1000 + i, len as usize), off)
                .unwrap();
        }
        off += len + ((i * 104_729) % 700) * 1024;
        i += 1;
    }
}
