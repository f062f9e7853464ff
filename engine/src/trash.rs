//! The gc trash (SPEC.md §13.4): *batches* named by a gc run's start time
//! T, each a record `trashlog/<T>` and the objects under `trash/<T>/<key>`.
//!
//! Invariants: a batch's record is written (durably) before its first
//! object moves in and deleted only after every object moved back is
//! durable in its place, so a batch that holds an object is always listed;
//! moves copy before they delete ([`Backend::move_object`]), so an object
//! is always in its place, in the trash, or in both. Readers therefore
//! look in the place, then in every batch newest first, then in the place
//! again ([`find`]). Only [`crate::gc`] writes here; readers use [`find`].

use crate::backend::{list_names, Backend, Durability};
use crate::layout::{Dir, Key};
use crate::Result;

/// What a batch record says before its sweep has ended.
const SWEEPING: &[u8] = b"sweeping\n";

/// The batches, oldest first.
pub fn batches(b: &dyn Backend) -> Result<Vec<String>> {
    let mut names = list_names(b, &Dir::TrashLogs.path())?;
    // Decimal seconds: shorter is older (names are normally the same length).
    names.sort_by(|x, y| (x.len(), x).cmp(&(y.len(), y)));
    Ok(names)
}

/// Looks for the object `key` in every batch, newest first, reading it
/// into `buf`; `false` when no batch holds it. Readers call it when an
/// object is missing from its place, and then look at the place once more
/// (gc may have put it back in between).
pub fn find(b: &dyn Backend, key: &str, buf: &mut Vec<u8>) -> Result<bool> {
    for batch in batches(b)?.iter().rev() {
        if b.get_into(&Key::Trashed { batch, key }.path(), buf)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records batch `batch` as sweeping (durably), before anything moves in.
pub fn open_batch(b: &dyn Backend, batch: &str) -> Result<()> {
    b.put(
        &Key::TrashLog(batch).path(),
        SWEEPING,
        Durability::Immediate,
    )
}

/// Records the end time of the sweep (durably). The caller has made every
/// move into the batch durable first.
pub fn end_sweep(b: &dyn Backend, batch: &str, end: i64) -> Result<()> {
    b.put(
        &Key::TrashLog(batch).path(),
        format!("{end}\n").as_bytes(),
        Durability::Immediate,
    )
}

/// The end time of a batch's sweep: `Some(None)` when the sweep never
/// ended (gc stopped midway), `None` when the batch is gone.
pub fn sweep_end(b: &dyn Backend, batch: &str) -> Result<Option<Option<i64>>> {
    Ok(b.get(&Key::TrashLog(batch).path())?
        .map(|raw| String::from_utf8_lossy(&raw).trim().parse().ok()))
}

/// Moves `key` into batch `batch` (durable after the next sync); `false`
/// when it no longer exists.
pub fn put_in(b: &dyn Backend, batch: &str, key: &str) -> Result<bool> {
    b.move_object(
        key,
        &Key::Trashed { batch, key }.path(),
        Durability::Deferred,
    )
}

/// Moves `key` from batch `batch` back to its place (durable after the
/// next sync); `false` when the batch no longer holds it.
pub fn take_back(b: &dyn Backend, batch: &str, key: &str) -> Result<bool> {
    b.move_object(
        &Key::Trashed { batch, key }.path(),
        key,
        Durability::Deferred,
    )
}

/// Forgets batch `batch`. The caller has made every move back durable.
pub fn close_batch(b: &dyn Backend, batch: &str) -> Result<()> {
    b.delete(&Key::TrashLog(batch).path())
}
