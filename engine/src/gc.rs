//! Garbage collection: two-phase, safe while backups run (SPEC.md §13.4).
//!
//! Phase 1 (*trash*), under a `gc` lock: note the start time T; take the
//! cut-off C = min(T, start of the oldest live shared lock) − 60 s; mark
//! every chunk, page and manifest that a generation references; move every
//! unmarked object last modified before C to `trash/<T>/<path>` (recorded
//! in `trashlog/<T>`, which holds the end time E of the sweep) and drop it
//! from the index. Objects written or touched by running backups are newer
//! than C and stay; the report counts the unreferenced ones kept so.
//! Moves are [`crate::trash`]'s: a copy, then a delete (a rename where the
//! backend has one), so no reader ever finds an object in neither place.
//!
//! Clocks (SPEC.md §11.1): C and E are this host's clock, lock starts the
//! holders', object times the storage's; [`CLOCK_MARGIN`] covers the
//! storage's clock being behind a host's, and hosts' clocks disagreeing,
//! by less than a minute.
//!
//! Phase 2 (*empty*), for a batch T, once every backup whose lock existed
//! at E (started by E plus the margin) has finished (at once when none
//! did): mark again with every generation now committed, move referenced
//! objects back, delete the rest.
//! This closes the race where a backup touched an object just before the
//! sweep moved it: that backup has committed by then, so its generation is
//! marked. A backup starting after E that meets a trashed chunk finds it
//! missing (its touch fails) and stores it again. Readers look in the trash
//! when an object is missing (`Repository::get_object`).
//!
//! Unreadable objects ([`Unreadable`]): a generation, manifest or page that
//! exists but cannot be read (checksum, decryption, decoding), or a manifest
//! or page that is named but missing, names objects no one can know.
//! Invariant: gc never deletes what such an object might name. So the level
//! below it has *unknown* marks: an unreadable generation makes every
//! manifest (in place and in the trash) a root, an unreadable manifest every
//! page, an unreadable page every chunk live. A type with unknown marks is
//! not swept, and phase 2 puts back every trashed object of that type. A
//! generation listed but gone when loaded was forgotten meanwhile and is
//! skipped. Damage never stops gc; only storage errors do.
//!
//! Memory: one set of 8-byte id prefixes per object type (a prefix
//! collision only keeps garbage, never deletes data: at ten million chunks
//! the chance that any garbage chunk shares a prefix with a live one is
//! about 3 in a million), so about 10–20 bytes per referenced chunk, 30 while
//! the set grows; manifests and pages read are also remembered by full id
//! (one per 1024 chunks at most), so two sharing a prefix are both read.
//! Sweeps list one fan-out directory (`chunks/ab`) at a time, so the list
//! of candidates is 1/256 of the garbage.

use std::collections::HashSet;

use vmkeep_format::blob::BlobType;
use vmkeep_format::generation::Generation;
use vmkeep_format::ObjectId;

use crate::backend::Backend;
use crate::host::now_unix;
use crate::index::Index;
use crate::layout::{id_from_path, shards, untrashed, Dir};
use crate::lock::{self, Lock, LockInfo, Mode};
use crate::repo::Repository;
use crate::trash;
use crate::{Error, Result};

/// Seconds subtracted from the cut-off, and added to a batch's end, for
/// the storage's clock lagging a host's and hosts' clocks differing.
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
    /// Objects whose references could not be read, each once; see
    /// [`Unreadable`] for what each keeps.
    pub unreadable: Vec<Unreadable>,
    /// Unreferenced objects left in place because they are not older than
    /// the cut-off, and their stored bytes.
    pub kept_recent: u64,
    pub kept_recent_bytes: u64,
    /// The cut-off C (Unix seconds): only objects modified before it go.
    pub cutoff: i64,
    /// The clock margin (seconds) C lies before its reference time.
    pub margin: i64,
    /// The live shared lock whose start C was taken from, when it started
    /// before this run; `None` when C is the run's start less the margin.
    pub cutoff_lock: Option<LockInfo>,
}

