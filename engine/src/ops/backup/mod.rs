//! The backup operation: a set of disk sources into one generation of a
//! lineage. Choose the parent, take the lock, back the disks up
//! concurrently through the write session ([`crate::backup`]), commit the
//! generation.
//!
//! Nouns: the *lineage* is the name every generation of one source (an
//! image, a VM) shares (the generation's source); a [`DiskSpec`] is one
//! disk to read, with an [`AreaMode`] that says which of its areas; the
//! *parent* is the generation whose entries the slots outside a
//! changed-areas list keep (each disk continues the parent's disk of the
//! same name).
//!
//! Invariants (SPEC.md §12):
//! - a changed-areas list always has a parent: the one named, else the
//!   newest readable generation of the lineage; with none, the backup is
//!   refused (a list without a parent would store zeros everywhere else);
//! - `latest` means the newest generation *of the lineage*; a parent of
//!   another lineage is used only when named explicitly (an id or
//!   `latest:NAME`), and the areas are then relative to it;
//! - a changed-areas list is never applied to an older parent while a
//!   damaged generation of the same lineage (or of unknown lineage) could
//!   be newer: the list might be relative to that one;
//! - the parent is reloaded under the backup's lock, which names it, so a
//!   concurrent `forget` cannot remove it;
//! - the generation is committed only when every disk finished: if one
//!   fails, the others are stopped, nothing is committed, and the error
//!   names the disk.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;
use vmkeep_format::generation::SourceKind;

use crate::areas::AreaList;
use crate::backup::{self, GenerationInfo};
use crate::index;
use crate::lock::{Lock, LockTimes, Mode};
use crate::progress::Progress;
use crate::session::WriteSession;
use crate::source::DiskSource;
use crate::{Error, Result};

mod disks;
mod parent;

use disks::{disk_error, disk_report, prepare, run_disks};
use parent::{choose_parent, source_key};

/// Which areas of the disk a backup reads.
#[derive(Clone, Debug)]
pub enum AreaMode {
    /// Every slot (holes of a sparse source are still skipped with
    /// `use_allocation`).
    Everything,
    /// Only the listed areas changed since the parent; every other slot
    /// keeps the parent's entry.
    Changed(AreaList),
    /// Only the listed areas hold data (a first backup from an
    /// allocated-areas answer); every other slot is zero. No parent.
    Allocated(AreaList),
}

/// One disk to back up.
pub struct DiskSpec {
    /// The disk's name in the generation (unique within it); an
    /// incremental continues the parent's disk of this name.
    pub name: String,
    pub source: Box<dyn DiskSource>,
    pub areas: AreaMode,
    /// Ask the source which ranges are allocated (holes read as zeros).
    pub use_allocation: bool,
    /// CBT change id to record for the next incremental.
    pub change_id: String,
}

/// How to back up a set of disks into one generation.
pub struct BackupOptions {
    /// The lineage name (the generation's source).
    pub lineage: String,
    pub source_kind: SourceKind,
    /// `None`, `latest`, `latest:NAME` or an id prefix.
    pub parent: Option<String>,
    /// Disks read at once (0: all of them).
    pub parallel_disks: usize,
    /// The command line, for the lock file.
    pub command: String,
    /// When the backup started (Unix seconds) and the local UTC offset.
    pub started: i64,
    pub utc_offset: i32,
    /// Refresh and stale times of the backup's lock (default: SPEC.md's).
    pub lock_times: LockTimes,
    /// Generation metadata (SPEC.md §8) besides what the engine records.
    pub metadata: Vec<(String, Vec<u8>)>,
}

impl BackupOptions {
    /// Options for a backup of `lineage` started now, with SPEC.md's lock
    /// times and every disk at once.
    pub fn new(lineage: &str, source_kind: SourceKind) -> Self {
        BackupOptions {
            lineage: lineage.to_string(),
            source_kind,
            parent: None,
            parallel_disks: 0,
            command: String::new(),
            started: crate::host::now_unix(),
            utc_offset: 0,
            lock_times: LockTimes::default(),
            metadata: Vec::new(),
        }
    }
}

