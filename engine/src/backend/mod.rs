//! Storage backends: flat namespaces of objects named by the keys of
//! [`crate::layout`] (config, key slots, chunks, manifest pages, manifests,
//! generations, protection marks, locks, quarantined and trashed objects,
//! trash logs). A backend takes layout keys only; `dir` arguments are
//! [`crate::layout::Dir`] paths.
//!
//! The operations are those every object store has (SPEC.md §11): put,
//! get, list under a prefix, delete, stat (size and last-modified) and
//! server-side copy. There is no rename and no way to set a time:
//! [`Backend::touch`] sets last-modified to the *storage's* now (an object
//! store copies the object onto itself), and [`Backend::move_object`] is
//! a copy, then a delete, unless a backend can do better (the local one
//! renames). Nothing relies on a move being atomic.
//!
//! Durability: a [`Durability::Deferred`] put or copy is atomic (readers
//! see the whole object or none) but may be lost in a crash until the next
//! [`Backend::sync`]; an [`Durability::Immediate`] one is atomic and
//! durable when it returns (on an object store every write is, and sync
//! does nothing). Callers order their writes with these (SPEC.md §11).

mod local;

pub use local::LocalBackend;

use crate::layout::name_of;
use crate::Result;

/// How durable a write must be when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Atomic; durable after the next [`Backend::sync`].
    Deferred,
    /// Atomic and durable on return.
    Immediate,
}

/// A place that stores objects. The required methods are the object-store
/// operations; the others have defaults built on them.
pub trait Backend: Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> String;
    /// The object's bytes, or `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores an object, replacing any existing one atomically.
    fn put(&self, key: &str, data: &[u8], durability: Durability) -> Result<()>;
    /// Removes an object; removing a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Calls `f` with the key of every object under `dir` (at any depth,
    /// sorted by key, incomplete writes left out); a missing `dir` is empty.
    /// An error from `f` stops the listing and is returned.
    fn list(&self, dir: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()>;
    /// Size and last-modified time (the storage's clock, set at the last
    /// write, copy onto it or touch); `None` when missing.
    fn stat(&self, key: &str) -> Result<Option<ObjectStat>>;
    /// Copies `from` to `to` (replacing any object there atomically, its
    /// last-modified the storage's now); `false` when `from` does not
    /// exist. `from == to` is allowed and refreshes last-modified (an S3
    /// backend copies onto itself with the metadata directive `REPLACE`).
    fn copy(&self, from: &str, to: &str, durability: Durability) -> Result<bool>;
    /// Makes every earlier [`Durability::Deferred`] write and every delete
    /// durable.
    fn sync(&self) -> Result<()>;

    /// Reads the object into `buf` (cleared first, its capacity reused);
    /// `false` when it does not exist. Readers of many objects use it to
    /// avoid one allocation per object.
    fn get_into(&self, key: &str, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        match self.get(key)? {
            Some(b) => {
                *buf = b;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    /// A hint that the object will be read soon: a backend may start
    /// fetching it in the background. Never fails; the default does nothing.
    fn prefetch(&self, _key: &str) {}
    /// The object's stored size in bytes, or `None` when it does not exist.
    fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.stat(key)?.map(|s| s.size))
    }
    /// Last-modified time, Unix seconds of the storage's clock; `None`
    /// when missing.
    fn modified(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.stat(key)?.map(|s| s.modified))
    }
    /// True when the object exists.
    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.stat(key)?.is_some())
    }
    /// Marks an object as in use: its last-modified becomes the storage's
    /// now; `false` when it does not exist. Garbage collection relies on
    /// it (SPEC.md §12, §13.4). The default copies the object onto itself
    /// (Deferred: durable after the next sync).
    fn touch(&self, key: &str) -> Result<bool> {
        self.copy(key, key, Durability::Deferred)
    }
    /// Moves an object to `to` (replacing any object there); `false` when
    /// `from` does not exist. The default copies durably, then deletes, so
    /// a crash leaves the object at `from`, at `to` or at both, never at
    /// neither; with [`Durability::Deferred`] the delete (and so the move)
    /// is durable after the next [`Backend::sync`].
    fn move_object(&self, from: &str, to: &str, _durability: Durability) -> Result<bool> {
        if !self.copy(from, to, Durability::Immediate)? {
            return Ok(false);
        }
        self.delete(from)?;
        Ok(true)
    }
}

/// What [`Backend::stat`] tells of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    /// Stored size in bytes.
    pub size: u64,
    /// Last-modified time, Unix seconds of the storage's clock.
    pub modified: i64,
}

/// The name (last key component) of every object under `dir`.
pub fn list_names(b: &dyn Backend, dir: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    b.list(dir, &mut |k| {
        names.push(name_of(k).to_string());
        Ok(())
    })?;
    Ok(names)
}

/// Every object under `dir` as (key, name, bytes); objects removed between
/// listing and reading are skipped. For small directories (keys, locks).
pub fn read_all(b: &dyn Backend, dir: &str) -> Result<Vec<(String, String, Vec<u8>)>> {
    let mut keys = Vec::new();
    b.list(dir, &mut |k| {
        keys.push(k.to_string());
        Ok(())
    })?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(raw) = b.get(&k)? {
            let name = name_of(&k).to_string();
            out.push((k, name, raw));
        }
    }
    Ok(out)
}
