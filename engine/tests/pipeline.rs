//! Backup and restore pipelines through the engine API, with in-memory
//! sources and targets: round trips for random disks and random change
//! lists (incremental ≡ full), read modes, failure in mid-pipeline, and
//! corruption detected on restore.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use vmkeep_engine::backend::LocalBackend;
use vmkeep_engine::backup::{
    backup_disk, commit_generation, DiskJob, DiskResult, GenerationInfo, Parent,
};
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::layout::object_path;
use vmkeep_engine::progress::NoProgress;
use vmkeep_engine::repo::{InitOptions, Repository};
use vmkeep_engine::restore::restore_disk;
use vmkeep_engine::session::WriteSession;
use vmkeep_engine::source::{DiskSource, Extent};
use vmkeep_engine::target::DiskTarget;
use vmkeep_engine::{Error, Result};
use vmkeep_format::blob::BlobType;
use vmkeep_format::config::Encryption;
use vmkeep_format::generation::SourceKind;
use vmkeep_format::keyfile::KdfParams;

const CS: u32 = 64 << 10;

/// A disk in memory; `alloc` lists allocated extents when known; reads can
/// be made to fail at the Nth call.
struct MemSource {
    data: Arc<Vec<u8>>,
    alloc: Option<Vec<Extent>>,
    fail_at: Option<usize>,
    reads: Arc<Mutex<usize>>,
}

impl DiskSource for MemSource {
    fn describe(&self) -> String {
        "memory disk".into()
    }
    fn capacity(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut r = self.reads.lock().unwrap();
        *r += 1;
        if Some(*r) == self.fail_at {
            return Err(Error::SourceRead {
                source_name: "memory disk".into(),
                offset,
                error: std::io::Error::other("injected read failure"),
            });
        }
        buf.copy_from_slice(&self.data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn allocated(&mut self, offset: u64, length: u64) -> Result<Option<Vec<Extent>>> {
        Ok(self.alloc.as_ref().map(|a| {
            a.iter()
                .filter(|e| e.end() > offset && e.offset < offset + length)
                .copied()
                .collect()
        }))
    }
}

#[derive(Default)]
struct MemTarget {
    data: Vec<u8>,
    finished: bool,
}

impl DiskTarget for MemTarget {
    fn describe(&self) -> String {
        "memory target".into()
    }
    fn prepare(&mut self, capacity: u64) -> Result<()> {
        self.data = vec![0xAA; capacity as usize]; // garbage: zeros must be written
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.data[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        self.data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        Ok(())
    }
}

fn repo(dir: &std::path::Path, enc: bool) -> Repository {
    let o = InitOptions {
        encryption: if enc {
            Encryption::Aes256Gcm
        } else {
            Encryption::None
        },
        chunk_size: CS,
        zstd_level: 1,
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        },
        label: "test".into(),
    };
    Repository::init(
        Arc::new(LocalBackend::new(dir.join("repo"))),
        Some(b"pw"),
        &o,
    )
    .unwrap()
}

fn src(data: &Arc<Vec<u8>>) -> MemSource {
    MemSource {
        data: data.clone(),
        alloc: None,
        fail_at: None,
        reads: Arc::default(),
    }
}

fn job(name: &str, s: MemSource) -> DiskJob {
    DiskJob {
        disk_name: name.into(),
        source: Box::new(s),
        use_allocation: false,
        areas: None,
        parent: None,
        chunk_size: CS,
        change_id: String::new(),
        lock: None,
        cancel: None,
    }
}

fn restore(r: &Repository, d: &DiskResult) -> Vec<u8> {
    let mut t = MemTarget::default();
    restore_disk(r, &d.manifest, "test", &mut t, 2, &NoProgress).unwrap();
    assert!(t.finished);
    t.data
}

/// A disk image with data, zero runs and repeated blocks.
fn disk(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed | 1;
    for (i, b) in v.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let block = i / (48 << 10);
        *b = match block % 4 {
            0 => 0,
            1 => (block as u8).wrapping_mul(31), // repeats: dedup
            _ => x as u8,
        };
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Random writes, described by a change list, give an incremental
    /// generation that restores exactly like the new image (and like a full
    /// backup of it), while the parent still restores the old image.
    #[test]
    fn incremental_equals_full(
        seed in 1u64..1000,
        len in (1usize..40).prop_map(|n| n * 37_000 + 511),
        writes in proptest::collection::vec((0f64..1.0, 1usize..200_000, any::<u8>()), 0..8),
        enc in any::<bool>(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let r = repo(d.path(), enc);
        let ix = MemIndex::new();
        let v0 = Arc::new(disk(seed, len));
        let g0 = backup_disk(&WriteSession::new(&r, &ix, 2).unwrap(), job("d", src(&v0)), &NoProgress).unwrap();
        let mut v1 = (*v0).clone();
        let mut areas: Vec<Extent> = Vec::new();
        for (pos, n, byte) in writes {
            let off = ((len as f64 * pos) as usize).min(len - 1);
            let end = (off + n).min(len);
            v1[off..end].fill(byte);
            areas.push(Extent { offset: off as u64, length: (end - off) as u64 });
        }
        // Sort and merge into the shape QueryChangedDiskAreas returns.
        areas.sort();
        let mut merged: Vec<Extent> = Vec::new();
        for a in areas {
            match merged.last_mut() {
                Some(m) if a.offset <= m.end() => m.length = m.end().max(a.end()) - m.offset,
                _ => merged.push(a),
            }
        }
        let v1 = Arc::new(v1);
        let mut j = job("d", src(&v1));
        j.areas = Some(Box::new(merged.into_iter().map(Ok)));
        j.parent = Some(Parent { label: "g0".into(), manifest: g0.manifest.clone() });
        let inc = backup_disk(&WriteSession::new(&r, &ix, 2).unwrap(), j, &NoProgress).unwrap();
        let full = backup_disk(&WriteSession::new(&r, &ix, 2).unwrap(), job("d", src(&v1)), &NoProgress).unwrap();
        prop_assert_eq!(&inc.manifest.pages, &full.manifest.pages);
        prop_assert_eq!(full.manifest.stats.new_chunks, 0);
        prop_assert!(restore(&r, &inc) == *v1);
        prop_assert!(restore(&r, &g0) == *v0);
    }
}

#[test]
fn allocation_mode_skips_unallocated_slots_and_agrees_with_full() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), true);
    let ix = MemIndex::new();
    let mut v = vec![0u8; 40 * CS as usize];
    v[5 * CS as usize..7 * CS as usize].fill(7);
    v[30 * CS as usize + 100] = 1;
    let v = Arc::new(v);
    let full = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    let mut s = src(&v);
    s.alloc = Some(vec![
        Extent {
            offset: 5 * CS as u64,
            length: 2 * CS as u64,
        },
        Extent {
            offset: 30 * CS as u64,
            length: 4096,
        },
    ]);
    let reads = s.reads.clone();
    let mut j = job("d", s);
    j.use_allocation = true;
    let sparse = backup_disk(&WriteSession::new(&r, &ix, 2).unwrap(), j, &NoProgress).unwrap();
    assert_eq!(
        *reads.lock().unwrap(),
        3,
        "only the 3 allocated slots are read"
    );
    assert_eq!(sparse.manifest.pages, full.manifest.pages);
    assert_eq!(sparse.manifest.stats.read_bytes, 3 * CS as u64);
    assert_eq!(restore(&r, &sparse), *v);
}

