//! Random access to one disk of a generation: [`DiskReader::read_at`]
//! reads any byte range of the disk as it was backed up, for the NBD
//! export, the VMDK writer, restores that compare before writing and
//! incrementals that patch only the changed sectors of a slot.
//!
//! Nouns (SPEC.md §7–8): the disk's manifest lists its pages; a page lists
//! one chunk id per slot of `chunk_size` bytes (the last slot may be
//! short); the zero id marks a slot of zeros.
//!
//! Invariants:
//! - zero slots are free: they are filled with zeros without any backend
//!   read (only the page naming them is loaded);
//! - pages are loaded lazily, each checked against the manifest, and at
//!   most [`PAGE_CACHE`] are kept;
//! - decoded chunks are kept in an LRU cache holding at most
//!   `cache_bytes` of plaintext (but always room for one chunk), keyed by
//!   chunk id, so a chunk shared by several slots is fetched once;
//! - every chunk fetched is verified like a restore verifies it (checksum,
//!   tag, the id recomputed from the plaintext, and its length against the
//!   slot's); a bad one is an error naming generation, disk, slot and
//!   chunk.
//!
//! The reader is `Send` (one per thread; it is not shared).

use std::collections::{HashMap, VecDeque};

use vmkeep_format::blob::BlobType;
use vmkeep_format::manifest::{Manifest, ManifestPage};
use vmkeep_format::ObjectId;

use crate::repo::{ReadBuffers, Repository};
use crate::{Error, Result};

/// The default bound of the chunk cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// How many manifest pages a reader keeps.
pub const PAGE_CACHE: usize = 8;

/// Counters of a reader, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Chunks read from the backend (and decoded).
    pub chunks_fetched: u64,
    /// Chunk reads answered from the cache.
    pub cache_hits: u64,
    /// Manifest pages read from the backend.
    pub pages_loaded: u64,
    /// Slots (or parts of slots) filled with zeros.
    pub zero_slot_reads: u64,
}

/// Options of [`DiskReader::open_with`].
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Bound of the decoded chunk cache, in bytes (at least one chunk is
    /// always kept).
    pub cache_bytes: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// A small LRU of decoded chunks, bounded by bytes.
struct ChunkCache {
    map: HashMap<ObjectId, Vec<u8>>,
    order: VecDeque<ObjectId>, // least recently used first
    bytes: usize,
    bound: usize,
}

impl ChunkCache {
    fn get(&mut self, id: &ObjectId) -> Option<&[u8]> {
        if self.map.contains_key(id) {
            if let Some(pos) = self.order.iter().position(|x| x == id) {
                self.order.remove(pos);
            }
            self.order.push_back(*id);
        }
        self.map.get(id).map(|v| v.as_slice())
    }

    fn insert(&mut self, id: ObjectId, data: Vec<u8>) {
        while !self.order.is_empty() && self.bytes + data.len() > self.bound {
            if let Some(old) = self.order.pop_front() {
                if let Some(v) = self.map.remove(&old) {
                    self.bytes -= v.len();
                }
            }
        }
        self.bytes += data.len();
        self.order.push_back(id);
        self.map.insert(id, data);
    }
}

/// Reads one disk of a generation at any offset.
pub struct DiskReader<'r> {
    repo: &'r Repository,
    generation: String,
    manifest: Manifest,
    pages: HashMap<usize, ManifestPage>,
    page_order: VecDeque<usize>,
    cache: ChunkCache,
    bufs: ReadBuffers,
    stats: ReaderStats,
}

impl<'r> DiskReader<'r> {
    /// Opens disk `disk_name` of generation `generation_id` with the
    /// default options.
    pub fn open(repo: &'r Repository, generation_id: &ObjectId, disk_name: &str) -> Result<Self> {
        Self::open_with(repo, generation_id, disk_name, ReaderOptions::default())
    }

