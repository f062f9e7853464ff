//! Garbage collection: two-phase, safe while backups run (SPEC.md §13).
//!
//! Phase 1 (*trash*), under a `gc` lock: note the start time T; take the
//! cut-off C = min(T, start of the oldest live backup lock) − 60 s; mark
//! every chunk, page and manifest that a generation references; move every
//! unmarked object last modified before C to `trash/<T>/<path>` (recorded
//! in `trashlog/<T>`, which holds the end time E of the sweep) and drop it
//! from the index. Objects written or touched by running backups are newer
//! than C and stay.
//!
//! Phase 2 (*empty*), for a batch T, once every backup whose lock existed
//! at E has finished (at once when none did): mark again with every
//! generation now committed, move referenced objects back, delete the rest.
//! This closes the race where a backup touched an object just before the
//! sweep moved it: that backup has committed by then, so its generation is
//! marked. A backup starting after E that meets a trashed chunk finds it
//! missing (its touch fails) and stores it again. Readers look in the trash
//! when an object is missing (`Repository::get_object`).
//!
//! Memory: one set of 8-byte id prefixes per object type (a prefix
//! collision only keeps garbage, never deletes data: at ten million chunks
//! the chance that any garbage chunk shares a prefix with a live one is
//! about 3 in a million), so about 10–20 bytes per referenced chunk, 30 while
//! the set grows; sweeps list one fan-out directory (`chunks/ab`) at a time,
//! so the list of candidates is 1/256 of the garbage.

use std::collections::HashSet;

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use crate::backend::{list_names, Backend, Durability};
use crate::host::now_unix;
use crate::index::Index;
use crate::lock::{self, Mode};
use crate::repo::{id_from_path, object_dir, Repository};
use crate::{Error, Result};

/// Seconds subtracted from the cut-off for clock differences between hosts.
pub const CLOCK_MARGIN: i64 = 60;

/// What a gc run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub generations: u64,
    pub referenced_chunks: u64,
    /// Objects moved to the trash by this run.
    pub trashed: u64,
    pub trashed_bytes: u64,
    /// Objects deleted for good (from this run's or earlier batches).
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Trashed objects found referenced again and put back.
    pub restored: u64,
    /// Trash batches left for a later run because backups still hold them.
    pub pending_batches: Vec<String>,
}

#[derive(Default)]
struct Marks {
    sets: [HashSet<u64>; 3],
}

fn slot(ty: BlobType) -> usize {
    match ty {
        BlobType::Chunk => 0,
        BlobType::ManifestPage => 1,
        _ => 2,
    }
}

