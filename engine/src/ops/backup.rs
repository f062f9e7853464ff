//! The backup operation for one disk lineage: choose the parent, take the
//! lock, run the pipeline ([`crate::backup`]), commit the generation.
//!
//! Nouns: the *lineage* is the name every generation of one disk shares
//! (the generation's source); an [`AreaMode`] says which areas of the disk
//! to read; the *parent* is the generation whose entries the slots outside
//! a changed-areas list keep.
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
//!   concurrent `forget` cannot remove it.

use serde::Serialize;
use vmkeep_format::generation::{Generation, SourceKind};
use vmkeep_format::ObjectId;

use crate::areas::AreaList;
use crate::backup::{self, DiskJob, DiskSummary, GenerationInfo, Parent};
use crate::index::{self, Index};
use crate::lock::{Lock, LockTimes, Mode};
use crate::progress::Progress;
use crate::repo::{GenerationList, Repository};
use crate::source::DiskSource;
use crate::{Error, Result};

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

/// What to back up and how.
pub struct BackupOptions {
    /// The lineage (and disk) name.
    pub lineage: String,
    pub source_kind: SourceKind,
    pub areas: AreaMode,
    /// `None`, `latest`, `latest:NAME` or an id prefix.
    pub parent: Option<String>,
    /// Ask the source which ranges are allocated (holes read as zeros).
    pub use_allocation: bool,
    /// CBT change id to record for the next incremental.
    pub change_id: String,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// The command line, for the lock file.
    pub command: String,
    /// When the backup started (Unix seconds) and the local UTC offset.
    pub started: i64,
    pub utc_offset: i32,
    /// Refresh and stale times of the backup's lock (default: SPEC.md's).
    pub lock_times: LockTimes,
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
#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub new: u64,
    pub already_stored: u64,
    pub zero: u64,
    pub unchanged: u64,
}

/// What a backup did.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub generation: String,
    pub source: String,
    pub disk: String,
    pub manifest: String,
    pub capacity: u64,
    pub chunk_size: u32,
    pub parent: Option<String>,
    /// How the parent was chosen (`named`, `latest of the lineage`), when
    /// there is one.
    pub parent_rule: Option<String>,
    pub areas: Option<AreasReport>,
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

/// Index meta key remembering the source of a generation: the lineage of
/// a generation that later becomes unreadable stays known (an id is the
/// keyed hash of the generation's bytes, so this can never be stale).
fn source_key(id: &ObjectId) -> String {
    format!("generation-source/{}", id.to_hex())
}

fn remember_sources(index: &dyn Index, list: &GenerationList) -> Result<()> {
    for (id, g) in &list.readable {
        let k = source_key(id);
        if index.meta_get(&k)?.is_none() {
            index.meta_put(&k, g.source.as_bytes())?;
        }
    }
    Ok(())
}

/// The chosen parent.
struct Chosen {
    id: ObjectId,
    rule: &'static str,
    warnings: Vec<String>,
}

fn choose_parent(
    repo: &Repository,
    index: &dyn Index,
    o: &BackupOptions,
) -> Result<Option<Chosen>> {
    let changed = matches!(o.areas, AreaMode::Changed(_));
    let spec = match (&o.parent, &o.areas) {
        (Some(_), AreaMode::Allocated(_)) => {
            return Err(Error::Invalid(
                "an allocated-areas backup is a full backup: it takes no parent".into(),
            ))
        }
        (Some(s), _) => s.clone(),
        (None, AreaMode::Changed(_)) => "latest".to_string(),
        (None, _) => return Ok(None),
    };
    let mut warnings = Vec::new();
    if spec != "latest" {
        let (id, g) = repo.resolve_generation(&spec).map_err(|e| Error::Parent {
            parent: spec.clone(),
            msg: e.to_string(),
        })?;
        if g.source != o.lineage {
            warnings.push(format!(
                "parent generation {} is of lineage {:?}, not {:?}: it was named explicitly, so it is used",
                id.short(),
                g.source,
                o.lineage
            ));
        }
        return Ok(Some(Chosen {
            id,
            rule: "named",
            warnings,
        }));
    }
    let list = repo.list_generations()?;
    remember_sources(index, &list)?;
    let Some((id, g)) = list.latest(Some(&o.lineage)) else {
        if changed {
            return Err(Error::Parent {
                parent: "latest".into(),
                msg: format!(
                    "lineage {:?} has no readable generation to take the unchanged slots from{}; \
                     for a first backup from an allocated-areas list use --allocated-areas, \
                     or back up without --changed-areas to read the whole disk",
                    o.lineage,
                    damaged_note(&list)
                ),
            });
        }
        warnings.push(format!(
            "lineage {:?} has no readable generation yet: this is a full backup",
            o.lineage
        ));
        return Ok(None);
    };
    // A damaged generation that could be this lineage's newest: the list
    // of changed areas may be relative to it.
    let suspects: Vec<String> = list
        .damaged_since(g.started)
        .into_iter()
        .filter_map(|d| {
            let known = index.meta_get(&source_key(&d.id)).ok().flatten();
            match known {
                Some(src) if src != o.lineage.as_bytes() => None,
                _ => Some(format!("{} ({})", d.id.short(), d.problem)),
            }
        })
        .collect();
    if !suspects.is_empty() {
        let msg = format!(
            "generation {} cannot be read and may be newer than {} in lineage {:?}",
            suspects.join(", "),
            id.short(),
            o.lineage
        );
        if changed {
            return Err(Error::Parent {
                parent: "latest".into(),
                msg: format!(
                    "{msg}: the changed areas may be relative to it, so they cannot be applied to {}. \
                     Name the parent the list is relative to with --parent ID, or back up without \
                     --changed-areas to read the whole disk (`vmkeep forget ID` removes a damaged generation)",
                    id.short()
                ),
            });
        }
        warnings.push(format!("{msg}; this backup reads the whole disk"));
    }
    Ok(Some(Chosen {
        id: *id,
        rule: "latest of the lineage",
        warnings,
    }))
}

