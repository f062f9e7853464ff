//! Repository statistics: logical size (what the generations describe),
//! referenced data (distinct chunks the generations name: their plaintext
//! and stored bytes), garbage (chunks and pages in the index that no
//! generation names, awaiting gc), and the dedup and compression ratios.
//!
//! Invariants: every figure but the garbage describes the readable
//! generations only, and the ratios are over referenced chunks only, so
//! garbage never inflates them. A generation, manifest or page that cannot
//! be read is reported and left out, never an error; only storage and
//! index errors fail. Sizes come from the index: a referenced chunk the
//! index lacks is counted in [`RepoStats::unindexed_chunks`] only.

use vmkeep_format::blob::BlobType;

use crate::gc::{mark, prefix, Marked, OnUnreadable, Unreadable};
use crate::index::Index;
use crate::repo::Repository;
use crate::Result;

/// Repository-wide figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepoStats {
    /// Readable generations: the ones the figures describe.
    pub generations: u64,
    /// Generations that exist but cannot be read, left out of every figure
    /// (their chunks count as garbage here, though gc keeps them).
    pub damaged_generations: Vec<Unreadable>,
    /// Manifests and pages of readable generations that cannot be read (or
    /// are missing): the chunks they name are left out (counted as garbage).
    pub damaged_objects: Vec<Unreadable>,
    /// Sum of disk capacities over the readable generations.
    pub logical_bytes: u64,
    /// Sum of data (non-zero slot) bytes over the readable generations.
    pub data_bytes: u64,
    /// Distinct chunks in the index that a readable generation references.
    pub chunks: u64,
    /// Plaintext bytes of the referenced chunks.
    pub unique_bytes: u64,
    /// Stored bytes of the referenced chunks.
    pub stored_bytes: u64,
    /// Chunks in the index that no readable generation references (garbage
    /// awaiting gc), and their stored bytes.
    pub garbage_chunks: u64,
    pub garbage_stored_bytes: u64,
    /// Referenced chunks the index does not hold (their sizes are unknown).
    pub unindexed_chunks: u64,
    /// Stored bytes of referenced manifest pages.
    pub page_bytes: u64,
    /// Manifest pages in the index that nothing references, and their bytes.
    pub garbage_pages: u64,
    pub garbage_page_bytes: u64,
    /// data_bytes / unique_bytes.
    pub dedup_ratio: f64,
    /// unique_bytes / stored_bytes.
    pub compression_ratio: f64,
}

/// Computes [`RepoStats`] from the generations (marked as gc marks them)
/// and the index.
pub fn repo_stats(repo: &Repository, index: &dyn Index) -> Result<RepoStats> {
    let mut s = RepoStats::default();
    let (mut logical, mut data) = (0, 0);
    let Marked {
        marks,
        generations,
        unreadable,
        ..
    } = mark(repo, OnUnreadable::LeaveOut, &mut |g| {
        for d in &g.disks {
            logical += d.capacity;
            data += d.data_bytes;
        }
    })?;
    (s.generations, s.logical_bytes, s.data_bytes) = (generations, logical, data);
    (s.damaged_generations, s.damaged_objects) = unreadable
        .into_iter()
        .partition(|u| u.ty == BlobType::Generation);
    let chunks = marks.set(BlobType::Chunk);
    index.for_each(BlobType::Chunk, &mut |id, e| {
        if chunks.contains(&prefix(id)) {
            s.chunks += 1;
            s.unique_bytes += e.plain_len as u64;
            s.stored_bytes += e.stored_len as u64;
        } else {
            s.garbage_chunks += 1;
            s.garbage_stored_bytes += e.stored_len as u64;
        }
        Ok(())
    })?;
    s.unindexed_chunks = (chunks.len() as u64).saturating_sub(s.chunks);
    let pages = marks.set(BlobType::ManifestPage);
    index.for_each(BlobType::ManifestPage, &mut |id, e| {
        if pages.contains(&prefix(id)) {
            s.page_bytes += e.stored_len as u64;
        } else {
            s.garbage_pages += 1;
            s.garbage_page_bytes += e.stored_len as u64;
        }
        Ok(())
    })?;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.dedup_ratio = ratio(s.data_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    Ok(s)
}