fn prefix(id: &ObjectId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// The directories objects of `ty` live in, listed one at a time so that a
/// sweep holds one directory's names, not the whole repository's.
fn shards(ty: BlobType) -> Vec<String> {
    match ty {
        BlobType::Chunk | BlobType::ManifestPage => (0..=255u8)
            .map(|i| format!("{}/{i:02x}", object_dir(ty)))
            .collect(),
        _ => vec![object_dir(ty).to_string()],
    }
}

const SWEPT: [BlobType; 3] = [BlobType::Chunk, BlobType::ManifestPage, BlobType::Manifest];

impl Marks {
    fn add(&mut self, ty: BlobType, id: &ObjectId) {
        self.sets[slot(ty)].insert(prefix(id));
    }
    fn has(&self, ty: BlobType, id: &ObjectId) -> bool {
        self.sets[slot(ty)].contains(&prefix(id))
    }
}

/// Marks everything the current generations reference. An unreadable
/// generation, manifest or page aborts the run: deleting on incomplete
/// marks could destroy data a damaged document would have protected. A
/// generation listed but gone when loaded was forgotten meanwhile (`forget`
/// runs beside gc): it is skipped, as if listed a moment later.
fn mark(repo: &Repository) -> Result<(Marks, u64)> {
    let mut m = Marks::default();
    let ids = repo.generation_ids()?;
    let mut marked = 0;
    for gid in &ids {
        let g = match repo.load_generation(gid) {
            Ok(g) => g,
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => return Err(gc_refuses(format!("generation {}: {e}", gid.short()))),
        };
        marked += 1;
        for d in &g.disks {
            if m.has(BlobType::Manifest, &d.manifest) {
                continue;
            }
            m.add(BlobType::Manifest, &d.manifest);
            let man = repo
                .load_manifest(&d.manifest)
                .map_err(|e| gc_refuses(e.to_string()))?;
            for pid in &man.pages {
                if m.has(BlobType::ManifestPage, pid) {
                    continue;
                }
                m.add(BlobType::ManifestPage, pid);
                let page = repo.load_page(pid).map_err(|e| gc_refuses(e.to_string()))?;
                for c in page.entries.iter().filter(|c| !c.is_zero()) {
                    m.add(BlobType::Chunk, c);
                }
            }
        }
    }
    Ok((m, marked))
}

fn gc_refuses(what: String) -> Error {
    Error::Invalid(format!(
        "garbage collection stopped, nothing deleted: {what} (run `vmkeep verify` and repair or forget it first)"
    ))
}

/// Runs garbage collection. `own_lock` is the name of the caller's gc lock.
pub fn gc(repo: &Repository, index: Option<&dyn Index>, own_lock: &str) -> Result<GcReport> {
    gc_with_margin(repo, index, own_lock, CLOCK_MARGIN)
}

/// [`gc`] with a chosen clock margin in seconds (tests use 0).
pub fn gc_with_margin(
    repo: &Repository,
    index: Option<&dyn Index>,
    own_lock: &str,
    margin: i64,
) -> Result<GcReport> {
    let b = repo.backend();
    let t0 = now_unix();
    let mut report = GcReport::default();
    let backups = |b: &dyn crate::backend::Backend| -> Result<Vec<lock::LockInfo>> {
        Ok(lock::live_others(b, Some(own_lock))?
            .into_iter()
            .filter(|l| l.mode == Mode::Shared)
            .collect())
    };
    let live = backups(b.as_ref())?;
    let cutoff = live.iter().map(|l| l.started).min().unwrap_or(t0).min(t0) - margin;
    let (marks, ngens) = mark(repo)?;
    report.generations = ngens;
    report.referenced_chunks = marks.sets[0].len() as u64;

    // Phase 1: move unreferenced old objects to the trash.
    let batch = format!("{t0}");
    let mut log_written = false;
    for ty in SWEPT {
        for shard in shards(ty) {
            let mut victims = Vec::new();
            b.list(&shard, &mut |p| {
                if let Some(id) = id_from_path(p) {
                    if !marks.has(ty, &id) {
                        victims.push((p.to_string(), id));
                    }
                }
                Ok(())
            })?;
            for (p, id) in victims {
                let size = match b.stat(&p)? {
                    Some(st) if st.modified < cutoff => st.size,
                    _ => continue,
                };
                if !log_written {
                    b.put(
                        &format!("trashlog/{batch}"),
                        b"sweeping\n",
                        Durability::Immediate,
                    )?;
                    log_written = true;
                }
                if let Some(ix) = index {
                    ix.remove(ty, &id)?;
                }
                b.rename(&p, &format!("trash/{batch}/{p}"), Durability::Deferred)?;
                report.trashed += 1;
                report.trashed_bytes += size;
            }
        }
    }
    if log_written {
        // Every move durable before the sweep is recorded as ended.
        b.sync()?;
        b.put(
            &format!("trashlog/{batch}"),
            format!("{}\n", now_unix()).as_bytes(),
            Durability::Immediate,
        )?;
    }

    // Phase 2: empty every batch whose concurrent backups have all finished.
    let batches = list_names(b.as_ref(), "trashlog")?;
    if batches.is_empty() {
        return Ok(report);
    }
    let live = backups(b.as_ref())?;
    let mut ready = Vec::new();
    for name in batches {
        let end: i64 = match b.get(&format!("trashlog/{name}"))? {
            Some(raw) => String::from_utf8_lossy(&raw)
                .trim()
                .parse()
                .unwrap_or(i64::MAX),
            None => continue,
        };
        // A batch whose sweep never finished (crash) counts as ending now.
        let end = if end == i64::MAX { now_unix() } else { end };
        if live.iter().any(|l| l.started <= end) {
            report.pending_batches.push(name);
        } else {
            ready.push(name);
        }
    }
    if ready.is_empty() {
        return Ok(report);
    }
    let (marks, _) = mark(repo)?;
    for name in ready {
        let top = format!("trash/{name}/");
        for ty in SWEPT {
            for shard in shards(ty) {
                let mut items = Vec::new();
                b.list(&format!("{top}{shard}"), &mut |p| {
                    items.push(p.to_string());
                    Ok(())
                })?;
                for p in items {
                    let orig = &p[top.len()..];
                    if id_from_path(orig).is_some_and(|id| marks.has(ty, &id)) {
                        b.rename(&p, orig, Durability::Deferred)?;
                        report.restored += 1;
                    } else {
                        report.deleted_bytes += b.size(&p)?.unwrap_or(0);
                        b.delete(&p)?;
                        report.deleted += 1;
                    }
                }
            }
        }
        // Objects put back must be durable in place before the batch
        // record goes: without it readers no longer look in this batch.
        b.sync()?;
        b.delete(&format!("trashlog/{name}"))?;
    }
    Ok(report)
}

/// Looks for the object at `path` in the trash batches, newest first,
/// reading it into `buf`; `false` when no batch holds it. Readers call it
/// when an object is missing from its place (SPEC.md §13.4).
pub fn find_in_trash(b: &dyn Backend, path: &str, buf: &mut Vec<u8>) -> Result<bool> {
    for name in list_names(b, "trashlog")?.iter().rev() {
        if b.get_into(&format!("trash/{name}/{path}"), buf)? {
            return Ok(true);
        }
    }
    Ok(false)
}
