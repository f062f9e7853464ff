//! Read planning for one disk: which slots a backup reads, which it takes
//! from the parent, which are zero (SPEC.md §12).
//!
//! Nouns: *slot runs* are the slots an area list touches, merged; the
//! *look-ahead* pulls runs up to [`READ_AHEAD`] bytes ahead of the reader
//! and advises the source of them; the *parent cursor* walks the parent's
//! manifest one page at a time.
//!
//! Invariant: a parent entry is reused only when its chunk is in the index
//! (verify drops damaged ones from it) and its page can be read; otherwise
//! the slot is read from the source, which is always right.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use vmkeep_format::blob::BlobType;
use vmkeep_format::manifest::{Manifest, ENTRIES_PER_PAGE};
use vmkeep_format::ObjectId;

use super::{AreaIter, Parent, Run, Work};
use crate::pipeline::Emit;
use crate::repo::Repository;
use crate::source::DiskSource;
use crate::Result;

/// Slots per allocation query.
const ALLOC_WINDOW_SLOTS: u64 = 256;
/// How far ahead of its reads the reader advises the source of the slots
/// it will read (bytes).
pub(super) const READ_AHEAD: u64 = 64 << 20;

/// Walks the parent's manifest entries in slot order, one page at a time.
pub(super) struct ParentCursor<'a> {
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
pub(super) struct SlotRuns {
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
pub(super) struct Lookahead {
    runs: SlotRuns,
    queue: VecDeque<(u64, u64)>,
    exhausted: bool,
    cs: u64,
    capacity: u64,
    /// `READ_AHEAD` in slots.
    lead: u64,
}

impl Lookahead {
    pub(super) fn new(runs: SlotRuns, capacity: u64) -> Self {
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

/// Walks the disk's slots in order and emits one [`Work`] item per slot
/// to read and per run of slots decided without reading.
#[allow(clippy::too_many_arguments, unused_assignments)]
pub(super) fn read(
    sh: &Run,
    emit: &mut Emit<'_, '_, Work, super::Done>,
    source: &mut dyn DiskSource,
    cs: u32,
    slots: u64,
    use_allocation: bool,
    areas: Option<AreaIter>,
    parent: Option<&Parent>,
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
        repo: sh.session.repo(),
        m: &p.manifest,
        page_no: None,
        page: Vec::new(),
    });
    // Allocation of the current window: (first slot, per-slot "has data").
    let mut alloc: Option<(u64, Vec<bool>)> = None;
    let mut fixed: Vec<ObjectId> = Vec::new();
    let mut fixed_reused = false;

    macro_rules! send {
        ($w:expr) => {{
            if !emit.emit($w) {
                return Ok(());
            }
        }};
    }
    macro_rules! flush_fixed {
        () => {
            if !fixed.is_empty() {
                let entries = std::mem::take(&mut fixed);
                send!(Work::Fixed {
                    entries,
                    reused: fixed_reused
                });
            }
        };
    }

    for slot in 0..slots {
        sh.check_cancelled()?;
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
                            if id.is_zero()
                                || sh.session.index().get(BlobType::Chunk, &id)?.is_some() =>
                        {
                            Some((id, true))
                        }
                        // Not in the index (verify found it bad, or it was
                        // never indexed here), or the page is unreadable.
                        _ => {
                            sh.reread_slots.fetch_add(1, Ordering::Relaxed);
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
                send!(Work::Read { buf });
            }
        }
    }
    flush_fixed!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::source::Extent;

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
