//! The local chunk index of a repository: where it lives under a cache
//! directory (`<cache>/<repository id>/index`), opening it (rebuilt when
//! missing, damaged or incomplete), and the `index rebuild` operation.
//!
//! Invariant: the index is a cache (SPEC.md §6); every operation here can
//! be repeated and only ever recomputes it from the repository.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::index::{self, RebuildReport, RocksIndex};
use crate::repo::Repository;
use crate::{Error, Result};

/// Where the index of the repository with id `repo_id` (hex) lives.
pub fn path(cache_dir: &Path, repo_id: &str) -> PathBuf {
    cache_dir.join(repo_id).join("index")
}

/// Creates the directory holding the index at `path`.
pub fn create_dir(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| Error::Index {
            path: path.to_path_buf(),
            msg: format!("cannot create cache directory {}: {e}", parent.display()),
        }),
        None => Ok(()),
    }
}

/// What a rebuild of the index found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexRebuildReport {
    pub chunks: u64,
    pub pages: u64,
    /// Objects left out because their bytes are damaged (paths).
    pub damaged: Vec<String>,
}

impl From<RebuildReport> for IndexRebuildReport {
    fn from(r: RebuildReport) -> Self {
        IndexRebuildReport {
            chunks: r.chunks,
            pages: r.pages,
            damaged: r.damaged,
        }
    }
}

/// Opens the index at `path` for `repo`, rebuilding it when needed; the
/// report says what a rebuild found, when one ran.
pub fn open(repo: &Repository, path: &Path) -> Result<(RocksIndex, Option<IndexRebuildReport>)> {
    create_dir(path)?;
    let (idx, r) = index::open_for(repo, path)?;
    Ok((idx, r.map(Into::into)))
}

/// Options of `index rebuild`.
#[derive(Clone, Debug)]
pub struct RebuildOptions {
    /// The index ([`path`]).
    pub index: PathBuf,
}

/// Recomputes the index at `o.index` from the repository's contents. An
/// index damaged beyond opening is moved aside first (SPEC.md §10).
pub fn rebuild(repo: &Repository, o: &RebuildOptions) -> Result<IndexRebuildReport> {
    create_dir(&o.index)?;
    let idx = index::open_at(&o.index, &AtomicBool::new(false))?;
    Ok(index::rebuild(repo, &idx)?.into())
}
