//! The stats operation: repository-wide sizes, dedup and compression
//! ratios ([`crate::stats::repo_stats`]), from the generations and the
//! local index.
//!
//! Invariant: what cannot be read is left out of the figures and named in
//! the report, never silently skipped.

use std::path::PathBuf;

use serde::Serialize;

use super::index::IndexRebuildReport;
use crate::gc::Unreadable;
use crate::repo::Repository;
use crate::Result;

/// Where the index is.
#[derive(Clone, Debug)]
pub struct StatsOptions {
    /// The index ([`super::index::path`]); opened, and rebuilt when needed.
    pub index: PathBuf,
}

/// An object that cannot be read.
#[derive(Clone, Debug, Serialize)]
pub struct UnreadableRow {
    /// `generation`, `manifest` or `manifest page`.
    #[serde(rename = "type")]
    pub ty: String,
    pub id: String,
    pub reason: String,
}

impl From<&Unreadable> for UnreadableRow {
    fn from(u: &Unreadable) -> Self {
        UnreadableRow {
            ty: u.ty.name().to_string(),
            id: u.id.to_hex(),
            reason: u.reason.clone(),
        }
    }
}

/// The figures (see [`crate::stats::RepoStats`] for each).
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    pub generations: u64,
    pub logical_bytes: u64,
    pub data_bytes: u64,
    pub chunks: u64,
    pub unique_bytes: u64,
    pub stored_bytes: u64,
    pub page_bytes: u64,
    pub garbage_chunks: u64,
    pub garbage_stored_bytes: u64,
    pub garbage_pages: u64,
    pub garbage_page_bytes: u64,
    pub unindexed_chunks: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    pub damaged_generation_count: usize,
    /// Left out of every figure.
    pub damaged_generations: Vec<UnreadableRow>,
    /// Manifests and pages whose chunks are left out.
    pub damaged_objects: Vec<UnreadableRow>,
    /// What rebuilding the index found, when it had to be rebuilt.
    pub index_rebuilt: Option<IndexRebuildReport>,
}

/// Computes the figures.
pub fn stats(repo: &Repository, o: &StatsOptions) -> Result<StatsReport> {
    let (idx, index_rebuilt) = super::index::open(repo, &o.index)?;
    let s = crate::stats::repo_stats(repo, &idx)?;
    let rows = |l: &[Unreadable]| l.iter().map(UnreadableRow::from).collect::<Vec<_>>();
    Ok(StatsReport {
        generations: s.generations,
        logical_bytes: s.logical_bytes,
        data_bytes: s.data_bytes,
        chunks: s.chunks,
        unique_bytes: s.unique_bytes,
        stored_bytes: s.stored_bytes,
        page_bytes: s.page_bytes,
        garbage_chunks: s.garbage_chunks,
        garbage_stored_bytes: s.garbage_stored_bytes,
        garbage_pages: s.garbage_pages,
        garbage_page_bytes: s.garbage_page_bytes,
        unindexed_chunks: s.unindexed_chunks,
        dedup_ratio: s.dedup_ratio,
        compression_ratio: s.compression_ratio,
        damaged_generation_count: s.damaged_generations.len(),
        damaged_generations: rows(&s.damaged_generations),
        damaged_objects: rows(&s.damaged_objects),
        index_rebuilt,
    })
}
