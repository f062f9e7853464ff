//! Conformance suites: every storage backend and every index implementation
//! runs the same checks. A new backend (S3) adds one
//! `backend_conformance!` line here; a new index one call of `index_suite`.

#[macro_use]
mod backend_suite;
mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend_suite::{Knobs, Subject};
use common::backends::{Flaky, ForgetsAfterListing};
use vmkeep_engine::backend::{Backend, Durability, LocalBackend, ObjectStat};
use vmkeep_engine::index::{Index, IndexEntry, MemIndex, RocksIndex};
use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

/// A local backend in a new temporary directory, wrapped by `wrap`.
fn local(wrap: fn(LocalBackend) -> Arc<dyn Backend>) -> Subject {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("repo");
    let again = root.clone();
    Subject {
        backend: wrap(LocalBackend::new(root)),
        reopen: Box::new(move || Arc::new(LocalBackend::new(again.clone()))),
        knobs: Knobs::LOCAL,
        keep: Box::new(d),
    }
}

/// The object-store operations only: every provided method (touch,
/// move_object, size, exists, ...) takes its default, as on S3.
struct RequiredOnly(LocalBackend);

impl Backend for RequiredOnly {
    fn location(&self) -> String {
        self.0.location()
    }
    fn get(&self, k: &str) -> vmkeep_engine::Result<Option<Vec<u8>>> {
        self.0.get(k)
    }
    fn put(&self, k: &str, d: &[u8], du: Durability) -> vmkeep_engine::Result<()> {
        self.0.put(k, d, du)
    }
    fn delete(&self, k: &str) -> vmkeep_engine::Result<()> {
        self.0.delete(k)
    }
    fn list(
        &self,
        d: &str,
        f: &mut dyn FnMut(&str) -> vmkeep_engine::Result<()>,
    ) -> vmkeep_engine::Result<()> {
        self.0.list(d, f)
    }
    fn stat(&self, k: &str) -> vmkeep_engine::Result<Option<ObjectStat>> {
        self.0.stat(k)
    }
    fn copy(&self, a: &str, b: &str, du: Durability) -> vmkeep_engine::Result<bool> {
        self.0.copy(a, b, du)
    }
    fn sync(&self) -> vmkeep_engine::Result<()> {
        self.0.sync()
    }
}

backend_conformance!(local_backend, || local(|b| Arc::new(b)));
backend_conformance!(object_store_operations_only, || local(|b| Arc::new(
    RequiredOnly(b)
)));
backend_conformance!(flaky_wrapper_when_not_failing, || local(|b| Arc::new(
    Flaky {
        inner: b,
        failing: Arc::new(AtomicBool::new(false)),
    }
)));
backend_conformance!(forgetting_wrapper_without_victim, || local(|b| Arc::new(
    ForgetsAfterListing {
        inner: b,
        victim: Mutex::new(None),
    }
)));

