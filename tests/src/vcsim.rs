//! The vCenter simulator harness (`tests/vcsim`, Go + govmomi's vcsim) for
//! Rust tests.
//!
//! Nouns: [`Vcsim`] (one running simulator: its SDK URL, control URL,
//! datastore directories, credentials and certificate fingerprints),
//! [`VcsimOptions`], [`SimDisk`] (a VM disk as the harness sees it, with
//! the absolute path of its live flat file).
//!
//! Invariants: the Go program is built at most once per test run into
//! `<target>/vcsim-bin/vcsim` (an exclusive file lock serialises test
//! binaries; the binary appears by atomic rename, and is rebuilt when
//! `main.go` is newer); the simulator only ever listens on 127.0.0.1; it is
//! stopped when the [`Vcsim`] is dropped, also while a failing test
//! unwinds, and its datastores live in a temporary directory removed then.
//! Without Go the harness panics with the packages to install: tests that
//! need it fail, they never skip.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Debian packages the harness needs.
pub const GO_PACKAGES: &str = "golang-go golang-github-vmware-govmomi-dev";

/// Options for starting the simulator.
#[derive(Clone, Debug, Default)]
pub struct VcsimOptions {
    /// Serve https with a fresh self-signed certificate.
    pub tls: bool,
    /// Max bytes one QueryChangedDiskAreas answer covers (None = whole disk).
    pub answer_limit: Option<u64>,
}

/// A VM disk as the harness sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimDisk {
    /// VM name.
    pub vm: String,
    /// VM moref value.
    pub moref: String,
    /// Device key.
    pub key: i32,
    /// Backing file name, "[ds] dir/disk.vmdk".
    pub file_name: String,
    /// Absolute path of the live flat file.
    pub flat_path: PathBuf,
    /// Capacity in bytes.
    pub capacity: u64,
}

/// A running simulator.
pub struct Vcsim {
    child: Option<Child>,
    /// SDK URL, e.g. `http://127.0.0.1:PORT/sdk`.
    pub url: String,
    /// Control URL prefix, e.g. `http://127.0.0.1:PORT/vmkeep`.
    pub control: String,
    /// Datastore name -> local directory.
    pub datastores: BTreeMap<String, PathBuf>,
    /// User name that logs in.
    pub user: String,
    /// Password that logs in.
    pub password: String,
    /// SHA-256 fingerprint of the TLS certificate (`AA:BB:...`), with TLS.
    pub sha256_fingerprint: Option<String>,
    /// SHA-1 thumbprint of the TLS certificate, with TLS.
    pub sha1_thumbprint: Option<String>,
    /// The JSON line the simulator printed.
    pub info: serde_json::Value,
    http: reqwest::blocking::Client,
    stderr_path: PathBuf,
    _tmp: tempfile::TempDir,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory of the running test binary.
fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        let p = PathBuf::from(d);
        return if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        };
    }
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds the harness once per run and returns the binary's path.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let src_dir = workspace_root().join("tests/vcsim");
    let src = src_dir.join("main.go");
    let out_dir = target_dir().join("vcsim-bin");
    fs::create_dir_all(&out_dir).expect("create vcsim-bin");
    let bin = out_dir.join("vcsim");
    let lock = File::create(out_dir.join("build.lock")).expect("create build.lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock build.lock");
    let fresh = match (mtime(&bin), mtime(&src)) {
        (Some(b), Some(s)) => b >= s,
        _ => false,
    };
    if !fresh {
        let go = which_go().unwrap_or_else(|| {
            panic!(
                "the vCenter simulator harness needs Go: `go` was not found on PATH or in /usr/lib/go/bin. \
                 Install the Debian packages: apt-get install -y {GO_PACKAGES}"
            )
        });
        if !Path::new("/usr/share/gocode/src/github.com/vmware/govmomi/simulator").is_dir() {
            panic!(
                "govmomi's simulator sources are missing under /usr/share/gocode. \
                 Install the Debian packages: apt-get install -y {GO_PACKAGES}"
            );
        }
        let tmp = out_dir.join(format!("vcsim.tmp.{}", std::process::id()));
        let output = Command::new(go)
            .current_dir(workspace_root())
            .args(["build", "-o"])
            .arg(&tmp)
            .arg("./tests/vcsim")
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", out_dir.join("go-cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("run go build");
        if !output.status.success() {
            let _ = fs::remove_file(&tmp);
            panic!(
                "building tests/vcsim failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        fs::rename(&tmp, &bin).expect("install vcsim binary");
    }
    drop(lock);
    bin
}

fn which_go() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/lib/go/bin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter().map(|d| d.join("go")).find(|p| p.is_file())
}

impl Vcsim {
    /// A client logged in as the simulator's user, certificate verified,
    /// tasks waited for up to a minute.
    pub fn login(&self) -> vmkeep_vsphere::Client {
        let mut o = vmkeep_vsphere::ConnectOptions::new(&self.url, vmkeep_vsphere::TlsMode::Verify);
        o.task_timeout = std::time::Duration::from_secs(60);
        vmkeep_vsphere::Client::login(&o, &self.user, &self.password).expect("login")
    }

