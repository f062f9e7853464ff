//! Storage backends: flat namespaces of named objects (`chunks/ab/<id>`,
//! `manifests/<id>`, `config`, ...). Paths use `/` and never start with it.
//!
//! Durability contract: a [`Durability::Deferred`] put is atomic (readers
//! see the whole object or none) but may be lost in a crash until the next
//! [`Backend::sync`]; an [`Durability::Immediate`] put is atomic and durable
//! when it returns. Callers order their writes with these (SPEC.md §7).

mod local;

pub use local::LocalBackend;

use crate::Result;

/// How durable a put must be when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Atomic; durable after the next [`Backend::sync`].
    Deferred,
    /// Atomic and durable on return.
    Immediate,
}

/// A place that stores objects.
pub trait Backend: Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> String;
    /// The object's bytes, or `None` when it does not exist.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Reads the object into `buf` (cleared first, its capacity reused);
    /// `false` when it does not exist. Readers of many objects use it to
    /// avoid one allocation per object.
    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        match self.get(path)? {
            Some(b) => {
                *buf = b;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    /// A hint that the object will be read soon: a backend may start
    /// fetching it in the background. Never fails; the default does nothing.
    fn prefetch(&self, _path: &str) {}
    /// The object's stored size in bytes, or `None` when it does not exist.
    fn size(&self, path: &str) -> Result<Option<u64>>;
    /// Stores an object, replacing any existing one atomically.
    fn put(&self, path: &str, data: &[u8], durability: Durability) -> Result<()>;
    /// True when the object exists.
    fn exists(&self, path: &str) -> Result<bool>;
    /// Removes an object; removing a missing object is not an error.
    fn delete(&self, path: &str) -> Result<()>;
    /// Calls `f` with the path of every object under directory `dir`.
    fn list(&self, dir: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()>;
    /// Marks an object as used now (its modification time); `false` when
    /// it does not exist. Garbage collection relies on it (SPEC.md §8).
    fn touch(&self, path: &str) -> Result<bool>;
    /// Makes every earlier [`Durability::Deferred`] put durable.
    fn sync(&self) -> Result<()>;
    /// Last modification (or touch) time, Unix seconds; `None` when missing.
    fn modified(&self, path: &str) -> Result<Option<i64>>;
    /// Size and modification time together (one request where the backend
    /// can: gc asks for both of every garbage object); `None` when missing.
    fn stat(&self, path: &str) -> Result<Option<ObjectStat>> {
        let Some(modified) = self.modified(path)? else {
            return Ok(None);
        };
        Ok(self.size(path)?.map(|size| ObjectStat { size, modified }))
    }
    /// Moves an object to a new name atomically (replacing any object
    /// there); with [`Durability::Deferred`] the move is durable after the
    /// next [`Backend::sync`].
    fn rename(&self, from: &str, to: &str, durability: Durability) -> Result<()>;
}

/// What [`Backend::stat`] tells of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    /// Stored size in bytes.
    pub size: u64,
    /// Last modification (or touch) time, Unix seconds.
    pub modified: i64,
}

/// The last path component (the name) of every object under `dir`.
pub fn list_names(b: &dyn Backend, dir: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    b.list(dir, &mut |p| {
        names.push(p.rsplit('/').next().unwrap_or(p).to_string());
        Ok(())
    })?;
    Ok(names)
}

/// Every object under `dir` as (path, name, bytes); objects removed between
/// listing and reading are skipped. For small directories (keys, locks).
pub fn read_all(b: &dyn Backend, dir: &str) -> Result<Vec<(String, String, Vec<u8>)>> {
    let mut paths = Vec::new();
    b.list(dir, &mut |p| {
        paths.push(p.to_string());
        Ok(())
    })?;
    let mut out = Vec::new();
    for p in paths {
        if let Some(raw) = b.get(&p)? {
            let name = p.rsplit('/').next().unwrap_or(&p).to_string();
            out.push((p, name, raw));
        }
    }
    Ok(out)
}