#[test]
fn a_failing_read_stops_the_backup_and_leaves_earlier_generations_intact() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), true);
    let ix = MemIndex::new();
    let v0 = Arc::new(disk(3, 50 * CS as usize));
    let g0 = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v0)),
        &NoProgress,
    )
    .unwrap();
    let info = GenerationInfo {
        source_kind: SourceKind::Image,
        source: "d".into(),
        parent: None,
        started: 0,
        utc_offset: 0,
        metadata: vec![],
    };
    commit_generation(&r, info, std::slice::from_ref(&g0)).unwrap();
    let v1 = Arc::new(disk(4, 50 * CS as usize));
    let mut s = src(&v1);
    s.fail_at = Some(20);
    let e = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", s),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("injected read failure") && e.contains("memory disk"),
        "{e}"
    );
    assert_eq!(r.generations().unwrap().len(), 1);
    assert_eq!(restore(&r, &g0), *v0);
}

#[test]
fn a_damaged_chunk_fails_the_restore_naming_generation_slot_and_chunk() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), true);
    let ix = MemIndex::new();
    let v = Arc::new(disk(5, 10 * CS as usize));
    let g = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("disk-x", src(&v)),
        &NoProgress,
    )
    .unwrap();
    // Flip one bit of the chunk in slot 2.
    let page = r.load_page(&g.manifest.pages[0]).unwrap();
    let victim = page.entries[2];
    assert!(!victim.is_zero());
    let path = d
        .path()
        .join("repo")
        .join(object_path(BlobType::Chunk, &victim));
    let mut b = std::fs::read(&path).unwrap();
    b[100] ^= 0x10;
    std::fs::write(&path, b).unwrap();
    let mut t = MemTarget::default();
    let e = restore_disk(&r, &g.manifest, "gen-abc", &mut t, 2, &NoProgress).unwrap_err();
    match &e {
        Error::ChunkBad {
            generation,
            disk,
            slot,
            chunk,
            ..
        } => {
            assert_eq!(generation, "gen-abc");
            assert_eq!(disk, "disk-x");
            // Identical chunks in other slots share the id: the first bad slot is reported.
            assert_eq!(page.entries[*slot as usize], victim);
            assert_eq!(chunk, &victim.to_hex());
        }
        other => panic!("expected ChunkBad, got {other}"),
    }
    assert!(!t.finished, "a failed restore is not reported as finished");
}