impl GcReport {
    /// Why the cut-off is where it is, for messages.
    pub fn cutoff_reason(&self) -> String {
        match &self.cutoff_lock {
            None => format!("{} s clock margin", self.margin),
            Some(l) => format!(
                "{} s clock margin before the start of the oldest live {}",
                self.margin,
                l.describe()
            ),
        }
    }

    fn note(&mut self, found: Vec<Unreadable>) {
        for u in found {
            if !self.unreadable.contains(&u) {
                self.unreadable.push(u);
            }
        }
    }
}

/// A generation, manifest or manifest page that could not be read (or, for
/// a manifest or page, is named but missing): the objects it names are
/// unknown, so every object of the type below it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// [`BlobType::Generation`], [`BlobType::Manifest`] or
    /// [`BlobType::ManifestPage`].
    pub ty: BlobType,
    pub id: ObjectId,
    /// The checksum, decryption or decoding error, or "missing".
    pub reason: String,
}

impl Unreadable {
    /// What gc keeps because of it, and how to collect that.
    pub fn consequence(&self) -> String {
        let verify = "`vmkeep verify` names the generations that use it; forget them (or put back an intact copy of the file) to collect them";
        match self.ty {
            BlobType::Generation => format!(
                "its references are unknown, so every manifest is kept; forget it by id (`vmkeep forget {}`) to collect them",
                self.id.to_hex()
            ),
            BlobType::Manifest => {
                format!("the pages it names are unknown, so every manifest page is kept; {verify}")
            }
            _ => format!("the chunks it names are unknown, so no chunk is collected; {verify}"),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} cannot be read ({}): {}",
            self.ty.name(),
            self.id.short(),
            self.reason,
            self.consequence()
        )
    }
}

/// Mark sets, one per swept type, of 8-byte id prefixes. Invariant: when
/// `unknown` is set for a type, every object of that type counts as live.
#[derive(Default)]
pub(crate) struct Marks {
    sets: [HashSet<u64>; 3],
    unknown: [bool; 3],
}

fn slot(ty: BlobType) -> usize {
    match ty {
        BlobType::Chunk => 0,
        BlobType::ManifestPage => 1,
        _ => 2,
    }
}

pub(crate) fn prefix(id: &ObjectId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"))
}

const SWEPT: [BlobType; 3] = [BlobType::Chunk, BlobType::ManifestPage, BlobType::Manifest];

impl Marks {
    fn add(&mut self, ty: BlobType, id: &ObjectId) {
        self.sets[slot(ty)].insert(prefix(id));
    }
    /// True when an object of `ty` must stay: marked, or its type's marks
    /// are unknown.
    pub(crate) fn live(&self, ty: BlobType, id: &ObjectId) -> bool {
        self.unknown(ty) || self.sets[slot(ty)].contains(&prefix(id))
    }
    /// True when an unreadable object may name any object of `ty`.
    pub(crate) fn unknown(&self, ty: BlobType) -> bool {
        self.unknown[slot(ty)]
    }
    /// Prefixes of the marked objects of `ty`.
    pub(crate) fn set(&self, ty: BlobType) -> &HashSet<u64> {
        &self.sets[slot(ty)]
    }
}

/// What to do when an object's references cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnUnreadable {
    /// gc: every object of the level below becomes a root (or, for chunks,
    /// live), so nothing it might name is deleted.
    KeepAll,
    /// stats: leave it out and report it.
    LeaveOut,
}

/// The outcome of a mark pass.
#[derive(Default)]
pub(crate) struct Marked {
    pub marks: Marks,
    /// Generations read and marked.
    pub generations: u64,
    pub unreadable: Vec<Unreadable>,
    /// Manifests and pages read, by full id: two of them sharing a prefix
    /// must both be read, or what the second names would go unmarked.
    /// Cheap: a page covers 1024 chunks.
    visited: HashSet<(BlobType, ObjectId)>,
}

