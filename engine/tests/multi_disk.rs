//! Several disks in one generation through one write session (SPEC.md §8,
//! §11): shared chunks are put once, every disk restores, and a disk that
//! fails leaves no generation and a repository that verifies clean.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::backends::Counting;
use common::*;
use vmkeep_engine::backend::LocalBackend;
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::ops::backup::{backup, AreaMode, BackupOptions, DiskSpec};
use vmkeep_engine::progress::NoProgress;
use vmkeep_engine::repo::Repository;
use vmkeep_engine::restore::restore_disk;
use vmkeep_engine::session::WriteSession;
use vmkeep_engine::source::{DiskSource, Extent};
use vmkeep_engine::verify::{verify, Subset};
use vmkeep_engine::{Error, Result};
use vmkeep_format::generation::SourceKind;

/// A disk in memory that fails to read at `fail_at` (bytes), after
/// `delay_us` per read so that the other disks are well under way.
struct Failing {
    data: Vec<u8>,
    fail_at: u64,
    reads: Arc<AtomicU64>,
}

impl DiskSource for Failing {
    fn describe(&self) -> String {
        "failing".into()
    }
    fn capacity(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if o + b.len() as u64 > self.fail_at {
            return Err(Error::SourceRead {
                source_name: "failing".into(),
                offset: o,
                error: std::io::Error::other("injected read error"),
            });
        }
        b.copy_from_slice(&self.data[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn allocated(&mut self, _: u64, _: u64) -> Result<Option<Vec<Extent>>> {
        Ok(None)
    }
}

/// `n` chunks of [`CS`] bytes, each distinct, tagged with `seed`.
fn chunks(seed: u8, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * CS as usize);
    for c in 0..n {
        for i in 0..CS as usize {
            v.push((i as u8).wrapping_mul(31) ^ (c as u8).wrapping_mul(7) ^ seed.wrapping_mul(101));
        }
        // Make every chunk unique even where the pattern repeats.
        let at = v.len() - CS as usize;
        v[at] = seed;
        v[at + 1] = c as u8;
        v[at + 2] = (c >> 8) as u8;
    }
    v
}

fn disk(name: &str, data: Vec<u8>) -> DiskSpec {
    DiskSpec {
        name: name.into(),
        source: Box::new(Mem(data)),
        areas: AreaMode::Everything,
        use_allocation: false,
        change_id: String::new(),
    }
}

fn open(dir: &std::path::Path) -> (Arc<Counting>, Repository) {
    drop(new_repo(dir));
    let b = Arc::new(Counting {
        inner: LocalBackend::new(dir),
        puts: Mutex::default(),
    });
    let repo = Repository::open(b.clone(), Some(b"pw")).unwrap();
    (b, repo)
}

fn chunk_objects(dir: &std::path::Path) -> usize {
    walk(&dir.join("chunks"))
}

fn walk(p: &std::path::Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else if e.file_name().to_string_lossy().starts_with('.') {
                    0
                } else {
                    1
                }
            })
            .sum()
        })
        .unwrap_or(0)
}

fn restore_named(repo: &Repository, gen: &str, disk: &str) -> Vec<u8> {
    let (gid, g) = repo.resolve_generation(gen).unwrap();
    let d = g.disks.iter().find(|d| d.name == disk).unwrap();
    let m = repo.load_manifest(&d.manifest).unwrap();
    let mut o = Out::default();
    restore_disk(repo, &m, &gid.short(), &mut o, 2, &NoProgress).unwrap();
    o.0
}

#[test]
fn two_disks_with_shared_content_store_each_shared_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let (b, repo) = open(dir.path());
    let ix = MemIndex::default();
    let shared = chunks(1, 24);
    // Disk a: shared, then its own; disk b: its own, then shared, so the
    // shared chunks are met at different moments; disk c is a copy of a,
    // so its chunks are met at the same moments as a's.
    let a: Vec<u8> = [shared.clone(), chunks(2, 8)].concat();
    let bb: Vec<u8> = [chunks(3, 8), shared.clone()].concat();
    let c = a.clone();
    let session = WriteSession::new(&repo, &ix, 2).unwrap();
    let o = BackupOptions {
        parallel_disks: 3,
        ..BackupOptions::new("vm1", SourceKind::Vm)
    };
    let r = backup(
        &session,
        vec![
            disk("a", a.clone()),
            disk("b", bb.clone()),
            disk("c", c.clone()),
        ],
        o,
        &NoProgress,
    )
    .unwrap();
    let unique = 24 + 8 + 8;
    assert_eq!(r.disks.len(), 3);
    assert_eq!(r.counts.new_chunks, unique, "{r:?}");
    assert_eq!(r.counts.dedup_chunks, 3 * 32 - unique, "{r:?}");
    assert_eq!(r.counts.slots, 3 * 32);
    assert_eq!(
        r.disks.iter().map(|d| d.counts.new_chunks).sum::<u64>(),
        unique,
        "{r:?}"
    );
    // Each chunk object exists once and was put once.
    assert_eq!(chunk_objects(dir.path()) as u64, unique);
    let puts = b.puts.lock().unwrap();
    assert_eq!(puts.len() as u64, unique);
    assert!(
        puts.values().all(|&n| n == 1),
        "a chunk was put twice: {puts:?}"
    );
    drop(puts);
    drop(session);
    // One generation holding the three disks, each restoring byte for byte.
    let ids = repo.generation_ids().unwrap();
    assert_eq!(ids.len(), 1);
    let g = repo.load_generation(&ids[0]).unwrap();
    assert_eq!(
        g.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(restore_named(&repo, &r.generation, "a"), a);
    assert_eq!(restore_named(&repo, &r.generation, "b"), bb);
    assert_eq!(restore_named(&repo, &r.generation, "c"), c);
    assert!(verify(&repo, None, Subset::All, false).unwrap().clean());
}

