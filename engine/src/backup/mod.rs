//! The backup pipeline for one disk, in three stages over the write
//! session's pool ([`crate::pipeline::ordered`]):
//! - [`plan`] walks the slots in order and decides, per slot, to *read*
//!   it, *reuse* the parent's entry without reading, or record *zero*;
//! - [`hash`] (on the workers) detects zeros, hashes, looks the chunk up
//!   and compresses and encrypts new chunks only;
//! - [`writer`] (in slot order) stores new chunks through the session,
//!   fills manifest pages and stores the manifest.
//!
//! Write order (SPEC.md §11): chunks and pages are put Deferred; the index
//! learns of them only after `sync`; the manifest is put Immediate after a
//! final `sync`; the generation ([`commit_generation`]) names finished
//! manifests only. A crash at any point leaves no manifest naming a chunk
//! that is not durable.

mod hash;
mod plan;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vmkeep_format::generation::{DiskRef, Generation, SourceKind};
use vmkeep_format::manifest::{self, Manifest};
use vmkeep_format::ObjectId;

use crate::host::hostname;
use crate::pipeline::ordered;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::session::WriteSession;
use crate::source::{DiskSource, Extent};
use crate::{Error, Result};

/// Areas of the disk to read, sorted and non-overlapping.
pub type AreaIter = Box<dyn Iterator<Item = Result<Extent>> + Send>;

/// The parent generation of an incremental backup.
pub struct Parent {
    /// Names the parent in errors (generation id).
    pub label: String,
    pub manifest: Manifest,
}

/// One disk to back up.
pub struct DiskJob {
    pub disk_name: String,
    pub source: Box<dyn DiskSource>,
    /// Ask the source which ranges are allocated and record the rest as zero.
    pub use_allocation: bool,
    /// Only slots touched by these areas are read; the others come from the
    /// parent, or are zero without a parent.
    pub areas: Option<AreaIter>,
    pub parent: Option<Parent>,
    /// Chunk size of a new lineage (ignored with a parent: the parent's).
    pub chunk_size: u32,
    /// CBT change id to record.
    pub change_id: String,
    /// The lock this backup holds, if any: the writer checks it at every
    /// index commit and fails with [`Error::LockLost`] once it is lost.
    pub lock: Option<crate::lock::LockHandle>,
    /// Set by the caller to stop this backup (another disk of the same
    /// generation failed): it then fails with [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The result of backing up one disk.
#[derive(Clone, Debug)]
pub struct DiskResult {
    pub manifest_id: ObjectId,
    pub manifest: Manifest,
    pub summary: DiskSummary,
}

/// What happened to each slot of a backed-up disk. The four kinds are
/// exclusive: `new_chunks + dedup_chunks + zero_slots + unchanged_slots
/// == slots`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskSummary {
    pub slots: u64,
    /// Read, and stored as a new chunk.
    pub new_chunks: u64,
    /// Read, and found already stored.
    pub dedup_chunks: u64,
    /// Read as zeros, or unallocated (not taken from the parent).
    pub zero_slots: u64,
    /// Taken from the parent without reading.
    pub unchanged_slots: u64,
    /// Outside the areas but read anyway, because the parent's entry could
    /// not be reused (included in the kinds above).
    pub reread_slots: u64,
    pub read_bytes: u64,
    pub new_stored_bytes: u64,
    /// Things the user should know (a parent page that could not be read).
    pub notes: Vec<String>,
}

impl DiskResult {
    /// The generation's reference to this disk.
    pub fn disk_ref(&self) -> DiskRef {
        let m = &self.manifest;
        DiskRef {
            name: m.disk_name.clone(),
            manifest: self.manifest_id,
            capacity: m.capacity,
            chunk_size: m.chunk_size,
            data_bytes: data_bytes(m),
            new_stored_bytes: m.stats.new_stored_bytes,
        }
    }
}

/// Bytes in data slots (an upper bound when the last slot is short).
fn data_bytes(m: &Manifest) -> u64 {
    (m.stats.data_slots * m.chunk_size as u64).min(m.capacity)
}

/// What the planner hands the workers.
pub(crate) enum Work {
    /// A slot's data, read.
    Read { buf: Vec<u8> },
    /// Entries decided without reading (reused from the parent, or zero).
    Fixed {
        entries: Vec<ObjectId>,
        reused: bool,
    },
}

