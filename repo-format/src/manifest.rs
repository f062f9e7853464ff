//! Manifests: one per disk generation. A [`Manifest`] holds the disk's
//! capacity and chunk size and the ids of its [`ManifestPage`]s; page `p`
//! holds the entries of slots `p*E .. min((p+1)*E, slot_count)` where `E` is
//! `entries_per_page`. An entry is a chunk id or [`ObjectId::ZERO`] for a
//! slot that reads as zeros.
//!
//! Invariants checked by the decoders: chunk size is a power of two in
//! [`MIN_CHUNK_SIZE`, `MAX_CHUNK_SIZE`]; `slot_count = ceil(capacity /
//! chunk_size)`; `page_count = ceil(slot_count / E)`; every page but the last
//! is full. Slot `i` covers bytes `i*chunk_size .. min((i+1)*chunk_size,
//! capacity)`. Pages are content-addressed, so unchanged regions of a disk
//! share pages between generations.

use crate::codec::{self, Reader, Writer};
use crate::{magic, FormatError, ObjectId};

pub const VERSION: u16 = 1;
pub const PAGE_VERSION: u16 = 1;
/// Smallest chunk size (64 KiB).
pub const MIN_CHUNK_SIZE: u32 = 64 << 10;
/// Largest chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Default chunk size (1 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Entries per page written by this version.
pub const ENTRIES_PER_PAGE: u32 = 1024;
/// Largest `entries_per_page` a reader accepts.
pub const MAX_ENTRIES_PER_PAGE: u32 = 1 << 16;

/// Checks a chunk size against the format's rules.
pub fn check_chunk_size(cs: u32) -> Result<(), FormatError> {
    if !cs.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&cs) {
        return Err(FormatError::malformed(
            "chunk size",
            format!("{cs} is not a power of two between 64 KiB and 16 MiB"),
        ));
    }
    Ok(())
}

/// Number of slots of a disk.
pub fn slot_count(capacity: u64, chunk_size: u32) -> u64 {
    capacity.div_ceil(chunk_size as u64)
}

/// One page of slot entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestPage {
    pub entries: Vec<ObjectId>,
}

impl ManifestPage {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        codec::header(&mut w, magic::MANIFEST_PAGE, PAGE_VERSION);
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            w.raw(e.as_bytes());
        }
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new("manifest page", data);
        r.header(magic::MANIFEST_PAGE, PAGE_VERSION)?;
        let n = r.u32()?;
        if n == 0 || n > MAX_ENTRIES_PER_PAGE {
            return Err(FormatError::malformed(r.kind(), format!("{n} entries")));
        }
        if r.remaining() != n as usize * 32 {
            return Err(FormatError::malformed(
                r.kind(),
                format!("{} bytes for {n} entries", r.remaining()),
            ));
        }
        let mut entries = Vec::with_capacity(n as usize);
        for _ in 0..n {
            entries.push(ObjectId(r.array()?));
        }
        r.end()?;
        Ok(ManifestPage { entries })
    }
}

/// Counters recorded when the manifest was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManifestStats {
    /// Slots with data (non-zero entries).
    pub data_slots: u64,
    /// Slots that read as zeros.
    pub zero_slots: u64,
    /// Slots taken from the parent generation without reading.
    pub reused_slots: u64,
    /// Bytes read from the source.
    pub read_bytes: u64,
    /// Chunks this backup stored that were not in the repository.
    pub new_chunks: u64,
    /// Plaintext bytes of those new chunks.
    pub new_plain_bytes: u64,
    /// Stored (blob) bytes of those new chunks.
    pub new_stored_bytes: u64,
    /// Chunks read and found already stored.
    pub dedup_chunks: u64,
}

/// The map of one disk generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub disk_name: String,
    pub capacity: u64,
    pub chunk_size: u32,
    pub entries_per_page: u32,
    pub pages: Vec<ObjectId>,
    pub stats: ManifestStats,
    /// CBT change id of the disk at backup time, empty when not known.
    pub change_id: String,
}

impl Manifest {
    pub fn slot_count(&self) -> u64 {
        slot_count(self.capacity, self.chunk_size)
    }

    /// Length of slot `i` (the last may be short).
    pub fn slot_len(&self, i: u64) -> u64 {
        let start = i * self.chunk_size as u64;
        (self.capacity - start).min(self.chunk_size as u64)
    }

    /// Number of entries page `p` must hold.
    pub fn page_len(&self, p: usize) -> usize {
        let e = self.entries_per_page as u64;
        let start = p as u64 * e;
        (self.slot_count() - start).min(e) as usize
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        codec::header(&mut w, magic::MANIFEST, VERSION);
        w.str(&self.disk_name)
            .u64(self.capacity)
            .u32(self.chunk_size)
            .u64(self.slot_count())
            .u32(self.entries_per_page)
            .u32(self.pages.len() as u32);
        for p in &self.pages {
            w.raw(p.as_bytes());
        }
        let s = &self.stats;
        for v in [
            s.data_slots,
            s.zero_slots,
            s.reused_slots,
            s.read_bytes,
            s.new_chunks,
            s.new_plain_bytes,
            s.new_stored_bytes,
            s.dedup_chunks,
        ] {
            w.u64(v);
        }
        w.str(&self.change_id);
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new("manifest", data);
        r.header(magic::MANIFEST, VERSION)?;
        let disk_name = r.str()?;
        let capacity = r.u64()?;
        let chunk_size = r.u32()?;
        check_chunk_size(chunk_size)
            .map_err(|_| FormatError::malformed("manifest", format!("chunk size {chunk_size}")))?;
        let slots = r.u64()?;
        if slots != slot_count(capacity, chunk_size) {
            return Err(FormatError::malformed(
                "manifest",
                format!("{slots} slots for capacity {capacity} and chunk size {chunk_size}"),
            ));
        }
        let epp = r.u32()?;
        if epp == 0 || epp > MAX_ENTRIES_PER_PAGE {
            return Err(FormatError::malformed(
                "manifest",
                format!("{epp} entries per page"),
            ));
        }
        let npages = r.u32()?;
        if npages as u64 != slots.div_ceil(epp as u64) {
            return Err(FormatError::malformed(
                "manifest",
                format!("{npages} pages for {slots} slots"),
            ));
        }
        if r.remaining() < npages as usize * 32 {
            return Err(FormatError::Truncated {
                kind: "manifest",
                offset: r.pos(),
                needed: npages as usize * 32 - r.remaining(),
            });
        }
        let mut pages = Vec::with_capacity(npages as usize);
        for _ in 0..npages {
            pages.push(ObjectId(r.array()?));
        }
        let stats = ManifestStats {
            data_slots: r.u64()?,
            zero_slots: r.u64()?,
            reused_slots: r.u64()?,
            read_bytes: r.u64()?,
            new_chunks: r.u64()?,
            new_plain_bytes: r.u64()?,
            new_stored_bytes: r.u64()?,
            dedup_chunks: r.u64()?,
        };
        let change_id = r.str()?;
        r.end()?;
        Ok(Manifest {
            disk_name,
            capacity,
            chunk_size,
            entries_per_page: epp,
            pages,
            stats,
            change_id,
        })
    }

    /// Checks a decoded page against the length page `p` must have.
    pub fn check_page(&self, p: usize, page: &ManifestPage) -> Result<(), FormatError> {
        let want = self.page_len(p);
        if page.entries.len() != want {
            return Err(FormatError::malformed(
                "manifest page",
                format!(
                    "page {p} has {} entries, manifest expects {want}",
                    page.entries.len()
                ),
            ));
        }
        Ok(())
    }
}
