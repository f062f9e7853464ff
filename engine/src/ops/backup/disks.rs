//! The disks of one backup: each disk's job prepared against its parent
//! disk, the pipelines run a bounded number at once through the write
//! session, and each disk's report.
//!
//! Invariant: the first disk to fail cancels the others; its error, naming
//! the disk, is the one returned, and no result is kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmkeep_format::generation::Generation;

use super::parent::{parent_disk, Chosen};
use super::{AreaMode, AreasReport, Breakdown, Counts, DiskReport, DiskSpec};
use crate::backup::{self, DiskJob, DiskResult, DiskSummary, Parent};
use crate::lock::Lock;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::session::WriteSession;
use crate::{Error, Result};

/// A disk ready to run: its job and what the report says of its areas.
pub(super) struct Prepared {
    pub name: String,
    pub job: DiskJob,
    pub areas: Option<AreasReport>,
    pub incremental: bool,
}

/// Names the disk in an error of a backup of several disks.
pub(super) fn disk_error(disk: &str, disks: usize, e: Error) -> Error {
    if disks == 1 {
        e
    } else {
        Error::Disk {
            disk: disk.to_string(),
            source: Box::new(e),
        }
    }
}

/// Finds the disk's parent (the parent generation's disk of its name),
/// checks it fits, and builds the job.
pub(super) fn prepare(
    repo: &Repository,
    d: DiskSpec,
    parent_gen: Option<&(&Chosen, Generation)>,
    lock: &Lock,
    cancel: &Arc<AtomicBool>,
    warnings: &mut Vec<String>,
) -> Result<Prepared> {
    let capacity = d.source.capacity();
    let parent = match (parent_gen, &d.areas) {
        // An allocated-areas list is a full backup of its disk.
        (None, _) | (Some(_), AreaMode::Allocated(_)) => None,
        (Some((c, g)), areas) => {
            let found = match parent_disk(g, &c.id, &d.name) {
                Ok(found) => Some(found),
                // A disk new since the lineage's latest: read whole, unless
                // its areas are relative to a parent it does not have, or
                // the parent was named for it.
                Err(e) if c.rule != "named" && !matches!(areas, AreaMode::Changed(_)) => {
                    warnings.push(format!("{e}: disk {:?} is backed up in full", d.name));
                    None
                }
                Err(e) => return Err(e),
            };
            match found {
                None => None,
                Some(pd) => {
                    if pd.capacity != capacity {
                        return Err(Error::Parent {
                            parent: c.id.short(),
                            msg: format!(
                                "disk {:?} had {} bytes, {} has {capacity}: the disk changed size, \
                                 take a full backup (no --parent, no --changed-areas)",
                                pd.name,
                                pd.capacity,
                                d.source.describe()
                            ),
                        });
                    }
                    let manifest = repo
                        .load_manifest(&pd.manifest)
                        .map_err(|e| Error::Parent {
                            parent: c.id.short(),
                            msg: e.to_string(),
                        })?;
                    Some(Parent {
                        label: c.id.short(),
                        manifest,
                    })
                }
            }
        }
    };
    let (areas_report, areas) = match &d.areas {
        AreaMode::Everything => (None, None),
        AreaMode::Changed(a) | AreaMode::Allocated(a) => (
            Some(AreasReport {
                kind: if matches!(d.areas, AreaMode::Changed(_)) {
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
    let incremental = parent.is_some();
    Ok(Prepared {
        name: d.name.clone(),
        areas: areas_report,
        incremental,
        job: DiskJob {
            disk_name: d.name,
            source: d.source,
            use_allocation: d.use_allocation,
            areas,
            parent,
            chunk_size: repo.config().chunk_size,
            change_id: d.change_id,
            lock: Some(lock.handle()),
            cancel: Some(cancel.clone()),
        },
    })
}

/// Progress of one disk among several: only the bytes go through.
struct DiskProgress<'a>(&'a dyn Progress);

impl Progress for DiskProgress<'_> {
    fn advance(&self, n: u64) {
        self.0.advance(n)
    }
}

/// Runs the disks' pipelines, `parallel` at once (0: all), in spec order
/// of their results. The first failure cancels the rest and is returned,
/// naming its disk.
pub(super) fn run_disks(
    session: &WriteSession<'_>,
    prepared: Vec<Prepared>,
    parallel: usize,
    cancel: &Arc<AtomicBool>,
    progress: &dyn Progress,
) -> Result<Vec<(DiskMeta, DiskResult)>> {
    let n = prepared.len();
    let parallel = if parallel == 0 { n } else { parallel.min(n) };
    let queue = Mutex::new(prepared.into_iter().enumerate());
    let results: Mutex<Vec<Option<(DiskMeta, DiskResult)>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let each = DiskProgress(progress);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let Some((i, p)) = queue.lock().expect("poisoned").next() else {
                    return;
                };
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let meta = DiskMeta {
                    name: p.name,
                    areas: p.areas,
                    incremental: p.incremental,
                };
                match backup::backup_disk(session, p.job, &each) {
                    Ok(r) => results.lock().expect("poisoned")[i] = Some((meta, r)),
                    Err(Error::Cancelled) => return,
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        let mut f = first_error.lock().expect("poisoned");
                        if f.is_none() {
                            *f = Some(disk_error(&meta.name, n, e));
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("poisoned") {
        return Err(e);
    }
    results
        .into_inner()
        .expect("poisoned")
        .into_iter()
        .map(|r| r.ok_or(Error::Cancelled))
        .collect()
}

/// What the report says of a disk besides its result.
pub(super) struct DiskMeta {
    name: String,
    areas: Option<AreasReport>,
    incremental: bool,
}

pub(super) fn disk_report(p: DiskMeta, disk: DiskResult, warnings: &mut Vec<String>) -> DiskReport {
    let DiskSummary {
        slots,
        new_chunks,
        dedup_chunks,
        zero_slots,
        unchanged_slots,
        reread_slots,
        notes,
        ..
    } = disk.summary;
    warnings.extend(notes.into_iter().map(|w| {
        if w.contains(&p.name) {
            w
        } else {
            format!("disk {}: {w}", p.name)
        }
    }));
    let st = &disk.manifest.stats;
    DiskReport {
        disk: p.name,
        manifest: disk.manifest_id.to_hex(),
        chunk_size: disk.manifest.chunk_size,
        incremental: p.incremental,
        areas: p.areas,
        counts: Counts {
            capacity: disk.manifest.capacity,
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
        },
    }
}
