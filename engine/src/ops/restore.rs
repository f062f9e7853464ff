//! The restore operation: one disk of a generation to a target (a raw
//! file or block device, a disk through VDDK, or any [`DiskTarget`]).
//! Resolve the generation under a shared lock, pick the disk, load its
//! manifest, open the target, run [`crate::restore::restore_disk`].
//!
//! Invariants: the target is opened only once the generation and disk are
//! known, so a typo creates no file; a failed restore's error
//! ([`Error::RestoreFailed`]) says what it left in the target (a file:
//! nothing; a device or disk: partial content); `latest` names the newest
//! readable generation, and the report warns of damaged ones that might be
//! newer.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::lock::{Lock, Mode};
use crate::progress::Progress;
use crate::repo::{disk_of, Repository};
use crate::target::{DiskTarget, FileTarget};
use crate::vddk::{ConnectSpec, VddkTarget};
use crate::{Error, Result};

/// What to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// An id prefix, `latest` or `latest:NAME`.
    pub generation: String,
    /// Which disk; `None` when the generation has one.
    pub disk: Option<String>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// The command line, for the lock file.
    pub command: String,
}

/// Where to restore to.
pub enum RestoreTo {
    /// A raw image file (replaced when `overwrite`) or a block device.
    File { path: PathBuf, overwrite: bool },
    /// An existing disk through VDDK (the library in `libdir`).
    Vddk {
        libdir: PathBuf,
        spec: ConnectSpec,
        path: String,
    },
    /// A target opened by the caller.
    Target(Box<dyn DiskTarget>),
}

impl RestoreTo {
    fn open(self) -> Result<Box<dyn DiskTarget>> {
        Ok(match self {
            RestoreTo::File { path, overwrite } => Box::new(FileTarget::create(&path, overwrite)?),
            RestoreTo::Vddk { libdir, spec, path } => {
                if spec.snapshot_ref.is_some() {
                    log::info!(
                        "writing {path}: the snapshot is passed to VDDK; writes go to the disk named"
                    );
                }
                Box::new(
                    VddkTarget::open(&libdir, &spec, &path)
                        .map_err(|source| Error::VddkOpen { path, source })?,
                )
            }
            RestoreTo::Target(t) => t,
        })
    }
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub generation: String,
    pub disk: String,
    /// The target, described.
    pub target: String,
    pub capacity: u64,
    pub data_bytes: u64,
    pub zero_bytes: u64,
    pub chunks: u64,
    /// Time spent restoring (after the generation was resolved).
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// Restores one disk of `o.generation` to `to`.
pub fn restore(
    repo: &Repository,
    o: &RestoreOptions,
    to: RestoreTo,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let _lock = Lock::acquire(repo.backend().clone(), Mode::Shared, &o.command, None)?;
    let (gid, gen, suspects) = repo.resolve_generation_noting(&o.generation)?;
    let warnings = suspects
        .iter()
        .map(|d| {
            format!(
                "generation {} cannot be read ({}) and may be newer than {}, which {} names",
                d.id.short(),
                d.problem,
                gid.short(),
                o.generation
            )
        })
        .collect();
    let disk = match &o.disk {
        Some(n) => disk_of(&gen, &gid, n)?,
        None if gen.disks.len() == 1 => &gen.disks[0],
        None => {
            return Err(Error::DiskNotChosen {
                generation: gid.short(),
                count: gen.disks.len(),
                has: gen
                    .disks
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let manifest = repo.load_manifest(&disk.manifest)?;
    let mut target = to.open()?;
    let t0 = Instant::now();
    let st = crate::restore::restore_disk(
        repo,
        &manifest,
        &gid.short(),
        target.as_mut(),
        o.threads,
        progress,
    )
    .map_err(|e| Error::RestoreFailed {
        note: target.failure_note(),
        source: Box::new(e),
    })?;
    Ok(RestoreReport {
        generation: gid.to_hex(),
        disk: disk.name.clone(),
        target: target.describe(),
        capacity: manifest.capacity,
        data_bytes: st.data_bytes,
        zero_bytes: st.zero_bytes,
        chunks: st.chunks,
        seconds: t0.elapsed().as_secs_f64(),
        warnings,
    })
}