/// The areas a backup was given.
#[derive(Clone, Debug, Serialize)]
pub struct AreasReport {
    /// `changed` or `allocated`.
    pub kind: &'static str,
    pub origin: String,
    pub count: u64,
    pub bytes: u64,
}

/// The slots of the disk by what happened to them; they add up to `slots`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Breakdown {
    pub new: u64,
    pub already_stored: u64,
    pub zero: u64,
    pub unchanged: u64,
}

/// What a backup did to one disk.
#[derive(Clone, Debug, Serialize)]
pub struct DiskReport {
    pub disk: String,
    pub manifest: String,
    pub chunk_size: u32,
    /// Whether the disk continued the parent's disk of its name.
    pub incremental: bool,
    pub areas: Option<AreasReport>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// What a backup did to the slots of a disk, or of all its disks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub capacity: u64,
    pub slots: u64,
    pub breakdown: Breakdown,
    /// Slots outside the areas read anyway (the parent's entry could not
    /// be reused).
    pub reread_slots: u64,
    /// The manifest's counters (SPEC.md §7.2): data + zero = slots;
    /// reused slots are among them.
    pub data_slots: u64,
    pub zero_slots: u64,
    pub reused_slots: u64,
    pub read_bytes: u64,
    pub new_chunks: u64,
    pub new_plain_bytes: u64,
    pub new_stored_bytes: u64,
    pub dedup_chunks: u64,
}

impl Counts {
    /// Adds another disk's counts.
    pub fn add(&mut self, o: &Counts) {
        self.capacity += o.capacity;
        self.slots += o.slots;
        self.breakdown.new += o.breakdown.new;
        self.breakdown.already_stored += o.breakdown.already_stored;
        self.breakdown.zero += o.breakdown.zero;
        self.breakdown.unchanged += o.breakdown.unchanged;
        self.reread_slots += o.reread_slots;
        self.data_slots += o.data_slots;
        self.zero_slots += o.zero_slots;
        self.reused_slots += o.reused_slots;
        self.read_bytes += o.read_bytes;
        self.new_chunks += o.new_chunks;
        self.new_plain_bytes += o.new_plain_bytes;
        self.new_stored_bytes += o.new_stored_bytes;
        self.dedup_chunks += o.dedup_chunks;
    }
}

/// What a backup did: the generation, and per disk. The counters at the
/// top are the sums over the disks.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub generation: String,
    pub source: String,
    pub parent: Option<String>,
    /// How the parent was chosen (`named`, `latest of the lineage`), when
    /// there is one.
    pub parent_rule: Option<String>,
    pub disks: Vec<DiskReport>,
    /// The sums over the disks.
    #[serde(flatten)]
    pub counts: Counts,
    pub warnings: Vec<String>,
}

/// The longest name accepted for a lineage or disk (bytes).
pub const MAX_NAME: usize = 255;

/// Checks a lineage or disk name: not empty, at most [`MAX_NAME`] bytes,
/// no control characters (names are printed in listings and logs).
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |msg: &str| {
        Err(Error::BadName {
            what,
            name: name.to_string(),
            msg: msg.to_string(),
        })
    };
    if name.trim().is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad(&format!("it is longer than {MAX_NAME} bytes"));
    }
    if name.chars().any(char::is_control) {
        return bad("it holds a control character (newline, tab, escape, ...)");
    }
    Ok(())
}

/// Backs up one disk as the next generation of `o.lineage` (the common
/// case of an image; see [`backup`]).
pub fn backup_source(
    session: &WriteSession<'_>,
    disk: DiskSpec,
    o: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    backup(session, vec![disk], o, progress)
}