/// Marks everything the current generations reference (SPEC.md §13.4). A
/// generation listed but gone when loaded was forgotten meanwhile (`forget`
/// runs beside gc): it is skipped, as if listed a moment later. Unreadable
/// objects are reported and handled as `on` says; only storage errors fail.
/// `seen` is called with every generation read.
pub(crate) fn mark(
    repo: &Repository,
    on: OnUnreadable,
    seen: &mut dyn FnMut(&Generation),
) -> Result<Marked> {
    let mut w = Marked::default();
    for gid in repo.generation_ids()? {
        let g = match repo.load_generation(&gid) {
            Ok(g) => g,
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => {
                w.unreadable(BlobType::Generation, &gid, e)?;
                continue;
            }
        };
        w.generations += 1;
        seen(&g);
        for d in &g.disks {
            w.manifest(repo, &d.manifest)?;
        }
    }
    if on == OnUnreadable::LeaveOut
        || !(w.marks.unknown(BlobType::Manifest) || w.marks.unknown(BlobType::ManifestPage))
    {
        return Ok(w);
    }
    // Roots for unknown levels: every object of the type, in its place and
    // in every trash batch (phase 2 may put those back). Unknown manifests
    // go first: reading them can make the pages unknown too.
    let batches = trash::batches(repo.backend().as_ref())?;
    for ty in [BlobType::Manifest, BlobType::ManifestPage] {
        if !w.marks.unknown(ty) {
            continue;
        }
        let dirs = shards(ty)
            .into_iter()
            .map(|d| d.path())
            .chain(batches.iter().map(|batch| {
                Dir::Trashed {
                    batch,
                    dir: &Dir::Blobs(ty),
                }
                .path()
            }));
        for dir in dirs {
            let mut ids = Vec::new();
            repo.backend().list(&dir, &mut |p| {
                ids.extend(id_from_path(p));
                Ok(())
            })?;
            for id in ids {
                if ty == BlobType::Manifest {
                    w.manifest(repo, &id)?;
                } else {
                    w.page(repo, &id)?;
                }
            }
        }
    }
    Ok(w)
}

impl Marked {
    fn manifest(&mut self, repo: &Repository, id: &ObjectId) -> Result<()> {
        if !self.visited.insert((BlobType::Manifest, *id)) {
            return Ok(());
        }
        self.marks.add(BlobType::Manifest, id);
        match repo.load_manifest(id) {
            Ok(man) => {
                for pid in &man.pages {
                    self.page(repo, pid)?;
                }
                Ok(())
            }
            Err(e) => self.unreadable(BlobType::Manifest, id, e),
        }
    }

    fn page(&mut self, repo: &Repository, id: &ObjectId) -> Result<()> {
        if !self.visited.insert((BlobType::ManifestPage, *id)) {
            return Ok(());
        }
        self.marks.add(BlobType::ManifestPage, id);
        match repo.load_page(id) {
            Ok(page) => {
                for c in page.entries.iter().filter(|c| !c.is_zero()) {
                    self.marks.add(BlobType::Chunk, c);
                }
                Ok(())
            }
            Err(e) => self.unreadable(BlobType::ManifestPage, id, e),
        }
    }

    /// Records that `id` of `ty` cannot be read and makes the type below
    /// it unknown; an error other than damage or absence is returned.
    fn unreadable(&mut self, ty: BlobType, id: &ObjectId, e: Error) -> Result<()> {
        let reason = match e {
            Error::Object { source, .. } => source.to_string(),
            Error::ObjectMissing { .. } => "missing".to_string(),
            e => return Err(e),
        };
        let below = match ty {
            BlobType::Generation => BlobType::Manifest,
            BlobType::Manifest => BlobType::ManifestPage,
            _ => BlobType::Chunk,
        };
        self.marks.unknown[slot(below)] = true;
        self.unreadable.push(Unreadable {
            ty,
            id: *id,
            reason,
        });
        Ok(())
    }
}

/// Runs garbage collection under the caller's gc lock `own`. It stops
/// with [`Error::LockLost`] before the next move or delete once that lock
/// could not be refreshed (another gc could then run at once).
pub fn gc(repo: &Repository, index: Option<&dyn Index>, own: &Lock) -> Result<GcReport> {
    gc_with_margin(repo, index, own, CLOCK_MARGIN)
}