    /// Opens disk `disk_name` of generation `generation_id`.
    pub fn open_with(
        repo: &'r Repository,
        generation_id: &ObjectId,
        disk_name: &str,
        opts: ReaderOptions,
    ) -> Result<Self> {
        let label = generation_id.short();
        let g = repo.load_generation(generation_id)?;
        let d = crate::repo::disk_of(&g, generation_id, disk_name)?;
        let manifest = repo.load_manifest(&d.manifest)?;
        if manifest.chunk_size == 0 || manifest.entries_per_page == 0 {
            return Err(Error::Invalid(format!(
                "generation {label}, disk {disk_name}: manifest has a zero chunk or page size"
            )));
        }
        let bound = opts.cache_bytes.max(manifest.chunk_size as usize);
        Ok(DiskReader {
            repo,
            generation: label,
            manifest,
            pages: HashMap::new(),
            page_order: VecDeque::new(),
            cache: ChunkCache {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                bound,
            },
            bufs: ReadBuffers::default(),
            stats: ReaderStats::default(),
        })
    }

    /// The disk's size in bytes.
    pub fn capacity(&self) -> u64 {
        self.manifest.capacity
    }

    /// The disk's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    /// Bytes of decoded chunks held now (never above the bound).
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes
    }

    /// The chunk cache's bound in bytes.
    pub fn cache_bound(&self) -> usize {
        self.cache.bound
    }

    /// Reads up to `buf.len()` bytes at `offset`, across slot boundaries;
    /// returns the bytes read, fewer only at the end of the disk (0 at or
    /// past it).
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let cap = self.manifest.capacity;
        if offset >= cap {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(cap - offset) as usize;
        let cs = self.manifest.chunk_size as u64;
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let slot = pos / cs;
            let within = (pos - slot * cs) as usize;
            let slot_len = self.manifest.slot_len(slot) as usize;
            let take = (slot_len - within).min(n - done);
            let out = &mut buf[done..done + take];
            let id = self.slot_id(slot)?;
            if id.is_zero() {
                out.fill(0);
                self.stats.zero_slot_reads += 1;
            } else {
                let data = self.chunk(slot, &id)?;
                out.copy_from_slice(&data[within..within + take]);
            }
            done += take;
        }
        Ok(n)
    }

    /// The chunk id of `slot`, loading its page when not cached.
    fn slot_id(&mut self, slot: u64) -> Result<ObjectId> {
        let epp = self.manifest.entries_per_page as u64;
        let p = (slot / epp) as usize;
        if !self.pages.contains_key(&p) {
            let pid = *self.manifest.pages.get(p).ok_or_else(|| {
                Error::Invalid(format!(
                    "generation {}, disk {}: manifest has no page {p}",
                    self.generation, self.manifest.disk_name
                ))
            })?;
            let page = self
                .repo
                .load_page_of(&self.manifest, p)
                .map_err(|e| Error::PageBad {
                    generation: self.generation.clone(),
                    disk: self.manifest.disk_name.clone(),
                    slot: p as u64 * epp,
                    page: p,
                    id: pid.to_hex(),
                    msg: e.to_string(),
                })?;
            self.stats.pages_loaded += 1;
            if self.page_order.len() >= PAGE_CACHE {
                if let Some(old) = self.page_order.pop_front() {
                    self.pages.remove(&old);
                }
            }
            self.page_order.push_back(p);
            self.pages.insert(p, page);
        }
        Ok(self.pages[&p].entries[(slot % epp) as usize])
    }

    /// The decoded, verified chunk `id` of `slot`.
    fn chunk(&mut self, slot: u64, id: &ObjectId) -> Result<&[u8]> {
        let want = self.manifest.slot_len(slot) as usize;
        if self.cache.map.contains_key(id) && self.cache.map[id].len() >= want {
            self.stats.cache_hits += 1;
            return Ok(self.cache.get(id).unwrap_or_default());
        }
        let bad = |msg: String| Error::ChunkBad {
            generation: self.generation.clone(),
            disk: self.manifest.disk_name.clone(),
            slot,
            chunk: id.to_hex(),
            msg,
        };
        let mut data = Vec::with_capacity(self.manifest.chunk_size as usize);
        self.repo
            .get_object_into(BlobType::Chunk, id, &mut self.bufs, &mut data)
            .map_err(|e| bad(e.to_string()))?;
        if data.len() != want {
            return Err(bad(format!(
                "holds {} bytes, the slot needs {want}",
                data.len()
            )));
        }
        self.stats.chunks_fetched += 1;
        self.cache.insert(*id, data);
        Ok(self
            .cache
            .map
            .get(id)
            .map(|v| v.as_slice())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}

    #[test]
    fn reader_is_send() {
        assert_send::<super::DiskReader<'static>>();
    }
}
