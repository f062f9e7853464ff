//! The chunk index: which objects the repository holds and their sizes.
//! It is an accelerator (SPEC.md §6): every fact in it can be recomputed
//! from the repository, it is never the only copy of anything, and a lost or
//! damaged index is rebuilt ([`rebuild`]).
//!
//! Invariant kept by the writers: an entry is inserted only after the
//! object it names is durable in the repository.

mod damaged;
mod mem;
mod rebuild;
mod rocks;

pub use damaged::{apply_drop_note, drop_damaged, forget_quarantined, Dropped};
pub use mem::MemIndex;
pub use rebuild::{open_at, open_for, ready_for, rebuild, RebuildReport};
pub use rocks::RocksIndex;

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use crate::Result;

/// What the index knows of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Plaintext length.
    pub plain_len: u32,
    /// Stored (blob) length.
    pub stored_len: u32,
}

impl IndexEntry {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.plain_len.to_le_bytes());
        b[4..].copy_from_slice(&self.stored_len.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 8 {
            return None;
        }
        Some(IndexEntry {
            plain_len: u32::from_le_bytes(b[..4].try_into().ok()?),
            stored_len: u32::from_le_bytes(b[4..].try_into().ok()?),
        })
    }
}

/// An index implementation (RocksDB on disk, or in memory for tests).
pub trait Index: Send + Sync {
    fn get(&self, ty: BlobType, id: &ObjectId) -> Result<Option<IndexEntry>>;
    fn insert_batch(&self, items: &[(BlobType, ObjectId, IndexEntry)]) -> Result<()>;
    fn remove(&self, ty: BlobType, id: &ObjectId) -> Result<()>;
    /// Calls `f` for every entry of type `ty`, in id order.
    fn for_each(
        &self,
        ty: BlobType,
        f: &mut dyn FnMut(&ObjectId, IndexEntry) -> Result<()>,
    ) -> Result<()>;
    /// Removes every entry and every meta value.
    fn clear(&self) -> Result<()>;
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()>;
}

/// Meta key: hex id of the repository the index describes.
pub const META_REPO: &str = "repository";
/// Meta key: "complete" once a rebuild (or a fresh repository) finished.
pub const META_STATE: &str = "state";