#[test]
fn same_content_twice_stores_nothing_new_and_shares_pages() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), false);
    let ix = MemIndex::new();
    let v = Arc::new(disk(9, 3000 * 1024));
    let a = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    let b = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    assert!(a.manifest.stats.new_chunks > 0);
    assert_eq!(b.manifest.stats.new_chunks, 0);
    assert_eq!(b.manifest.stats.new_stored_bytes, 0);
    assert_eq!(a.manifest.pages, b.manifest.pages);
}

#[test]
fn a_stale_index_entry_is_detected_and_the_chunk_stored_again() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), true);
    let ix = MemIndex::new();
    let v = Arc::new(disk(11, 8 * CS as usize));
    let a = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    // Delete every chunk behind the index's back (as quarantine or gc would).
    std::fs::remove_dir_all(d.path().join("repo/chunks")).unwrap();
    let b = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(b.manifest.stats.new_chunks, a.manifest.stats.new_chunks);
    assert_eq!(restore(&r, &b), *v);
}

#[test]
fn parent_of_another_size_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), false);
    let ix = MemIndex::new();
    let v = Arc::new(disk(1, 4 * CS as usize));
    let a = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("d", src(&v)),
        &NoProgress,
    )
    .unwrap();
    let w = Arc::new(disk(1, 5 * CS as usize));
    let mut j = job("d", src(&w));
    j.parent = Some(Parent {
        label: "g-old".into(),
        manifest: a.manifest,
    });
    let e = backup_disk(&WriteSession::new(&r, &ix, 2).unwrap(), j, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(e.contains("g-old") && e.contains("full backup"), "{e}");
}

#[test]
fn latest_is_the_last_committed_even_within_one_second() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), false);
    let ix = MemIndex::new();
    let mut committed = Vec::new();
    for seed in 1..=6u64 {
        let v = Arc::new(disk(seed, 2 * CS as usize));
        let res = backup_disk(
            &WriteSession::new(&r, &ix, 2).unwrap(),
            job("d", src(&v)),
            &NoProgress,
        )
        .unwrap();
        let info = GenerationInfo {
            source_kind: SourceKind::Image,
            source: "d".into(),
            parent: None,
            started: 1_700_000_000, // the same second for all of them
            utc_offset: 0,
            metadata: vec![],
        };
        committed.push(commit_generation(&r, info, &[res]).unwrap().0);
    }
    let listed: Vec<_> = r
        .generations()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, committed, "generations are listed in commit order");
    assert_eq!(
        r.resolve_generation("latest").unwrap().0,
        *committed.last().unwrap()
    );
    assert_eq!(
        r.resolve_generation("latest:d").unwrap().0,
        *committed.last().unwrap()
    );
}

/// The file target writes whole chunks with direct I/O and the short last
/// chunk buffered; either way the file is the disk, byte for byte, with
/// zero slots left as holes. Also into an existing file (overwrite).
#[test]
fn file_target_restores_byte_for_byte_with_an_odd_tail() {
    use vmkeep_engine::target::FileTarget;
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), true);
    let ix = MemIndex::default();
    // 7 full slots plus a 1000-byte tail that is not a multiple of 4096.
    let mut data = disk(11, 7 * CS as usize + 1000);
    let z = 2 * CS as usize;
    data[z..z + CS as usize].fill(0); // one zero slot: a hole
    let data = Arc::new(data);
    let res = backup_disk(
        &WriteSession::new(&r, &ix, 2).unwrap(),
        job("odd", src(&data)),
        &NoProgress,
    )
    .unwrap();
    let out = d.path().join("restored.raw");
    std::fs::write(&out, vec![0xffu8; 9 * CS as usize]).unwrap(); // stale, longer
    let mut t = FileTarget::create(&out, true).unwrap();
    restore_disk(&r, &res.manifest, "test", &mut t, 2, &NoProgress).unwrap();
    drop(t);
    assert_eq!(std::fs::read(&out).unwrap(), *data);
    // The zero slot was not written: the file has fewer blocks than bytes.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&out).unwrap();
    assert!(
        m.blocks() * 512 < m.len(),
        "{} blocks for {} bytes",
        m.blocks(),
        m.len()
    );
}
