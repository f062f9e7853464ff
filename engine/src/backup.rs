//! The backup pipeline for one disk.
//!
//! The reader walks the disk's slots in order and decides, per slot:
//! *read* it (a changed area touches it, or there is no area list), take
//! the parent generation's entry without reading (*reuse*), or record
//! *zero* (outside every area with no parent, or unallocated). A parent
//! entry is reused only when its chunk is in the index (verify drops the
//! damaged ones from it) and its page can be read; otherwise the slot is
//! read from the source, which is always right. Read slots go
//! to the workers, which detect all-zero data before hashing, hash (keyed
//! BLAKE3), look the chunk up (index, then this run's pending set) and, for
//! new chunks only, compress and encrypt. The single writer stores new
//! chunks, re-orders entries by slot, fills manifest pages, and commits.
//!
//! Write order (SPEC.md §7): chunks and pages are put Deferred; the index
//! learns of them only after `sync`; the manifest is put Immediate after a
//! final `sync`. A crash at any point leaves no manifest naming a chunk
//! that is not durable.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

use crossbeam_channel::bounded;
use vmkeep_format::blob::BlobType;
use vmkeep_format::generation::{DiskRef, Generation, SourceKind};
use vmkeep_format::manifest::{self, Manifest, ManifestPage, ManifestStats, ENTRIES_PER_PAGE};
use vmkeep_format::ObjectId;

use crate::backend::Durability;
pub use crate::host::hostname;
use crate::index::{Index, IndexEntry};
use crate::layout::object_path;
use crate::pipeline::{is_zero, Failure, Window};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::source::{DiskSource, Extent};
use crate::{Error, Result};

/// How many new objects the writer stores between index commits.
const COMMIT_EVERY: usize = 256;
/// Slots per allocation query.
const ALLOC_WINDOW_SLOTS: u64 = 256;
/// How far ahead of its reads the reader advises the source of the slots
/// it will read (bytes).
const READ_AHEAD: u64 = 64 << 20;

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
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// The lock this backup holds, if any: the writer checks it at every
    /// index commit and fails with [`Error::LockLost`] once it is lost.
    pub lock: Option<crate::lock::LockHandle>,
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

enum Work {
    Read {
        seq: u64,
        buf: Vec<u8>,
    },
    Fixed {
        seq: u64,
        entries: Vec<ObjectId>,
        reused: bool,
    },
}

enum Done {
    Slot {
        seq: u64,
        slot_len: u64,
        id: ObjectId,
        new_blob: Option<(Vec<u8>, u32)>,
        read: u64,
    },
    Fixed {
        seq: u64,
        entries: Vec<ObjectId>,
        reused: bool,
    },
}

impl Done {
    fn seq(&self) -> u64 {
        match self {
            Done::Slot { seq, .. } | Done::Fixed { seq, .. } => *seq,
        }
    }
}

/// Walks the parent's manifest entries in slot order, one page at a time.
struct ParentCursor<'a> {
    repo: &'a Repository,
    m: &'a Manifest,
    page_no: Option<usize>,
    page: Vec<ObjectId>,
}

impl ParentCursor<'_> {
    /// The parent's entry for `slot`, or `None` when its page cannot be
    /// read (reported once per page in `notes`).
    fn entry(&mut self, slot: u64, label: &str, notes: &Mutex<Vec<String>>) -> Option<ObjectId> {
        let epp = self.m.entries_per_page as u64;
        let p = (slot / epp) as usize;
        if self.page_no != Some(p) {
            self.page_no = Some(p);
            let page = self.repo.load_page_of(self.m, p);
            match page {
                Ok(page) => self.page = page.entries,
                Err(e) => {
                    self.page.clear();
                    let first = p as u64 * epp;
                    let last = (first + epp).min(self.m.slot_count()) - 1;
                    notes.lock().expect("poisoned").push(format!(
                        "parent generation {label}: {e}; slots {first}..={last} were read from the source instead"
                    ));
                }
            }
        }
        self.page.get((slot % epp) as usize).copied()
    }
}

