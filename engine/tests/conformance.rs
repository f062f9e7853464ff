//! Conformance suites: every storage backend and every index implementation
//! runs the same checks. A new backend (S3) or index adds one line here.

use std::sync::Arc;
use std::time::Duration;

use vmkeep_engine::backend::{Backend, Durability, LocalBackend};
use vmkeep_engine::index::{Index, IndexEntry, MemIndex, RocksIndex};
use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

fn backend_suite(b: &dyn Backend) {
    // Missing objects.
    assert_eq!(b.get("chunks/aa/missing").unwrap(), None);
    assert!(!b.exists("chunks/aa/missing").unwrap());
    assert!(!b.touch("chunks/aa/missing").unwrap());
    b.delete("chunks/aa/missing").unwrap();
    // Put / get / replace, both durabilities, nested directories created.
    b.put("chunks/aa/one", b"first", Durability::Deferred)
        .unwrap();
    b.put("manifests/two", b"second", Durability::Immediate)
        .unwrap();
    assert_eq!(
        b.get("chunks/aa/one").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    b.put("chunks/aa/one", b"replaced", Durability::Immediate)
        .unwrap();
    assert_eq!(
        b.get("chunks/aa/one").unwrap().as_deref(),
        Some(&b"replaced"[..])
    );
    assert!(b.exists("manifests/two").unwrap());
    assert!(b.touch("manifests/two").unwrap());
    // Empty objects are objects.
    b.put("keys/empty", b"", Durability::Immediate).unwrap();
    assert_eq!(b.get("keys/empty").unwrap().as_deref(), Some(&b""[..]));
    // Listing is recursive, sorted, and limited to the directory.
    b.put("chunks/ab/three", b"3", Durability::Deferred)
        .unwrap();
    let mut seen = Vec::new();
    b.list("chunks", &mut |p| {
        seen.push(p.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec!["chunks/aa/one", "chunks/ab/three"]);
    let mut none = 0;
    b.list("nothing-here", &mut |_| {
        none += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(none, 0);
    // A listing callback's error stops the listing and is returned.
    let r = b.list("chunks", &mut |_| Err(vmkeep_engine::Error::Interrupted));
    assert!(matches!(r, Err(vmkeep_engine::Error::Interrupted)));
    b.sync().unwrap();
    // Modification times move forward with touch; rename moves objects.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((b.modified("manifests/two").unwrap().unwrap() - now).abs() < 60);
    assert_eq!(b.modified("nothing/there").unwrap(), None);
    // stat tells both at once, and agrees with size and modified.
    let st = b
        .stat("manifests/two")
        .unwrap()
        .expect("stat of a stored object");
    assert_eq!(Some(st.size), b.size("manifests/two").unwrap());
    assert_eq!(Some(st.modified), b.modified("manifests/two").unwrap());
    assert_eq!(b.stat("nothing/there").unwrap(), None);
    b.rename(
        "manifests/two",
        "trash/1/manifests/two",
        Durability::Deferred,
    )
    .unwrap();
    assert!(!b.exists("manifests/two").unwrap());
    assert_eq!(
        b.get("trash/1/manifests/two").unwrap().as_deref(),
        Some(&b"second"[..])
    );
    b.rename(
        "trash/1/manifests/two",
        "manifests/two",
        Durability::Immediate,
    )
    .unwrap();
    b.delete("chunks/aa/one").unwrap();
    assert!(!b.exists("chunks/aa/one").unwrap());
    // Large objects survive intact.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    b.put("chunks/ff/big", &big, Durability::Deferred).unwrap();
    assert_eq!(b.get("chunks/ff/big").unwrap().unwrap(), big);
    // get_into reuses the caller's buffer and clears it for a missing one;
    // size is the stored length without reading the object.
    let mut buf = b"stale contents".to_vec();
    assert!(b.get_into("chunks/ff/big", &mut buf).unwrap());
    assert_eq!(buf, big);
    assert!(b.get_into("chunks/ab/three", &mut buf).unwrap());
    assert_eq!(buf, b"3");
    assert!(!b.get_into("chunks/ab/missing", &mut buf).unwrap());
    assert!(buf.is_empty());
    assert_eq!(b.size("chunks/ff/big").unwrap(), Some(big.len() as u64));
    assert_eq!(b.size("keys/empty").unwrap(), Some(0));
    assert_eq!(b.size("chunks/ab/missing").unwrap(), None);
}

#[test]
fn local_backend_conforms() {
    let d = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(d.path().join("repo"));
    backend_suite(&b);
    // No temporary files are left behind by successful writes.
    let mut tmp = 0;
    for e in walk(d.path()) {
        if e.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-")
        {
            tmp += 1;
        }
    }
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

#[test]
fn backends_are_shareable_across_threads() {
    let d = tempfile::tempdir().unwrap();
    let b: Arc<dyn Backend> = Arc::new(LocalBackend::new(d.path()));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let b = b.clone();
            s.spawn(move || {
                for i in 0..50u8 {
                    // Everyone writes the same names: last rename wins, never a torn file.
                    b.put(&format!("chunks/00/{i}"), &[i; 4096], Durability::Deferred)
                        .unwrap();
                    let got = b.get(&format!("chunks/00/{i}")).unwrap().unwrap();
                    assert_eq!(got, vec![i; 4096], "thread {t}");
                }
            });
        }
    });
}