#[test]
fn an_incremental_of_several_disks_continues_each_disk_and_adds_a_new_one_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, repo) = open(dir.path());
    let ix = MemIndex::default();
    let a0 = chunks(4, 16);
    let b0 = chunks(5, 16);
    let session = WriteSession::new(&repo, &ix, 2).unwrap();
    let first = backup(
        &session,
        vec![disk("a", a0.clone()), disk("b", b0.clone())],
        BackupOptions::new("vm2", SourceKind::Vm),
        &NoProgress,
    )
    .unwrap();
    // Second generation: a changed in its first chunk, b unchanged, and a
    // new disk n; the parent is the lineage's latest.
    let mut a1 = a0.clone();
    a1[10] ^= 0xff;
    let n1 = chunks(6, 4);
    let o = BackupOptions {
        parent: Some("latest".into()),
        ..BackupOptions::new("vm2", SourceKind::Vm)
    };
    let second = backup(
        &session,
        vec![
            disk("a", a1.clone()),
            disk("b", b0.clone()),
            disk("n", n1.clone()),
        ],
        o,
        &NoProgress,
    )
    .unwrap();
    drop(session);
    assert_eq!(second.parent.as_deref(), Some(first.generation.as_str()));
    let by: HashMap<_, _> = second.disks.iter().map(|d| (d.disk.as_str(), d)).collect();
    assert!(by["a"].incremental && by["b"].incremental && !by["n"].incremental);
    assert_eq!(by["a"].counts.new_chunks, 1);
    assert_eq!(by["b"].counts.new_chunks, 0);
    assert_eq!(by["n"].counts.new_chunks, 4);
    assert!(
        second.warnings.iter().any(|w| w.contains("\"n\"")),
        "{:?}",
        second.warnings
    );
    assert_eq!(restore_named(&repo, &second.generation, "a"), a1);
    assert_eq!(restore_named(&repo, &second.generation, "b"), b0);
    assert_eq!(restore_named(&repo, &second.generation, "n"), n1);
    assert_eq!(restore_named(&repo, &first.generation, "a"), a0);
}

#[test]
fn a_disk_that_fails_midway_commits_no_generation_and_names_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, repo) = open(dir.path());
    let ix = MemIndex::default();
    // One generation before, which must stay as it is.
    let before_data = chunks(7, 8);
    let session = WriteSession::new(&repo, &ix, 2).unwrap();
    let before = backup(
        &session,
        vec![disk("a", before_data.clone())],
        BackupOptions::new("vm3", SourceKind::Vm),
        &NoProgress,
    )
    .unwrap();
    let reads = Arc::new(AtomicU64::new(0));
    let bad = DiskSpec {
        name: "scsi0:1".into(),
        source: Box::new(Failing {
            data: chunks(8, 64),
            fail_at: 40 * CS as u64,
            reads: reads.clone(),
        }),
        areas: AreaMode::Everything,
        use_allocation: false,
        change_id: String::new(),
    };
    let e = backup(
        &session,
        vec![disk("a", chunks(9, 256)), bad, disk("c", chunks(10, 256))],
        BackupOptions::new("vm3", SourceKind::Vm),
        &NoProgress,
    )
    .expect_err("a disk failed");
    drop(session);
    let msg = e.to_string();
    match &e {
        Error::Disk { disk, source } => {
            assert_eq!(disk, "scsi0:1", "{msg}");
            assert!(matches!(**source, Error::SourceRead { .. }), "{msg}");
        }
        other => panic!("expected a disk error, got {other:?}"),
    }
    assert!(
        msg.contains("scsi0:1") && msg.contains("injected read error"),
        "{msg}"
    );
    assert!(
        reads.load(Ordering::Relaxed) >= 40,
        "the disk was read up to its fault"
    );
    // No new generation; the old one restores; the repository verifies
    // clean (what the failed backup stored is only unreferenced).
    let ids = repo.generation_ids().unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].to_hex(), before.generation);
    assert_eq!(restore_named(&repo, &before.generation, "a"), before_data);
    let v = verify(&repo, None, Subset::All, false).unwrap();
    assert!(v.clean(), "{:?}", v.damage);
}

#[test]
fn one_write_session_per_repository_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, repo) = open(dir.path());
    let ix = MemIndex::default();
    let s = WriteSession::new(&repo, &ix, 1).unwrap();
    let e = WriteSession::new(&repo, &ix, 1)
        .err()
        .expect("a second session is refused");
    assert!(matches!(e, Error::SessionOpen { .. }), "{e}");
    drop(s);
    WriteSession::new(&repo, &ix, 1).expect("once the first is closed, a new one opens");
}

#[test]
fn two_disks_of_one_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, repo) = open(dir.path());
    let ix = MemIndex::default();
    let session = WriteSession::new(&repo, &ix, 1).unwrap();
    let e = backup(
        &session,
        vec![disk("a", chunks(1, 2)), disk("a", chunks(2, 2))],
        BackupOptions::new("vm4", SourceKind::Vm),
        &NoProgress,
    )
    .expect_err("duplicate disk names");
    assert!(matches!(e, Error::BadName { .. }), "{e}");
    assert!(repo.generation_ids().unwrap().is_empty());
}