/// Merges area extents into runs of slot numbers `[first, last]`.
struct SlotRuns {
    areas: AreaIter,
    cs: u64,
    pending: Option<(u64, u64)>,
    done: bool,
}

impl SlotRuns {
    /// The next run of slots to read, merging runs that touch.
    fn next(&mut self) -> Result<Option<(u64, u64)>> {
        let mut cur = self.pending.take();
        while !self.done {
            let Some(a) = self.areas.next() else {
                self.done = true;
                break;
            };
            let a = a?;
            let r = (a.offset / self.cs, (a.end() - 1) / self.cs);
            match cur {
                None => cur = Some(r),
                Some((s, e)) if r.0 <= e + 1 => cur = Some((s, e.max(r.1))),
                Some(_) => {
                    self.pending = Some(r);
                    break;
                }
            }
        }
        Ok(cur)
    }
}

/// The runs of slots still to read, pulled from [`SlotRuns`] up to
/// [`READ_AHEAD`] bytes ahead of the reader. Each run pulled is advised to
/// the source ([`DiskSource::will_need`]), so that the scattered reads of an
/// incremental backup do not wait for the disk one slot at a time. Holds at
/// most `lead` + 1 runs.
struct Lookahead {
    runs: SlotRuns,
    queue: VecDeque<(u64, u64)>,
    exhausted: bool,
    cs: u64,
    capacity: u64,
    /// `READ_AHEAD` in slots.
    lead: u64,
}

impl Lookahead {
    fn new(runs: SlotRuns, capacity: u64) -> Self {
        let cs = runs.cs;
        Lookahead {
            runs,
            queue: VecDeque::new(),
            exhausted: false,
            cs,
            capacity,
            lead: (READ_AHEAD / cs).max(1),
        }
    }

    /// Whether `slot` is in a run; slots must be asked for in order.
    fn wants(&mut self, slot: u64, source: &dyn DiskSource) -> Result<bool> {
        while matches!(self.queue.front(), Some(&(_, last)) if last < slot) {
            self.queue.pop_front();
        }
        while !self.exhausted
            && self
                .queue
                .back()
                .is_none_or(|&(_, last)| last < slot + self.lead)
        {
            match self.runs.next()? {
                Some((first, last)) => {
                    let off = first * self.cs;
                    let end = (last + 1).saturating_mul(self.cs).min(self.capacity);
                    source.will_need(off, (end - off).min(READ_AHEAD));
                    if last >= slot {
                        self.queue.push_back((first, last));
                    }
                }
                None => self.exhausted = true,
            }
        }
        Ok(matches!(self.queue.front(), Some(&(first, _)) if first <= slot))
    }
}

struct Shared<'a> {
    repo: &'a Repository,
    index: &'a dyn Index,
    failure: Failure,
    window: Window,
    /// Objects stored by this run but not yet in the index.
    pending: Mutex<HashSet<(u8, ObjectId)>>,
    /// What the run should tell its user (a parent page that could not be
    /// read, say).
    notes: Mutex<Vec<String>>,
    /// Slots outside the areas read anyway: the parent's entry could not
    /// be reused.
    reread_slots: std::sync::atomic::AtomicU64,
    /// The backup's lock, checked before every index commit.
    lock: Option<crate::lock::LockHandle>,
}

