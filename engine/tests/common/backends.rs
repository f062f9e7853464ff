//! Wrapper backends the engine's tests inject faults with. Each forwards
//! every operation (the provided ones too, so the local fast paths stay)
//! to a [`LocalBackend`] and changes one thing; with the fault off it is
//! the local backend, and the conformance suite runs it as such.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmkeep_engine::backend::{Backend, Durability, LocalBackend, ObjectStat};
use vmkeep_engine::layout::Dir;
use vmkeep_engine::{Error, Result};
use vmkeep_format::blob::BlobType;

/// The operations every wrapper forwards unchanged.
macro_rules! forward_rest {
    () => {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn get(&self, k: &str) -> Result<Option<Vec<u8>>> {
            self.inner.get(k)
        }
        fn delete(&self, k: &str) -> Result<()> {
            self.inner.delete(k)
        }
        fn stat(&self, k: &str) -> Result<Option<ObjectStat>> {
            self.inner.stat(k)
        }
        fn copy(&self, a: &str, b: &str, d: Durability) -> Result<bool> {
            self.inner.copy(a, b, d)
        }
        fn sync(&self) -> Result<()> {
            self.inner.sync()
        }
        fn get_into(&self, k: &str, buf: &mut Vec<u8>) -> Result<bool> {
            self.inner.get_into(k, buf)
        }
        fn prefetch(&self, k: &str) {
            self.inner.prefetch(k)
        }
        fn touch(&self, k: &str) -> Result<bool> {
            self.inner.touch(k)
        }
        fn move_object(&self, a: &str, b: &str, d: Durability) -> Result<bool> {
            self.inner.move_object(a, b, d)
        }
    };
}

/// A local backend whose puts of lock files fail while `failing` is set.
pub struct Flaky {
    pub inner: LocalBackend,
    pub failing: Arc<AtomicBool>,
}

impl Backend for Flaky {
    forward_rest!();
    fn put(&self, k: &str, d: &[u8], du: Durability) -> Result<()> {
        if k.starts_with(&format!("{}/", Dir::Locks)) && self.failing.load(Ordering::SeqCst) {
            return Err(Error::storage(
                k,
                std::io::Error::other("injected put failure"),
            ));
        }
        self.inner.put(k, d, du)
    }
    fn list(&self, d: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        self.inner.list(d, f)
    }
}

/// A local backend that deletes the object `victim` right after the first
/// listing of `generations/`: a `forget` landing between gc's listing and
/// its loads.
pub struct ForgetsAfterListing {
    pub inner: LocalBackend,
    pub victim: Mutex<Option<String>>,
}

impl Backend for ForgetsAfterListing {
    forward_rest!();
    fn put(&self, k: &str, d: &[u8], du: Durability) -> Result<()> {
        self.inner.put(k, d, du)
    }
    fn list(&self, dir: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        self.inner.list(dir, f)?;
        if dir == Dir::Blobs(BlobType::Generation).path() {
            if let Some(v) = self.victim.lock().unwrap().take() {
                self.inner.delete(&v)?;
            }
        }
        Ok(())
    }
}

/// A local backend that counts the puts of each chunk object.
pub struct Counting {
    pub inner: LocalBackend,
    pub puts: Mutex<std::collections::HashMap<String, u64>>,
}

impl Backend for Counting {
    forward_rest!();
    fn put(&self, k: &str, d: &[u8], du: Durability) -> Result<()> {
        if k.starts_with(&format!("{}/", Dir::Blobs(BlobType::Chunk))) {
            *self
                .puts
                .lock()
                .expect("poisoned")
                .entry(k.to_string())
                .or_default() += 1;
        }
        self.inner.put(k, d, du)
    }
    fn list(&self, d: &str, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        self.inner.list(d, f)
    }
}
