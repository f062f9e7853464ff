//! The verify operation: check that every generation restores intact
//! ([`crate::verify`]), under a shared lock, and drop what is damaged from
//! this host's index so that no backup deduplicates against it again
//! (SPEC.md §13.3). Keyless, it checks stored bytes only (no password).
//!
//! Nouns: a [`DamageRow`] is one damaged object, by path and kind (so a
//! damaged manifest page is told apart from a damaged chunk); a
//! [`VerdictRow`] is one generation's status.
//!
//! Invariant: a generation is reported `intact` only when every chunk was
//! read (no subset).

use std::path::PathBuf;

use serde::Serialize;
use vmkeep_format::blob::BlobType;

use crate::backend::Backend;
use crate::index::{self, Dropped};
use crate::layout::object_dir;
use crate::lock::{Lock, Mode};
use crate::repo::Repository;
use crate::verify::{self as engine_verify, Subset, VerifyReport};
use crate::Result;

/// How to verify (keyed).
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Which chunks to read.
    pub subset: Subset,
    /// Move damaged objects aside to `quarantine/`.
    pub quarantine: bool,
    /// This host's index ([`super::index::path`]), to drop damaged objects
    /// from; `None`: leave every index alone.
    pub index: Option<PathBuf>,
    /// The command line, for the lock file.
    pub command: String,
}

/// One damaged or missing object.
#[derive(Clone, Debug, Serialize)]
pub struct DamageRow {
    pub path: String,
    /// `chunk`, `manifest page`, `manifest`, `generation`, `key slot` or
    /// `config` (from the path).
    pub kind: &'static str,
    pub problem: String,
}

/// The verdict on one generation.
#[derive(Clone, Debug, Serialize)]
pub struct VerdictRow {
    pub id: String,
    /// Empty when the generation itself cannot be read.
    pub source: String,
    /// `intact`, `intact in the checked subset` or `damaged`.
    pub status: &'static str,
    /// Every chunk read and none damaged.
    pub intact: bool,
    /// Paths of the damaged objects it references.
    pub damaged_objects: Vec<String>,
}

/// What dropping damaged objects from the index did.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexDrop {
    /// Dropped now.
    Dropped(usize),
    /// The index is in use: dropped when it is next opened.
    Noted(usize),
}

/// What verify found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyOpReport {
    /// Nothing damaged.
    pub clean: bool,
    /// Only a subset of the chunks was read.
    pub subset: bool,
    /// Checked without the key (stored bytes only).
    pub keyless: bool,
    pub chunks_referenced: u64,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub damage: Vec<DamageRow>,
    pub quarantined: Vec<String>,
    pub generations: Vec<VerdictRow>,
    /// `None` when nothing was damaged or no index was given.
    pub index: Option<IndexDrop>,
}

/// The kind of object at `path`.
fn kind(path: &str) -> &'static str {
    for ty in [
        BlobType::Chunk,
        BlobType::ManifestPage,
        BlobType::Manifest,
        BlobType::Generation,
    ] {
        if path
            .strip_prefix(object_dir(ty))
            .is_some_and(|r| r.starts_with('/'))
        {
            return ty.name();
        }
    }
    if path.starts_with("keys/") {
        "key slot"
    } else {
        "config"
    }
}

fn report(r: VerifyReport, keyless: bool, index: Option<IndexDrop>) -> VerifyOpReport {
    let subset = r.subset;
    VerifyOpReport {
        clean: r.clean(),
        subset: subset != Subset::All,
        keyless,
        chunks_referenced: r.chunks_referenced,
        chunks_checked: r.chunks_checked,
        bytes_checked: r.bytes_checked,
        damage: r
            .damage
            .into_iter()
            .map(|d| DamageRow {
                kind: kind(&d.path),
                path: d.path,
                problem: d.problem,
            })
            .collect(),
        quarantined: r.quarantined,
        generations: r
            .generations
            .into_iter()
            .map(|v| VerdictRow {
                id: v.id.to_hex(),
                status: v.status(subset),
                intact: v.damaged.is_empty() && subset == Subset::All,
                source: v.source,
                damaged_objects: v.damaged,
            })
            .collect(),
        index,
    }
}

/// Verifies every generation with the key.
pub fn verify(repo: &Repository, o: &VerifyOptions) -> Result<VerifyOpReport> {
    let _lock = Lock::acquire(repo.backend().clone(), Mode::Shared, &o.command, None)?;
    let r = engine_verify::verify(repo, None, o.subset, o.quarantine)?;
    let dropped = match &o.index {
        Some(p) if !r.bad.is_empty() => Some(match index::drop_damaged(p, &r.bad)? {
            Dropped::Now(n) => IndexDrop::Dropped(n),
            Dropped::Noted(n) => IndexDrop::Noted(n),
        }),
        _ => None,
    };
    Ok(report(r, false, dropped))
}

/// Checks every stored object against its checksum, without the key (what
/// an offsite host runs). Fails when `backend` holds no repository.
pub fn verify_keyless(backend: &dyn Backend) -> Result<VerifyOpReport> {
    Repository::read_config(backend)?;
    Ok(report(engine_verify::verify_keyless(backend)?, true, None))
}
