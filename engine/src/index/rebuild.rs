//! Index recovery. [`open_for`] opens the index of a repository and
//! rebuilds it when it is missing, describes another repository, was left
//! half-built, or cannot be opened because it is damaged (the damaged
//! directory is moved aside, never deleted). [`rebuild`] recomputes every
//! entry from the repository's `chunks/` and `pages/`, checking each
//! object's stored-bytes checksum so a damaged file is never indexed.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use rayon::prelude::*;
use vmkeep_format::blob::{self, BlobType};

use super::{Index, IndexEntry, RocksIndex, META_REPO, META_STATE};
use crate::layout::{id_from_path, Dir};
use crate::repo::Repository;
use crate::{Error, Result};

/// What a rebuild found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub chunks: u64,
    pub pages: u64,
    /// Objects skipped because their bytes are damaged (paths).
    pub damaged: Vec<String>,
}

/// Recomputes the index from the repository.
pub fn rebuild(repo: &Repository, index: &dyn Index) -> Result<RebuildReport> {
    index.clear()?;
    index.meta_put(META_REPO, repo.config().id_hex().as_bytes())?;
    index.meta_put(META_STATE, b"rebuilding")?;
    let mut report = RebuildReport::default();
    for ty in [BlobType::Chunk, BlobType::ManifestPage] {
        let mut paths = Vec::new();
        repo.backend().list(&Dir::Blobs(ty).path(), &mut |p| {
            paths.push(p.to_string());
            Ok(())
        })?;
        let damaged = Mutex::new(Vec::new());
        for batch in paths.chunks(512) {
            let entries: Vec<_> = batch
                .par_iter()
                .filter_map(|p| {
                    let id = id_from_path(p)?;
                    let res = repo.backend().get(p).map(|raw| {
                        raw.and_then(|raw| match blob::check(&raw) {
                            Ok(h) if h.ty == ty => Some((raw.len(), h.plain_len)),
                            _ => None,
                        })
                    });
                    match res {
                        Ok(Some((stored, plain))) => Some(Ok((
                            ty,
                            id,
                            IndexEntry {
                                plain_len: plain as u32,
                                stored_len: stored as u32,
                            },
                        ))),
                        Ok(None) => {
                            damaged.lock().expect("poisoned").push(p.clone());
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                })
                .collect::<Result<_>>()?;
            index.insert_batch(&entries)?;
            match ty {
                BlobType::Chunk => report.chunks += entries.len() as u64,
                _ => report.pages += entries.len() as u64,
            }
        }
        report
            .damaged
            .extend(damaged.into_inner().expect("poisoned"));
    }
    index.meta_put(META_STATE, b"complete")?;
    Ok(report)
}

/// Opens the RocksDB index at `path` for `repo`, rebuilding it when needed.
/// Returns the index and the rebuild report when a rebuild ran.
pub fn open_for(repo: &Repository, path: &Path) -> Result<(RocksIndex, Option<RebuildReport>)> {
    ready_for(repo, open_at(path, &AtomicBool::new(false))?)
}

/// Opens the RocksDB index at `path`, moving a damaged one aside and
/// starting afresh. Needs no key, so it can run while the repository is
/// being unlocked; [`ready_for`] then checks the index belongs to the
/// repository and is complete. Waits up to a minute for another process
/// that holds the index, unless `stop` is set.
pub fn open_at(path: &Path, stop: &AtomicBool) -> Result<RocksIndex> {
    let existed = path.exists();
    match RocksIndex::open_unless(path, Duration::from_secs(60), stop) {
        Ok(i) => Ok(i),
        Err(Error::Index { msg, .. }) if existed => {
            // Damaged: keep it for inspection, start afresh.
            let aside = path.with_extension(format!("damaged-{}", crate::host::now_unix()));
            std::fs::rename(path, &aside).map_err(|e| Error::Index {
                path: path.to_path_buf(),
                msg: format!("damaged ({msg}) and cannot be moved aside: {e}"),
            })?;
            log::warn!(
                "index {} was damaged ({msg}); moved to {}",
                path.display(),
                aside.display()
            );
            RocksIndex::open(path, Duration::from_secs(60))
        }
        Err(e) => Err(e),
    }
}

/// Rebuilds `idx` from `repo` unless it is a complete index of `repo`.
pub fn ready_for(
    repo: &Repository,
    idx: RocksIndex,
) -> Result<(RocksIndex, Option<RebuildReport>)> {
    let repo_ok = idx.meta_get(META_REPO)?.as_deref() == Some(repo.config().id_hex().as_bytes());
    let complete = idx.meta_get(META_STATE)?.as_deref() == Some(&b"complete"[..]);
    let report = if repo_ok && complete {
        None
    } else {
        Some(rebuild(repo, &idx)?)
    };
    // What a verify found damaged while this index was busy (a rebuild
    // checks only stored-bytes checksums, so it applies after one too).
    let path = idx.path().to_path_buf();
    super::apply_drop_note(&idx, &path)?;
    Ok((idx, report))
}
