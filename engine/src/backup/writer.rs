//! The ordered writer of one disk's backup: it gets the workers' results
//! in slot order, stores new chunks through the write session, fills
//! manifest pages and stores the manifest (SPEC.md §7, §11).
//!
//! Invariants: the manifest is put (Immediate) only after a session commit
//! that made every chunk and page it names durable; the backup's lock is
//! checked every [`COMMIT_EVERY`] new objects and before the manifest, so
//! a backup whose lock was lost stops.

use vmkeep_format::blob::BlobType;
use vmkeep_format::manifest::{Manifest, ManifestPage, ManifestStats, ENTRIES_PER_PAGE};
use vmkeep_format::ObjectId;

use super::{DiskResult, DiskSummary, Done, Run};
use crate::backend::Durability;
use crate::session::{Stored, COMMIT_EVERY};
use crate::{Error, Result};

pub(super) struct Writer<'a> {
    sh: &'a Run<'a>,
    cs: u32,
    capacity: u64,
    page: Vec<ObjectId>,
    pages: Vec<ObjectId>,
    stats: ManifestStats,
    /// New objects since the lock was last checked.
    since_check: usize,
    next_slot: u64,
    /// Zero entries taken from the parent.
    reused_zero: u64,
}

impl<'a> Writer<'a> {
    pub(super) fn new(sh: &'a Run<'a>, capacity: u64, cs: u32) -> Self {
        Writer {
            sh,
            cs,
            capacity,
            page: Vec::with_capacity(ENTRIES_PER_PAGE as usize),
            pages: Vec::new(),
            stats: ManifestStats::default(),
            since_check: 0,
            next_slot: 0,
            reused_zero: 0,
        }
    }

    /// Applies the next result in slot order.
    pub(super) fn take(&mut self, d: Done, progress: &dyn crate::progress::Progress) -> Result<()> {
        let covered = self.apply(d)?;
        progress.advance(covered);
        Ok(())
    }

    /// Fails unless every slot was produced.
    pub(super) fn check_complete(&self, slots: u64) -> Result<()> {
        if self.next_slot != slots {
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
        let codec = self.sh.session.repo().codec();
        let id = codec.id(&bytes);
        self.pages.push(id);
        let blob = codec.encode(BlobType::ManifestPage, &id, &bytes);
        self.store(BlobType::ManifestPage, id, &blob, bytes.len() as u32)
    }

    /// Stores a new object through the session unless it is stored.
    fn store(&mut self, ty: BlobType, id: ObjectId, blob: &[u8], plain_len: u32) -> Result<()> {
        match self.sh.session.store(ty, id, blob, plain_len)? {
            Stored::Existing => {
                if ty == BlobType::Chunk {
                    self.stats.dedup_chunks += 1;
                }
            }
            Stored::New => {
                if ty == BlobType::Chunk {
                    self.stats.new_chunks += 1;
                    self.stats.new_plain_bytes += plain_len as u64;
                    self.stats.new_stored_bytes += blob.len() as u64;
                }
                self.since_check += 1;
                if self.since_check >= COMMIT_EVERY {
                    self.since_check = 0;
                    self.sh.check_lock()?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(
        mut self,
        disk_name: String,
        capacity: u64,
        change_id: String,
    ) -> Result<DiskResult> {
        self.flush_page()?;
        self.sh.check_lock()?;
        self.sh.session.commit()?;
        let manifest = Manifest {
            disk_name,
            capacity,
            chunk_size: self.cs,
            entries_per_page: ENTRIES_PER_PAGE,
            pages: self.pages,
            stats: self.stats,
            change_id,
        };
        let (manifest_id, _) = self.sh.session.repo().put_object(
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
