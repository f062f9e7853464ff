//! Repository statistics: logical size (what the generations describe),
//! unique data (distinct chunks' plaintext) and stored size (their blobs),
//! and the dedup and compression ratios between them.

use vmkeep_format::blob::BlobType;

use crate::index::Index;
use crate::repo::Repository;
use crate::Result;

/// Repository-wide figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepoStats {
    pub generations: u64,
    /// Sum of disk capacities over all generations.
    pub logical_bytes: u64,
    /// Sum of data (non-zero slot) bytes over all generations.
    pub data_bytes: u64,
    pub chunks: u64,
    /// Plaintext bytes of distinct chunks.
    pub unique_bytes: u64,
    /// Stored bytes of distinct chunks.
    pub stored_bytes: u64,
    /// Stored bytes of manifest pages.
    pub page_bytes: u64,
    /// data_bytes / unique_bytes.
    pub dedup_ratio: f64,
    /// unique_bytes / stored_bytes.
    pub compression_ratio: f64,
}

/// Computes [`RepoStats`] from the generations and the index.
pub fn repo_stats(repo: &Repository, index: &dyn Index) -> Result<RepoStats> {
    let mut s = RepoStats::default();
    for (_, g) in repo.generations()? {
        s.generations += 1;
        for d in &g.disks {
            s.logical_bytes += d.capacity;
            s.data_bytes += d.data_bytes;
        }
    }
    index.for_each(BlobType::Chunk, &mut |_, e| {
        s.chunks += 1;
        s.unique_bytes += e.plain_len as u64;
        s.stored_bytes += e.stored_len as u64;
        Ok(())
    })?;
    index.for_each(BlobType::ManifestPage, &mut |_, e| {
        s.page_bytes += e.stored_len as u64;
        Ok(())
    })?;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.dedup_ratio = ratio(s.data_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    Ok(s)
}