/// [`gc`] with a chosen clock margin in seconds (tests use 0).
pub fn gc_with_margin(
    repo: &Repository,
    index: Option<&dyn Index>,
    own: &Lock,
    margin: i64,
) -> Result<GcReport> {
    let b = repo.backend();
    let own_name = own.name();
    let own_lock = own_name.as_str();
    let t0 = now_unix();
    let backups = |b: &dyn Backend| -> Result<Vec<lock::LockInfo>> {
        Ok(lock::live_others(b, Some(own_lock))?
            .into_iter()
            .filter(|l| l.mode == Mode::Shared)
            .collect())
    };
    let live = backups(b.as_ref())?;
    let oldest = live
        .iter()
        .filter(|l| l.started < t0)
        .min_by_key(|l| l.started)
        .cloned();
    let mut report = GcReport {
        cutoff: oldest.as_ref().map_or(t0, |l| l.started) - margin,
        margin,
        cutoff_lock: oldest,
        ..GcReport::default()
    };
    let cutoff = report.cutoff;
    let Marked {
        marks,
        generations,
        unreadable,
        ..
    } = mark(repo, OnUnreadable::KeepAll, &mut |_| {})?;
    report.generations = generations;
    report.referenced_chunks = marks.set(BlobType::Chunk).len() as u64;
    report.note(unreadable);

    // Phase 1: move unreferenced old objects to the trash. A type whose
    // marks are unknown is not swept at all.
    let batch = format!("{t0}");
    let mut log_written = false;
    for ty in SWEPT.into_iter().filter(|ty| !marks.unknown(*ty)) {
        for shard in shards(ty) {
            let mut victims = Vec::new();
            b.list(&shard.path(), &mut |p| {
                if let Some(id) = id_from_path(p) {
                    if !marks.live(ty, &id) {
                        victims.push((p.to_string(), id));
                    }
                }
                Ok(())
            })?;
            own.check()?;
            for (p, id) in victims {
                let size = match b.stat(&p)? {
                    Some(st) if st.modified < cutoff => st.size,
                    Some(st) => {
                        report.kept_recent += 1;
                        report.kept_recent_bytes += st.size;
                        continue;
                    }
                    None => continue,
                };
                if !log_written {
                    trash::open_batch(b.as_ref(), &batch)?;
                    log_written = true;
                }
                if let Some(ix) = index {
                    ix.remove(ty, &id)?;
                }
                if trash::put_in(b.as_ref(), &batch, &p)? {
                    report.trashed += 1;
                    report.trashed_bytes += size;
                }
            }
        }
    }
    if log_written {
        // Every move durable before the sweep is recorded as ended.
        b.sync()?;
        trash::end_sweep(b.as_ref(), &batch, now_unix())?;
    }

    // Phase 2: empty every batch whose concurrent backups have all finished.
    let batches = trash::batches(b.as_ref())?;
    if batches.is_empty() {
        return Ok(report);
    }
    let live = backups(b.as_ref())?;
    let mut ready = Vec::new();
    for name in batches {
        let Some(end) = trash::sweep_end(b.as_ref(), &name)? else {
            continue;
        };
        // A batch whose sweep never finished (crash) counts as ending now.
        let end = end.unwrap_or_else(now_unix);
        // The margin again: a lock's start is its holder's clock, E gc's.
        if live.iter().any(|l| l.started <= end + margin) {
            report.pending_batches.push(name);
        } else {
            ready.push(name);
        }
    }
    if ready.is_empty() {
        return Ok(report);
    }
    // Marked afresh: the generations committed since, and damage found
    // since, count. Unknown marks put back every trashed object of the type.
    let Marked {
        marks, unreadable, ..
    } = mark(repo, OnUnreadable::KeepAll, &mut |_| {})?;
    report.note(unreadable);
    for name in ready {
        for ty in SWEPT {
            for shard in shards(ty) {
                let mut items = Vec::new();
                let dir = Dir::Trashed {
                    batch: &name,
                    dir: &shard,
                };
                b.list(&dir.path(), &mut |p| {
                    items.push(p.to_string());
                    Ok(())
                })?;
                own.check()?;
                for p in items {
                    let Some(orig) = untrashed(&name, &p) else {
                        continue;
                    };
                    if id_from_path(orig).is_some_and(|id| marks.live(ty, &id)) {
                        if trash::take_back(b.as_ref(), &name, orig)? {
                            report.restored += 1;
                        }
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
        trash::close_batch(b.as_ref(), &name)?;
    }
    Ok(report)
}