fn damaged_note(list: &GenerationList) -> String {
    if list.damaged.is_empty() {
        String::new()
    } else {
        format!(
            " ({} generation(s) cannot be read: {})",
            list.damaged.len(),
            list.damaged
                .iter()
                .map(|d| d.id.short())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Finds the disk of `g` that continues disk `disk`: the disk of that
/// name (never another one: its data would become this disk's).
fn parent_disk<'a>(
    g: &'a Generation,
    pid: &ObjectId,
    disk: &str,
) -> Result<&'a vmkeep_format::generation::DiskRef> {
    crate::repo::disk_of(g, pid, disk).map_err(|e| match e {
        Error::NoSuchDisk { disk, has, .. } => Error::Parent {
            parent: pid.short(),
            msg: format!("it has no disk named {disk:?} (it has: {has})"),
        },
        e => e,
    })
}

/// Backs up `source` as the next generation of `o.lineage`.
pub fn backup_source(
    repo: &Repository,
    index: &dyn Index,
    source: Box<dyn DiskSource>,
    o: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    check_name("disk name", &o.lineage)?;
    let capacity = source.capacity();
    if let AreaMode::Changed(a) | AreaMode::Allocated(a) = &o.areas {
        a.check_within(capacity)?;
    }
    let chosen = choose_parent(repo, index, &o)?;
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
    let parent = match &chosen {
        None => None,
        Some(c) => {
            warnings.extend(c.warnings.iter().cloned());
            let g = repo.load_generation(&c.id).map_err(|e| Error::Parent {
                parent: c.id.short(),
                msg: e.to_string(),
            })?;
            let d = parent_disk(&g, &c.id, &o.lineage)?;
            if d.capacity != capacity {
                return Err(Error::Parent {
                    parent: c.id.short(),
                    msg: format!(
                        "disk {:?} had {} bytes, {} has {capacity}: the disk changed size, \
                         take a full backup (no --parent, no --changed-areas)",
                        d.name,
                        d.capacity,
                        source.describe()
                    ),
                });
            }
            let manifest = repo.load_manifest(&d.manifest).map_err(|e| Error::Parent {
                parent: c.id.short(),
                msg: e.to_string(),
            })?;
            Some(Parent {
                label: c.id.short(),
                manifest,
            })
        }
    };
    // Whatever any host quarantined stays out of this index.
    index::forget_quarantined(repo, index)?;
    let (areas_report, areas) = match &o.areas {
        AreaMode::Everything => (None, None),
        AreaMode::Changed(a) | AreaMode::Allocated(a) => (
            Some(AreasReport {
                kind: if matches!(o.areas, AreaMode::Changed(_)) {
                    "changed"
                } else {
                    "allocated"
                },
                origin: a.origin.clone(),
                count: a.count,
                bytes: a.bytes,
            }),
            Some(a.iter()),
        ),
    };
    let job = DiskJob {
        disk_name: o.lineage.clone(),
        source,
        use_allocation: o.use_allocation,
        areas,
        parent,
        chunk_size: repo.config().chunk_size,
        change_id: o.change_id.clone(),
        threads: o.threads,
        lock: Some(lock.handle()),
    };
    let disk = backup::backup_disk(repo, index, job, progress)?;
    // The commit point: only under a lock still held.
    lock.check()?;
    let info = GenerationInfo {
        source_kind: o.source_kind,
        source: o.lineage.clone(),
        parent: chosen.as_ref().map(|c| c.id),
        started: o.started,
        utc_offset: o.utc_offset,
        metadata: vec![],
    };
    let (gid, _) = backup::commit_generation(repo, info, std::slice::from_ref(&disk))?;
    index.meta_put(&source_key(&gid), o.lineage.as_bytes())?;
    let DiskSummary {
        slots,
        new_chunks,
        dedup_chunks,
        zero_slots,
        unchanged_slots,
        reread_slots,
        notes,
        ..
    } = disk.summary.clone();
    warnings.extend(notes);
    let st = &disk.manifest.stats;
    Ok(BackupReport {
        generation: gid.to_hex(),
        source: o.lineage.clone(),
        disk: o.lineage,
        manifest: disk.manifest_id.to_hex(),
        capacity,
        chunk_size: disk.manifest.chunk_size,
        parent: chosen.as_ref().map(|c| c.id.to_hex()),
        parent_rule: chosen.as_ref().map(|c| c.rule.to_string()),
        areas: areas_report,
        slots,
        breakdown: Breakdown {
            new: new_chunks,
            already_stored: dedup_chunks,
            zero: zero_slots,
            unchanged: unchanged_slots,
        },
        reread_slots,
        data_slots: st.data_slots,
        zero_slots: st.zero_slots,
        reused_slots: st.reused_slots,
        read_bytes: st.read_bytes,
        new_chunks: st.new_chunks,
        new_plain_bytes: st.new_plain_bytes,
        new_stored_bytes: st.new_stored_bytes,
        dedup_chunks: st.dedup_chunks,
        warnings,
    })
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
