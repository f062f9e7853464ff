//! The gc operation: take the `gc` lock, open the index, collect garbage
//! ([`crate::gc::gc`], two phases, safe while backups run).
//!
//! Invariant: gc runs only under its own exclusive-with-gc lock, and the
//! index it drops trashed objects from is this host's index of the
//! repository; damage never stops it, it is named in the report.

use std::path::PathBuf;

use serde::Serialize;

use super::index::IndexRebuildReport;
use crate::lock::{Lock, Mode};
use crate::repo::Repository;
use crate::Result;

/// How to run gc.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// The index ([`super::index::path`]) to drop collected objects from;
    /// `None`: no index on this host.
    pub index: Option<PathBuf>,
    /// The command line, for the lock file.
    pub command: String,
}

/// An object whose references could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct GcUnreadable {
    #[serde(rename = "type")]
    pub ty: String,
    pub id: String,
    pub reason: String,
    /// What gc kept because of it, and how to collect that.
    pub message: String,
}

/// What gc did (see [`crate::gc::GcReport`] for each figure).
#[derive(Clone, Debug, Serialize)]
pub struct GcOpReport {
    pub generations: u64,
    pub referenced_chunks: u64,
    pub trashed: u64,
    pub trashed_bytes: u64,
    pub deleted: u64,
    pub freed_bytes: u64,
    pub restored: u64,
    pub pending_batches: Vec<String>,
    pub unreadable: Vec<GcUnreadable>,
    pub kept_recent: u64,
    pub kept_recent_bytes: u64,
    /// The cut-off, Unix seconds, and as RFC 3339 (UTC).
    pub cutoff: i64,
    pub cutoff_time: String,
    pub clock_margin: i64,
    pub cutoff_reason: String,
    /// The live lock the cut-off was taken from, described.
    pub cutoff_lock: Option<String>,
    /// Says why unreferenced objects stayed, when some did.
    pub kept_recent_message: Option<String>,
    /// What rebuilding the index found, when it had to be rebuilt.
    pub index_rebuilt: Option<IndexRebuildReport>,
}

/// Runs gc.
pub fn gc(repo: &Repository, o: &GcOptions) -> Result<GcOpReport> {
    let lock = Lock::acquire(repo.backend().clone(), Mode::Gc, &o.command, None)?;
    let (idx, index_rebuilt) = match &o.index {
        Some(p) => {
            let (i, r) = super::index::open(repo, p)?;
            (Some(i), r)
        }
        None => (None, None),
    };
    let r = crate::gc::gc(
        repo,
        idx.as_ref().map(|i| i as &dyn crate::index::Index),
        &lock,
    )?;
    let kept_recent_message = (r.kept_recent > 0).then(|| {
        format!(
            "{} unreferenced objects ({}) are newer than the cut-off {} ({}) and stay until a later gc",
            r.kept_recent,
            super::size(r.kept_recent_bytes),
            super::rfc3339(r.cutoff, 0),
            r.cutoff_reason()
        )
    });
    Ok(GcOpReport {
        generations: r.generations,
        referenced_chunks: r.referenced_chunks,
        trashed: r.trashed,
        trashed_bytes: r.trashed_bytes,
        deleted: r.deleted,
        freed_bytes: r.deleted_bytes,
        restored: r.restored,
        pending_batches: r.pending_batches.clone(),
        unreadable: r
            .unreadable
            .iter()
            .map(|u| GcUnreadable {
                ty: u.ty.name().to_string(),
                id: u.id.to_hex(),
                reason: u.reason.clone(),
                message: u.to_string(),
            })
            .collect(),
        kept_recent: r.kept_recent,
        kept_recent_bytes: r.kept_recent_bytes,
        cutoff: r.cutoff,
        cutoff_time: super::rfc3339(r.cutoff, 0),
        clock_margin: r.margin,
        cutoff_reason: r.cutoff_reason(),
        cutoff_lock: r.cutoff_lock.as_ref().map(|l| l.describe()),
        kept_recent_message,
        index_rebuilt,
    })
}
