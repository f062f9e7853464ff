//! The unlock operation: remove stale locks (or every lock) from a
//! repository. It needs no key: lock files are not encrypted (SPEC.md §11).
//!
//! Invariant: without `all`, a live lock is never removed; the report
//! names the live ones that remain.

use serde::Serialize;

use crate::backend::Backend;
use crate::lock;
use crate::repo::Repository;
use crate::Result;

/// Which locks to remove.
#[derive(Clone, Debug, Default)]
pub struct UnlockOptions {
    /// Every lock, also live ones.
    pub all: bool,
}

/// The locks removed and those left, described for people.
#[derive(Clone, Debug, Serialize)]
pub struct UnlockReport {
    pub removed: Vec<String>,
    pub live: Vec<String>,
}

/// Removes the locks of the repository on `backend`.
pub fn unlock(backend: &dyn Backend, o: &UnlockOptions) -> Result<UnlockReport> {
    Repository::read_config(backend)?;
    let done = lock::unlock(backend, o.all)?;
    let describe = |ls: &[lock::LockInfo]| ls.iter().map(|l| l.describe()).collect();
    Ok(UnlockReport {
        removed: describe(&done.removed),
        live: describe(&done.live),
    })
}
