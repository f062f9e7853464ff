//! Opening what commands work on: the backend named by `--repo`, the
//! repository unlocked with the password, and the local chunk index under
//! the cache directory (`<cache>/<repository id>/index`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::bail;
use vmkeep_engine::backend::{Backend, LocalBackend};
use vmkeep_engine::index::{self, RocksIndex};
use vmkeep_engine::ops::{self, index::IndexRebuildReport};
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
    Ok(ops::index::path(&cache_dir(g)?, &repo.config().id_hex()))
}

/// Opens the index of `repo`, rebuilding it when missing or damaged.
pub fn open_index(g: &Global, repo: &Repository) -> anyhow::Result<RocksIndex> {
    let p = index_path(g, repo)?;
    let (idx, r) = ops::index::open(repo, &p)?;
    report_rebuild(g, &p, r.as_ref());
    Ok(idx)
}

/// Says on stderr that the index at `p` was rebuilt, and what it left out.
pub fn report_rebuild(g: &Global, p: &std::path::Path, r: Option<&IndexRebuildReport>) {
    if let Some(r) = r {
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
    let path = ops::index::path(&cache_dir(g).ok()?, &sealed.config().id_hex());
    ops::index::create_dir(&path).ok()?;
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
            let (idx, r) = index::ready_for(repo, idx)?;
            report_rebuild(g, &o.path, r.map(IndexRebuildReport::from).as_ref());
            Ok(idx)
        }
        other => {
            drop(other);
            open_index(g, repo)
        }
    }
}