#[test]
fn local_backend_leaves_no_temporary_files() {
    let s = local(|b| Arc::new(b));
    let b = s.backend.as_ref();
    b.put("chunks/aa/one", b"1", Durability::Deferred).unwrap();
    b.put("chunks/aa/one", b"2", Durability::Immediate).unwrap();
    assert!(b
        .copy("chunks/aa/one", "chunks/ab/two", Durability::Immediate)
        .unwrap());
    assert!(b
        .copy("chunks/ab/two", "chunks/ab/two", Durability::Deferred)
        .unwrap());
    assert!(b.touch("chunks/ab/two").unwrap());
    assert!(b
        .move_object(
            "chunks/ab/two",
            "trash/1/chunks/ab/two",
            Durability::Deferred
        )
        .unwrap());
    let dir: &tempfile::TempDir = s.keep.downcast_ref().unwrap();
    let tmp = walk(dir.path())
        .into_iter()
        .filter(|e| {
            e.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(tmp, 0);
}

#[test]
fn local_backend_ignores_incomplete_writes_in_listings() {
    let d = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(d.path());
    b.put("chunks/aa/real", b"x", Durability::Immediate)
        .unwrap();
    std::fs::write(d.path().join("chunks/aa/.tmp-deadbeef"), b"partial").unwrap();
    let mut seen = Vec::new();
    b.list("chunks", &mut |p| {
        seen.push(p.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec!["chunks/aa/real"]);
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

fn id(n: u8) -> ObjectId {
    ObjectId([n; 32])
}

fn index_suite(ix: &dyn Index) {
    let e1 = IndexEntry {
        plain_len: 1 << 20,
        stored_len: 1000,
    };
    let e2 = IndexEntry {
        plain_len: 10,
        stored_len: 80,
    };
    assert_eq!(ix.get(BlobType::Chunk, &id(1)).unwrap(), None);
    ix.insert_batch(&[
        (BlobType::Chunk, id(2), e1),
        (BlobType::Chunk, id(1), e2),
        (BlobType::ManifestPage, id(1), e1),
    ])
    .unwrap();
    // Types are separate namespaces.
    assert_eq!(ix.get(BlobType::Chunk, &id(1)).unwrap(), Some(e2));
    assert_eq!(ix.get(BlobType::ManifestPage, &id(1)).unwrap(), Some(e1));
    assert_eq!(ix.get(BlobType::ManifestPage, &id(2)).unwrap(), None);
    // Iteration is per type and in id order.
    let mut seen = Vec::new();
    ix.for_each(BlobType::Chunk, &mut |i, e| {
        seen.push((*i, e));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(id(1), e2), (id(2), e1)]);
    // Meta values do not show up as entries.
    ix.meta_put("state", b"complete").unwrap();
    assert_eq!(
        ix.meta_get("state").unwrap().as_deref(),
        Some(&b"complete"[..])
    );
    assert_eq!(ix.meta_get("other").unwrap(), None);
    let mut n = 0;
    ix.for_each(BlobType::Chunk, &mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 2);
    // Overwrite, remove, clear.
    ix.insert_batch(&[(BlobType::Chunk, id(1), e1)]).unwrap();
    assert_eq!(ix.get(BlobType::Chunk, &id(1)).unwrap(), Some(e1));
    ix.remove(BlobType::Chunk, &id(1)).unwrap();
    assert_eq!(ix.get(BlobType::Chunk, &id(1)).unwrap(), None);
    ix.clear().unwrap();
    assert_eq!(ix.get(BlobType::Chunk, &id(2)).unwrap(), None);
    assert_eq!(ix.meta_get("state").unwrap(), None);
    // Edge ids.
    ix.insert_batch(&[
        (BlobType::Chunk, ObjectId([0xff; 32]), e1),
        (BlobType::Chunk, ObjectId([0; 32]), e2),
    ])
    .unwrap();
    let mut n = 0;
    ix.for_each(BlobType::Chunk, &mut |_, _| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn mem_index_conforms() {
    index_suite(&MemIndex::new());
}

#[test]
fn rocks_index_conforms_and_persists() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("index");
    {
        let ix = RocksIndex::open(&p, Duration::from_secs(1)).unwrap();
        index_suite(&ix);
        ix.insert_batch(&[(
            BlobType::Chunk,
            id(9),
            IndexEntry {
                plain_len: 1,
                stored_len: 2,
            },
        )])
        .unwrap();
    }
    let ix = RocksIndex::open(&p, Duration::from_secs(1)).unwrap();
    assert!(ix.get(BlobType::Chunk, &id(9)).unwrap().is_some());
}

#[test]
fn rocks_index_held_by_another_opener_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("index");
    let _held = RocksIndex::open(&p, Duration::from_secs(1)).unwrap();
    let e = match RocksIndex::open(&p, Duration::from_millis(300)) {
        Ok(_) => panic!("a second open of a held index must fail"),
        Err(e @ vmkeep_engine::Error::IndexBusy { .. }) => e.to_string(),
        Err(e) => panic!("a held index must give IndexBusy, not {e:?}"),
    };
    assert!(e.contains("in use by another vmkeep process"), "{e}");
    assert!(e.contains(&p.display().to_string()), "{e}");
}