/// What the workers hand the writer.
pub(crate) enum Done {
    Slot {
        slot_len: u64,
        id: ObjectId,
        /// The encoded chunk and its plaintext length, when it is new.
        new_blob: Option<(Vec<u8>, u32)>,
        read: u64,
    },
    Fixed {
        entries: Vec<ObjectId>,
        reused: bool,
    },
}

/// What the stages of one disk's backup share.
pub(crate) struct Run<'a> {
    session: &'a WriteSession<'a>,
    /// What the run should tell its user (a parent page that could not be
    /// read, say).
    notes: Mutex<Vec<String>>,
    /// Slots outside the areas read anyway: the parent's entry could not
    /// be reused.
    reread_slots: AtomicU64,
    /// The backup's lock.
    lock: Option<crate::lock::LockHandle>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Run<'_> {
    fn check_lock(&self) -> Result<()> {
        match &self.lock {
            Some(l) => l.check(),
            None => Ok(()),
        }
    }

    fn check_cancelled(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}

/// Backs up one disk through `session` and stores its manifest (durably).
/// The generation document is written by the caller
/// ([`commit_generation`]).
pub fn backup_disk(
    session: &WriteSession<'_>,
    job: DiskJob,
    progress: &dyn Progress,
) -> Result<DiskResult> {
    let DiskJob {
        disk_name,
        mut source,
        use_allocation,
        areas,
        parent,
        chunk_size,
        change_id,
        lock,
        cancel,
    } = job;
    let capacity = source.capacity();
    let cs = match &parent {
        Some(p) => {
            if p.manifest.capacity != capacity {
                return Err(Error::Parent {
                    parent: p.label.clone(),
                    msg: format!(
                        "disk {} had {} bytes, {} has {} now: take a full backup (no --parent)",
                        p.manifest.disk_name,
                        p.manifest.capacity,
                        source.describe(),
                        capacity
                    ),
                });
            }
            p.manifest.chunk_size
        }
        None => chunk_size,
    };
    manifest::check_chunk_size(cs).map_err(|e| Error::Invalid(e.to_string()))?;
    let slots = manifest::slot_count(capacity, cs);
    let run = Run {
        session,
        notes: Mutex::new(Vec::new()),
        reread_slots: AtomicU64::new(0),
        lock,
        cancel,
    };
    progress.start(&source.describe(), capacity);
    let mut writer = writer::Writer::new(&run, capacity, cs);
    let window = session.threads() * 4 + 4;
    let work = |w: Work| hash::work(&run, w);
    let sh = &run;
    let parent_ref = parent.as_ref();
    let result = ordered(
        session.pool(),
        window,
        move |emit| {
            plan::read(
                sh,
                emit,
                source.as_mut(),
                cs,
                slots,
                use_allocation,
                areas,
                parent_ref,
            )
        },
        &work,
        |d| writer.take(d, progress),
    );
    progress.finish();
    result?;
    writer.check_complete(slots)?;
    writer.finish(disk_name, capacity, change_id)
}

/// What a generation records besides its disks.
pub struct GenerationInfo {
    pub source_kind: SourceKind,
    pub source: String,
    pub parent: Option<ObjectId>,
    pub started: i64,
    pub utc_offset: i32,
    pub metadata: Vec<(String, Vec<u8>)>,
}

/// Writes the generation document for finished disks: the commit point.
pub fn commit_generation(
    repo: &Repository,
    info: GenerationInfo,
    disks: &[DiskResult],
) -> Result<(ObjectId, Generation)> {
    let g = Generation {
        source_kind: info.source_kind,
        source: info.source,
        hostname: hostname(),
        started: info.started,
        finished: crate::host::now_unix(),
        utc_offset: info.utc_offset,
        parent: info.parent,
        disks: disks.iter().map(|d| d.disk_ref()).collect(),
        metadata: {
            // SPEC.md §8: orders generations started within the same second.
            let mut m = info.metadata;
            let ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            m.push((
                crate::repo::META_COMMITTED_NS.to_string(),
                ns.to_string().into_bytes(),
            ));
            m
        },
        writer: format!("vmkeep {}", env!("CARGO_PKG_VERSION")),
    };
    let id = repo.commit_generation(&g)?;
    Ok((id, g))
}