/// Backs up one disk and stores its manifest (durably). The generation
/// document is written by the caller ([`commit_generation`]).
pub fn backup_disk(
    repo: &Repository,
    index: &dyn Index,
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
        threads,
        lock,
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
    let threads = if threads == 0 {
        crate::pipeline::default_threads()
    } else {
        threads
    };
    let slots = manifest::slot_count(capacity, cs);
    let shared = Shared {
        repo,
        index,
        failure: Failure::default(),
        window: Window::new(threads * 4 + 4),
        pending: Mutex::new(HashSet::new()),
        notes: Mutex::new(Vec::new()),
        reread_slots: Default::default(),
        lock,
    };
    progress.start(&source.describe(), capacity);
    let (work_tx, work_rx) = bounded::<Work>(threads * 2);
    let (done_tx, done_rx) = bounded::<Done>(threads * 2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("vmkeep-worker-{i}"))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start worker threads: {e}")))?;

    let mut writer = Writer::new(&shared, capacity, cs);
    std::thread::scope(|s| {
        let sh = &shared;
        let parent_ref = parent.as_ref();
        s.spawn(move || {
            sh.failure.guard(|| {
                read_stage(
                    sh,
                    source.as_mut(),
                    cs,
                    slots,
                    use_allocation,
                    areas,
                    parent_ref,
                    work_tx,
                )
            })
        });
        let pool = &pool;
        s.spawn(move || {
            pool.scope(|ps| {
                for _ in 0..threads {
                    let rx = work_rx.clone();
                    let tx = done_tx.clone();
                    ps.spawn(move |_| sh.failure.guard(|| work_stage(sh, rx, tx)));
                }
            });
        });
        sh.failure.guard(|| writer.run(done_rx, slots, progress));
    });
    progress.finish();
    if let Some(e) = shared.failure.take() {
        return Err(e);
    }
    let m = writer.finish(disk_name, capacity, change_id)?;
    Ok(m)
}

#[allow(clippy::too_many_arguments, unused_assignments)]
fn read_stage(
    sh: &Shared,
    source: &mut dyn DiskSource,
    cs: u32,
    slots: u64,
    use_allocation: bool,
    areas: Option<AreaIter>,
    parent: Option<&Parent>,
    work_tx: crossbeam_channel::Sender<Work>,
) -> Result<()> {
    let cs64 = cs as u64;
    let capacity = source.capacity();
    let mut runs = areas.map(|a| {
        Lookahead::new(
            SlotRuns {
                areas: a,
                cs: cs64,
                pending: None,
                done: false,
            },
            capacity,
        )
    });
    let mut cursor = parent.map(|p| ParentCursor {
        repo: sh.repo,
        m: &p.manifest,
        page_no: None,
        page: Vec::new(),
    });
    // Allocation of the current window: (first slot, per-slot "has data").
    let mut alloc: Option<(u64, Vec<bool>)> = None;
    let mut seq = 0u64;
    let mut fixed: Vec<ObjectId> = Vec::new();
    let mut fixed_reused = false;

    macro_rules! send {
        ($w:expr) => {{
            if !sh.window.acquire(&sh.failure) {
                return Ok(());
            }
            if work_tx.send($w).is_err() {
                return Ok(());
            }
            seq += 1;
        }};
    }
    macro_rules! flush_fixed {
        () => {
            if !fixed.is_empty() {
                let entries = std::mem::take(&mut fixed);
                send!(Work::Fixed {
                    seq,
                    entries,
                    reused: fixed_reused
                });
            }
        };
    }

    for slot in 0..slots {
        if sh.failure.stopped() {
            return Ok(());
        }
        // Is the slot in the read set?
        let wanted = match &mut runs {
            None => true,
            Some(r) => r.wants(slot, source)?,
        };
        let reused: Option<(ObjectId, bool)> = if wanted {
            None
        } else {
            match &mut cursor {
                Some(c) => {
                    let label = &parent.expect("cursor has parent").label;
                    match c.entry(slot, label, &sh.notes) {
                        Some(id)
                            if id.is_zero() || sh.index.get(BlobType::Chunk, &id)?.is_some() =>
                        {
                            Some((id, true))
                        }
                        // Not in the index (verify found it bad, or it was
                        // never indexed here), or the page is unreadable.
                        _ => {
                            sh.reread_slots
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            None
                        }
                    }
                }
                None => Some((ObjectId::ZERO, false)),
            }
        };
        let entry: Option<(ObjectId, bool)> = if reused.is_some() {
            reused
        } else if use_allocation {
            let fresh = !matches!(&alloc, Some((first, v)) if slot >= *first && slot < *first + v.len() as u64);
            if fresh {
                let n = ALLOC_WINDOW_SLOTS.min(slots - slot);
                let start = slot * cs64;
                let len = (n * cs64).min(capacity - start);
                alloc = source.allocated(start, len)?.map(|ext| {
                    let mut has = vec![false; n as usize];
                    for e in ext {
                        let a = (e.offset.max(start) - start) / cs64;
                        let b = (e.end().min(start + len) - start).div_ceil(cs64);
                        for h in has.iter_mut().take(b as usize).skip(a as usize) {
                            *h = true;
                        }
                    }
                    (slot, has)
                });
            }
            match &alloc {
                Some((first, has)) if !has[(slot - first) as usize] => {
                    Some((ObjectId::ZERO, false))
                }
                _ => None,
            }
        } else {
            None
        };
        match entry {
            Some((id, reused)) => {
                if !fixed.is_empty()
                    && (fixed_reused != reused || fixed.len() >= ENTRIES_PER_PAGE as usize)
                {
                    flush_fixed!();
                }
                fixed_reused = reused;
                fixed.push(id);
            }
            None => {
                flush_fixed!();
                let off = slot * cs64;
                let len = (capacity - off).min(cs64) as usize;
                let mut buf = vec![0u8; len];
                source.read_at(off, &mut buf)?;
                send!(Work::Read { seq, buf });
            }
        }
    }
    flush_fixed!();
    Ok(())
}