/// Backs up `disks` into one new generation of `o.lineage` through
/// `session`, reading up to `o.parallel_disks` disks at once. See the
/// module's invariants.
pub fn backup(
    session: &WriteSession<'_>,
    disks: Vec<DiskSpec>,
    o: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let (repo, index) = (session.repo(), session.index());
    check_name("lineage name", &o.lineage)?;
    if disks.is_empty() {
        return Err(Error::Invalid("a backup needs at least one disk".into()));
    }
    let mut names = std::collections::HashSet::new();
    for d in &disks {
        check_name("disk name", &d.name)?;
        if !names.insert(d.name.as_str()) {
            return Err(Error::BadName {
                what: "disk name",
                name: d.name.clone(),
                msg: "two disks of the backup have it".into(),
            });
        }
        if let AreaMode::Changed(a) | AreaMode::Allocated(a) = &d.areas {
            a.check_within(d.source.capacity())
                .map_err(|e| disk_error(&d.name, disks.len(), e))?;
        }
    }
    let changed = disks
        .iter()
        .any(|d| matches!(d.areas, AreaMode::Changed(_)));
    let allocated = disks
        .iter()
        .any(|d| matches!(d.areas, AreaMode::Allocated(_)));
    let chosen = choose_parent(repo, index, &o, changed, allocated)?;
    let mut warnings = Vec::new();
    let lock = Lock::acquire_with(
        repo.backend().clone(),
        Mode::Shared,
        &o.command,
        chosen.as_ref().map(|c| c.id),
        o.lock_times,
    )?;
    // Loaded again under the lock: a forget that ran in between would have
    // removed it (the lock names the parent, so none can from now on).
    let parent_gen = match &chosen {
        None => None,
        Some(c) => {
            warnings.extend(c.warnings.iter().cloned());
            let g = repo.load_generation(&c.id).map_err(|e| Error::Parent {
                parent: c.id.short(),
                msg: e.to_string(),
            })?;
            Some((c, g))
        }
    };
    // Whatever any host quarantined stays out of this index.
    index::forget_quarantined(repo, index)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let n = disks.len();
    let mut prepared = Vec::with_capacity(n);
    for d in disks {
        let name = d.name.clone();
        let p = prepare(repo, d, parent_gen.as_ref(), &lock, &cancel, &mut warnings)
            .map_err(|e| disk_error(&name, n, e))?;
        prepared.push(p);
    }
    let total: u64 = prepared.iter().map(|p| p.job.source.capacity()).sum();
    progress.start(
        &if n == 1 {
            prepared[0].job.source.describe()
        } else {
            format!("{n} disks")
        },
        total,
    );
    let results = run_disks(session, prepared, o.parallel_disks, &cancel, progress);
    progress.finish();
    let results = results?;
    // The commit point: only under a lock still held.
    lock.check()?;
    let info = GenerationInfo {
        source_kind: o.source_kind,
        source: o.lineage.clone(),
        parent: chosen.as_ref().map(|c| c.id),
        started: o.started,
        utc_offset: o.utc_offset,
        metadata: o.metadata,
    };
    let finished: Vec<_> = results.iter().map(|(_, r)| r.clone()).collect();
    let (gid, _) = backup::commit_generation(repo, info, &finished)?;
    index.meta_put(&source_key(&gid), o.lineage.as_bytes())?;
    let mut report = BackupReport {
        generation: gid.to_hex(),
        source: o.lineage,
        parent: chosen.as_ref().map(|c| c.id.to_hex()),
        parent_rule: chosen.as_ref().map(|c| c.rule.to_string()),
        disks: Vec::with_capacity(n),
        counts: Counts::default(),
        warnings,
    };
    for (p, disk) in results {
        let r = disk_report(p, disk, &mut report.warnings);
        report.counts.add(&r.counts);
        report.disks.push(r);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_control_characters_are_refused() {
        for bad in ["", "  ", "a\nb", "tab\there", "esc\u{1b}[31m", "nul\0"] {
            let e = check_name("disk name", bad).unwrap_err().to_string();
            assert!(e.contains("disk name"), "{e}");
        }
        assert!(check_name("disk name", &"x".repeat(MAX_NAME + 1)).is_err());
        for good in ["vm1", "vm1/scsi0:1", "Datenbank Ü", "[ds1] vm/vm.vmdk"] {
            check_name("disk name", good).unwrap();
        }
    }
}
