//! Keeping damaged objects out of an index, so that no backup
//! deduplicates against them or reuses them (SPEC.md §10, §13.3).
//!
//! [`drop_damaged`] removes what `verify` found bad from the index at a
//! path; when another process holds that index it writes the list to the
//! *drop note* `<index>.drop` instead, which [`apply_drop_note`] applies
//! at the index's next opening. [`forget_quarantined`] drops the objects
//! that any host's `verify --quarantine` moved aside and that nothing has
//! stored again since, so every host's index learns of a quarantine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use super::{Index, RocksIndex};
use crate::layout::{blob_of, id_from_path, object_path, Dir};
use crate::repo::Repository;
use crate::{Error, Result};

/// How long [`drop_damaged`] waits for an index another process holds
/// before leaving a drop note.
const WAIT: Duration = Duration::from_secs(2);

/// What [`drop_damaged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Removed from the index now.
    Now(usize),
    /// The index is in use: noted for its next opening.
    Noted(usize),
}

fn note_path(index: &Path) -> PathBuf {
    let mut p = index.as_os_str().to_owned();
    p.push(".drop");
    PathBuf::from(p)
}

fn indexed(items: &[(BlobType, ObjectId)]) -> impl Iterator<Item = &(BlobType, ObjectId)> {
    items
        .iter()
        .filter(|(t, _)| matches!(t, BlobType::Chunk | BlobType::ManifestPage))
}

/// Removes `items` (chunks and pages; other types are not indexed) from
/// the index at `path`, or notes them for its next opening when another
/// process holds it.
pub fn drop_damaged(path: &Path, items: &[(BlobType, ObjectId)]) -> Result<Dropped> {
    let n = indexed(items).count();
    if n == 0 || !path.exists() {
        return Ok(Dropped::Now(0));
    }
    match RocksIndex::open(path, WAIT) {
        Ok(idx) => {
            for (t, id) in indexed(items) {
                idx.remove(*t, id)?;
            }
            Ok(Dropped::Now(n))
        }
        Err(Error::IndexBusy { .. }) => {
            let note = note_path(path);
            let io = |e: std::io::Error| Error::Index {
                path: note.clone(),
                msg: format!("cannot write the drop note: {e}"),
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&note)
                .map_err(io)?;
            let mut text = String::new();
            for (t, id) in indexed(items) {
                text.push_str(&object_path(*t, id));
                text.push('\n');
            }
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(Dropped::Noted(n))
        }
        Err(e) => Err(e),
    }
}

/// Applies and removes the drop note of the index at `path`, if any.
pub fn apply_drop_note(idx: &dyn Index, path: &Path) -> Result<usize> {
    let note = note_path(path);
    let text = match std::fs::read_to_string(&note) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(Error::Index {
                path: note,
                msg: format!("cannot read the drop note: {e}"),
            })
        }
    };
    let mut n = 0;
    for line in text.lines() {
        // A torn last line names nothing.
        if let Some((ty @ (BlobType::Chunk | BlobType::ManifestPage), id)) = blob_of(line) {
            idx.remove(ty, &id)?;
            n += 1;
        }
    }
    std::fs::remove_file(&note).map_err(|e| Error::Index {
        path: note,
        msg: format!("cannot remove the applied drop note: {e}"),
    })?;
    Ok(n)
}

/// Drops from `idx` every chunk and page that `quarantine/` holds and
/// that is not back in its place (stored again since). Returns how many.
pub fn forget_quarantined(repo: &Repository, idx: &dyn Index) -> Result<usize> {
    let b = repo.backend();
    let mut n = 0;
    for ty in [BlobType::Chunk, BlobType::ManifestPage] {
        let mut found = Vec::new();
        b.list(&Dir::Quarantined(ty).path(), &mut |p| {
            if let Some(id) = id_from_path(p) {
                found.push(id);
            }
            Ok(())
        })?;
        for id in found {
            if idx.get(ty, &id)?.is_some() && !b.exists(&object_path(ty, &id))? {
                idx.remove(ty, &id)?;
                n += 1;
            }
        }
    }
    Ok(n)
}
