//! Progress reporting: the pipelines count bytes of disk covered; the CLI
//! turns that into a progress bar. [`NoProgress`] ignores everything.

/// Receives progress from a pipeline (from several threads).
pub trait Progress: Send + Sync {
    /// The total number of bytes the operation will cover.
    fn start(&self, _label: &str, _total: u64) {}
    /// `n` more bytes covered.
    fn advance(&self, _n: u64) {}
    /// The operation ended.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {}