    /// Starts a plain-http simulator with whole-disk CBT answers.
    pub fn start() -> Vcsim {
        Vcsim::start_with(VcsimOptions::default())
    }

    /// Starts a simulator.
    pub fn start_with(opts: VcsimOptions) -> Vcsim {
        let bin = binary();
        let tmp = tempfile::tempdir().expect("tempdir");
        let stderr_path = tmp.path().join("vcsim.stderr");
        let stderr = File::create(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(&bin);
        if opts.tls {
            cmd.arg("-tls");
        }
        if let Some(n) = opts.answer_limit {
            cmd.arg(format!("-answer-limit={n}"));
        }
        cmd.env("TMPDIR", tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vcsim did not start: {}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let info: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("vcsim start line {line:?}: {e}"));
        let s = |k: &str| info[k].as_str().map(str::to_string);
        let url = s("url").expect("url");
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "vcsim must listen on 127.0.0.1 only, got {url}"
        );
        let datastores = info["datastores"]
            .as_object()
            .expect("datastores")
            .iter()
            .map(|(k, v)| (k.clone(), PathBuf::from(v.as_str().expect("dir"))))
            .collect();
        let http = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("control client");
        Vcsim {
            child: Some(child),
            control: s("control").expect("control"),
            user: s("user").expect("user"),
            password: s("password").expect("password"),
            sha256_fingerprint: s("sha256_fingerprint"),
            sha1_thumbprint: s("sha1_thumbprint"),
            url,
            datastores,
            info,
            http,
            stderr_path,
            _tmp: tmp,
        }
    }

    /// What the simulator wrote on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn control_json(&self, path: &str) -> serde_json::Value {
        let url = format!("{}/{path}", self.control);
        let resp = self
            .http
            .post(&url)
            .send()
            .unwrap_or_else(|e| panic!("vcsim control {url}: {e}"));
        assert!(
            resp.status().is_success(),
            "vcsim control {url}: {}",
            resp.status()
        );
        let text = resp
            .text()
            .unwrap_or_else(|e| panic!("vcsim control {url}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("vcsim control {url}: {e}: {text}"))
    }

    /// Makes every session seen so far expire (the next call with it gets NotAuthenticated).
    pub fn expire_sessions(&self) -> u64 {
        self.control_json("expire-sessions")["expired"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Sets how many bytes one QueryChangedDiskAreas answer covers (0 = all).
    pub fn set_answer_limit(&self, bytes: u64) {
        self.control_json(&format!("answer-limit?bytes={bytes}"));
    }

    /// Makes quiesced snapshots fail (ApplicationQuiesceFault) or succeed.
    pub fn set_fail_quiesce(&self, on: bool) {
        self.control_json(&format!("fail-quiesce?on={}", on as u8));
    }

    /// How many QueryChangedDiskAreas calls the simulator answered.
    pub fn qcda_calls(&self) -> u64 {
        self.control_json("qcda-calls")["calls"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Disks of the VM with this name or moref (all VMs for "").
    pub fn disks(&self, vm: &str) -> Vec<SimDisk> {
        let v = self.control_json(&format!("disks?vm={vm}"));
        v.as_array()
            .expect("disk list")
            .iter()
            .map(|d| SimDisk {
                vm: d["vm"].as_str().unwrap_or("").to_string(),
                moref: d["moref"].as_str().unwrap_or("").to_string(),
                key: d["key"].as_i64().unwrap_or(0) as i32,
                file_name: d["file_name"].as_str().unwrap_or("").to_string(),
                flat_path: PathBuf::from(d["flat_path"].as_str().unwrap_or("")),
                capacity: d["capacity"].as_u64().unwrap_or(0),
            })
            .collect()
    }

    /// Writes into a disk's live flat file, as the running guest would.
    pub fn write_live(&self, disk: &SimDisk, offset: u64, data: &[u8]) {
        assert!(
            offset + data.len() as u64 <= disk.capacity,
            "write beyond the disk's capacity"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(&disk.flat_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", disk.flat_path.display()));
        f.write_all_at(data, offset).expect("write live disk");
        f.sync_all().expect("sync live disk");
    }

    /// Reads a disk's live flat file.
    pub fn read_live(&self, disk: &SimDisk) -> Vec<u8> {
        let mut v = fs::read(&disk.flat_path).expect("read live disk");
        v.resize(disk.capacity as usize, 0);
        v
    }

    /// Path of a disk's frozen copy for a snapshot (the agreed layout:
    /// `<ds dir>/.vmkeep-snapshots/<snapshot>/<flat file relative path>`).
    pub fn frozen_path(&self, snapshot: &str, disk: &SimDisk) -> PathBuf {
        let rest = disk.file_name.trim_start_matches('[');
        let (ds, rel) = rest.split_once(']').expect("datastore path");
        let rel = rel.trim_start();
        let flat = match rel.strip_suffix(".vmdk") {
            Some(stem) if !stem.ends_with("-flat") => format!("{stem}-flat.vmdk"),
            _ => rel.to_string(),
        };
        self.datastores[ds]
            .join(".vmkeep-snapshots")
            .join(snapshot)
            .join(flat)
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing stdin asks the harness to stop cleanly.
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
