//! Opening what commands work on: the backend named by `--repo`, the
//! repository unlocked with the password, and the local chunk index under
//! the cache directory (`<cache>/<repository id>/index`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use vmkeep_engine::backend::{Backend, LocalBackend};
use vmkeep_engine::index::{self, RocksIndex};
use vmkeep_engine::repo::{Repository, Sealed};

use crate::Global;

static UTC_OFFSET: AtomicI32 = AtomicI32::new(0);

/// Records the local UTC offset (call while single-threaded).
pub fn init_utc_offset() {
    if let Ok(o) = time::UtcOffset::current_local_offset() {
        UTC_OFFSET.store(o.whole_seconds(), Ordering::Relaxed);
    }
}

/// The local UTC offset in seconds.
pub fn utc_offset() -> i32 {
    UTC_OFFSET.load(Ordering::Relaxed)
}

/// The backend for `--repo`.
pub fn backend(g: &Global) -> anyhow::Result<Arc<dyn Backend>> {
    let Some(r) = &g.repo else {
        bail!("no repository given: use --repo PATH or set VMKEEP_REPOSITORY");
    };
    if r.contains("://") || r.starts_with("s3:") {
        bail!("repository {r}: only local directories are supported by this version");
    }
    Ok(Arc::new(LocalBackend::new(PathBuf::from(r))))
}

/// Opens and unlocks the repository.
pub fn open_repo(g: &Global) -> anyhow::Result<Repository> {
    unlock(g, read_repo(g)?)
}

/// Reads the repository's config and key slots, without unlocking it.
pub fn read_repo(g: &Global) -> anyhow::Result<Sealed> {
    Ok(Repository::read(backend(g)?)?)
}

/// Unlocks a repository read by [`read_repo`] with the password.
pub fn unlock(g: &Global, sealed: Sealed) -> anyhow::Result<Repository> {
    let pw = match sealed.config().encryption {
        vmkeep_format::config::Encryption::None => None,
        _ => crate::password::repository(g.password_file.as_deref(), false)?,
    };
    let repo = sealed.unlock(pw.as_deref())?;
    for s in repo.skipped_key_slots() {
        eprintln!(
            "vmkeep: warning: {} is not a readable key slot and was skipped: {}",
            s.path, s.problem
        );
    }
    Ok(repo)
}

/// This process's command line, for lock files.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// The cache directory.
pub fn cache_dir(g: &Global) -> anyhow::Result<PathBuf> {
    if let Some(d) = &g.cache_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("vmkeep"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("vmkeep")),
        None => bail!("no cache directory: set --cache-dir or VMKEEP_CACHE_DIR"),
    }
}

/// Where the index of `repo` lives.
pub fn index_path(g: &Global, repo: &Repository) -> anyhow::Result<PathBuf> {
    Ok(cache_dir(g)?.join(repo.config().id_hex()).join("index"))
}

/// Opens the index of `repo`, rebuilding it when missing or damaged.
pub fn open_index(g: &Global, repo: &Repository) -> anyhow::Result<RocksIndex> {
    let p = index_path(g, repo)?;
    create_cache_dir(&p)?;
    report_rebuild(g, &p, index::open_for(repo, &p)?)
}

fn create_cache_dir(index: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = index.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create cache directory {}", parent.display()))?;
    }
    Ok(())
}

fn report_rebuild(
    g: &Global,
    p: &std::path::Path,
    (idx, report): (RocksIndex, Option<index::RebuildReport>),
) -> anyhow::Result<RocksIndex> {
    if let Some(r) = report {
        if !g.quiet && !g.json {
            eprintln!(
                "vmkeep: rebuilt the index {} from the repository ({}, {})",
                p.display(),
                crate::output::count(r.chunks, "chunk"),
                crate::output::count(r.pages, "page")
            );
        }
        for d in &r.damaged {
            eprintln!("vmkeep: warning: damaged object {d} was left out of the index");
        }
    }
    Ok(idx)
}

/// An index being opened on a thread of its own while the repository is
/// unlocked (opening RocksDB needs no key). Dropped unused (the command
/// failed first), it stops the thread and waits for it, so that RocksDB is
/// closed before the process exits.
pub struct IndexOpening {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<vmkeep_engine::Result<RocksIndex>>>,
}

impl Drop for IndexOpening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts opening the index of the repository read as `sealed`, whose id
/// its config tells without a key. `None` when that cannot be done now:
/// [`finish_index`] then opens the index the usual way, and reports errors.
pub fn start_index(g: &Global, sealed: &Sealed) -> Option<IndexOpening> {
    let cfg = sealed.config();
    let path = cache_dir(g).ok()?.join(cfg.id_hex()).join("index");
    create_cache_dir(&path).ok()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (path.clone(), stop.clone());
    let handle = std::thread::Builder::new()
        .name("vmkeep-index-open".into())
        .spawn(move || index::open_at(&p, &s))
        .ok()?;
    Some(IndexOpening {
        path,
        stop,
        handle: Some(handle),
    })
}

/// The index of `repo`: the one `opening` opened if it is `repo`'s (checked,
/// and rebuilt when incomplete), else opened now.
pub fn finish_index(
    g: &Global,
    repo: &Repository,
    opening: Option<IndexOpening>,
) -> anyhow::Result<RocksIndex> {
    match opening {
        Some(mut o) if o.path == index_path(g, repo)? => {
            let h = o.handle.take().expect("joined only here or on drop");
            let idx = h.join().map_err(|_| {
                anyhow::anyhow!("opening the index {} panicked", o.path.display())
            })??;
            report_rebuild(g, &o.path, index::ready_for(repo, idx)?)
        }
        other => {
            drop(other);
            open_index(g, repo)
        }
    }
}

/// Takes a repository lock for this command (released on drop).
pub fn lock(
    repo: &Repository,
    mode: vmkeep_engine::lock::Mode,
    parent: Option<vmkeep_format::ObjectId>,
) -> anyhow::Result<vmkeep_engine::lock::Lock> {
    Ok(vmkeep_engine::lock::Lock::acquire(
        repo.backend().clone(),
        mode,
        &command_line(),
        parent,
    )?)
}