fn work_stage(
    sh: &Shared,
    rx: crossbeam_channel::Receiver<Work>,
    tx: crossbeam_channel::Sender<Done>,
) -> Result<()> {
    let codec = sh.repo.codec();
    for w in rx {
        if sh.failure.stopped() {
            return Ok(());
        }
        let done = match w {
            Work::Fixed {
                seq,
                entries,
                reused,
            } => Done::Fixed {
                seq,
                entries,
                reused,
            },
            Work::Read { seq, buf } => {
                let read = buf.len() as u64;
                if is_zero(&buf) {
                    Done::Slot {
                        seq,
                        slot_len: read,
                        id: ObjectId::ZERO,
                        new_blob: None,
                        read,
                    }
                } else {
                    let id = codec.id(&buf);
                    if id.is_zero() {
                        // SPEC.md §5.3: the all-zero id is reserved.
                        return Err(Error::Invalid(
                            "a chunk hashed to the reserved all-zero id".into(),
                        ));
                    }
                    let known = sh
                        .pending
                        .lock()
                        .expect("poisoned")
                        .contains(&(BlobType::Chunk as u8, id))
                        || (sh.index.get(BlobType::Chunk, &id)?.is_some()
                            // The touch both proves the chunk still exists
                            // and tells garbage collection it is in use.
                            && sh.repo.backend().touch(&object_path(BlobType::Chunk, &id))?);
                    let new_blob = if known {
                        None
                    } else {
                        Some((codec.encode(BlobType::Chunk, &id, &buf), buf.len() as u32))
                    };
                    Done::Slot {
                        seq,
                        slot_len: read,
                        id,
                        new_blob,
                        read,
                    }
                }
            }
        };
        if tx.send(done).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

struct Writer<'a> {
    sh: &'a Shared<'a>,
    cs: u32,
    capacity: u64,
    page: Vec<ObjectId>,
    pages: Vec<ObjectId>,
    stats: ManifestStats,
    uncommitted: Vec<(BlobType, ObjectId, IndexEntry)>,
    next_slot: u64,
    /// Zero entries taken from the parent.
    reused_zero: u64,
}

impl<'a> Writer<'a> {
    fn new(sh: &'a Shared<'a>, capacity: u64, cs: u32) -> Self {
        Writer {
            sh,
            cs,
            capacity,
            page: Vec::with_capacity(ENTRIES_PER_PAGE as usize),
            pages: Vec::new(),
            stats: ManifestStats::default(),
            uncommitted: Vec::new(),
            next_slot: 0,
            reused_zero: 0,
        }
    }

    fn run(
        &mut self,
        rx: crossbeam_channel::Receiver<Done>,
        slots: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut held: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        for d in rx {
            held.insert(d.seq(), d);
            while let Some(d) = held.remove(&next) {
                let covered = self.apply(d)?;
                progress.advance(covered);
                self.sh.window.release();
                next += 1;
            }
            if self.sh.failure.stopped() {
                return Ok(());
            }
        }
        if !self.sh.failure.stopped() && self.next_slot != slots {
            return Err(Error::Invalid(format!(
                "internal error: backup produced {} of {slots} slots",
                self.next_slot
            )));
        }
        Ok(())
    }

    fn slot_len(&self, slot: u64) -> u64 {
        (self.capacity - slot * self.cs as u64).min(self.cs as u64)
    }

    /// Applies one in-order result; returns the disk bytes it covered.
    fn apply(&mut self, d: Done) -> Result<u64> {
        match d {
            Done::Fixed {
                entries, reused, ..
            } => {
                let mut covered = 0;
                for id in entries {
                    covered += self.slot_len(self.next_slot);
                    if reused {
                        self.stats.reused_slots += 1;
                        if id.is_zero() {
                            self.reused_zero += 1;
                        }
                    }
                    self.push(id)?;
                }
                Ok(covered)
            }
            Done::Slot {
                slot_len,
                id,
                new_blob,
                read,
                ..
            } => {
                self.stats.read_bytes += read;
                if let Some((blob, plain_len)) = new_blob {
                    self.store(BlobType::Chunk, id, &blob, plain_len)?;
                } else if !id.is_zero() {
                    self.stats.dedup_chunks += 1;
                }
                self.push(id)?;
                Ok(slot_len)
            }
        }
    }

    fn push(&mut self, id: ObjectId) -> Result<()> {
        if id.is_zero() {
            self.stats.zero_slots += 1;
        } else {
            self.stats.data_slots += 1;
        }
        self.page.push(id);
        self.next_slot += 1;
        if self.page.len() == ENTRIES_PER_PAGE as usize {
            self.flush_page()?;
        }
        Ok(())
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.page.is_empty() {
            return Ok(());
        }
        let page = ManifestPage {
            entries: std::mem::take(&mut self.page),
        };
        self.page.reserve(ENTRIES_PER_PAGE as usize);
        let bytes = page.encode();
        let codec = self.sh.repo.codec();
        let id = codec.id(&bytes);
        self.pages.push(id);
        let blob = codec.encode(BlobType::ManifestPage, &id, &bytes);
        self.store(BlobType::ManifestPage, id, &blob, bytes.len() as u32)
    }

    /// Stores a new object unless this run or the index already has it.
    fn store(&mut self, ty: BlobType, id: ObjectId, blob: &[u8], plain_len: u32) -> Result<()> {
        let key = (ty as u8, id);
        let have = self.sh.pending.lock().expect("poisoned").contains(&key)
            || (self.sh.index.get(ty, &id)?.is_some()
                && self.sh.repo.backend().touch(&object_path(ty, &id))?);
        if have {
            if ty == BlobType::Chunk {
                self.stats.dedup_chunks += 1;
            }
            return Ok(());
        }
        self.sh
            .repo
            .backend()
            .put(&object_path(ty, &id), blob, Durability::Deferred)?;
        self.sh.pending.lock().expect("poisoned").insert(key);
        if ty == BlobType::Chunk {
            self.stats.new_chunks += 1;
            self.stats.new_plain_bytes += plain_len as u64;
            self.stats.new_stored_bytes += blob.len() as u64;
        }
        self.uncommitted.push((
            ty,
            id,
            IndexEntry {
                plain_len,
                stored_len: blob.len() as u32,
            },
        ));
        if self.uncommitted.len() >= COMMIT_EVERY {
            self.commit_index()?;
        }
        Ok(())
    }

    /// Makes stored objects durable, then tells the index.
    /// Fails with [`Error::LockLost`] once the backup's lock is lost,
    /// even with nothing to commit.
    fn commit_index(&mut self) -> Result<()> {
        if let Some(l) = &self.sh.lock {
            l.check()?;
        }
        if self.uncommitted.is_empty() {
            return Ok(());
        }
        self.sh.repo.backend().sync()?;
        self.sh.index.insert_batch(&self.uncommitted)?;
        let mut p = self.sh.pending.lock().expect("poisoned");
        for (t, id, _) in self.uncommitted.drain(..) {
            p.remove(&(t as u8, id));
        }
        Ok(())
    }

    fn finish(mut self, disk_name: String, capacity: u64, change_id: String) -> Result<DiskResult> {
        self.flush_page()?;
        self.commit_index()?;
        let manifest = Manifest {
            disk_name,
            capacity,
            chunk_size: self.cs,
            entries_per_page: ENTRIES_PER_PAGE,
            pages: self.pages,
            stats: self.stats,
            change_id,
        };
        let (manifest_id, _) = self.sh.repo.put_object(
            BlobType::Manifest,
            &manifest.encode(),
            Durability::Immediate,
        )?;
        let st = &manifest.stats;
        let summary = DiskSummary {
            slots: self.next_slot,
            new_chunks: st.new_chunks,
            dedup_chunks: st.dedup_chunks,
            zero_slots: st.zero_slots - self.reused_zero,
            unchanged_slots: st.reused_slots,
            reread_slots: self
                .sh
                .reread_slots
                .load(std::sync::atomic::Ordering::Relaxed),
            read_bytes: st.read_bytes,
            new_stored_bytes: st.new_stored_bytes,
            notes: std::mem::take(&mut *self.sh.notes.lock().expect("poisoned")),
        };
        Ok(DiskResult {
            manifest_id,
            manifest,
            summary,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;

    /// Records the advice it gets; reads nothing.
    struct Advised(Mutex<Vec<Extent>>, u64);

    impl DiskSource for Advised {
        fn describe(&self) -> String {
            "advised".into()
        }
        fn capacity(&self) -> u64 {
            self.1
        }
        fn read_at(&mut self, _: u64, _: &mut [u8]) -> Result<()> {
            unreachable!()
        }
        fn allocated(&mut self, _: u64, _: u64) -> Result<Option<Vec<Extent>>> {
            Ok(None)
        }
        fn will_need(&self, offset: u64, length: u64) {
            self.0.lock().unwrap().push(Extent { offset, length });
        }
    }

    proptest! {
        /// The look-ahead wants exactly the slots an area touches, and has
        /// advised each of them before the reader gets to it.
        #[test]
        fn lookahead_wants_touched_slots_and_advises_them_first(
            cs_log in 16u32..22,
            slots in 1u64..600,
            gaps in proptest::collection::vec((0u64..3 << 20, 1u64..3 << 20), 0..40),
        ) {
            let cs = 1u64 << cs_log;
            let capacity = slots * cs - cs / 3;
            let mut areas = Vec::new();
            let mut pos = 0;
            for (gap, len) in gaps {
                let offset = pos + gap;
                if offset >= capacity {
                    break;
                }
                let length = len.min(capacity - offset);
                areas.push(Extent { offset, length });
                pos = offset + length;
            }
            let touched = |s: u64| {
                areas.iter().any(|a| a.offset < (s + 1) * cs && a.end() > s * cs)
            };
            let it: AreaIter = Box::new(areas.clone().into_iter().map(Ok));
            let mut la = Lookahead::new(
                SlotRuns { areas: it, cs, pending: None, done: false },
                capacity,
            );
            let src = Advised(Mutex::new(Vec::new()), capacity);
            for s in 0..slots {
                let wanted = la.wants(s, &src).unwrap();
                prop_assert_eq!(wanted, touched(s), "slot {}", s);
                if wanted {
                    // Advice covers the slot, or starts its run and was
                    // capped at READ_AHEAD (the kernel reads on from there).
                    let advised = src.0.lock().unwrap().iter().any(|e| {
                        e.offset <= s * cs
                            && (e.end() > s * cs
                                || (e.length == READ_AHEAD && (e.offset / cs..=s).all(touched)))
                    });
                    prop_assert!(advised, "slot {} read before any advice", s);
                }
                prop_assert!(la.queue.len() as u64 <= la.lead + 1);
            }
        }
    }
}
