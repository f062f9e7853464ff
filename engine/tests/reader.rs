//! The random-access disk reader: reads against the source bytes, zero
//! slots, the cache bound, damaged chunks and missing disks.

mod common;

use common::{backup, new_repo, CS};
use proptest::prelude::*;
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::layout::object_path;
use vmkeep_engine::reader::{DiskReader, ReaderOptions};
use vmkeep_format::blob::BlobType;

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// 5 slots and an odd-sized tail, the third slot zeros.
fn disk() -> Vec<u8> {
    let cs = CS as usize;
    let mut d = data(5 * cs + 777, 7);
    d[2 * cs..3 * cs].fill(0);
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_reads_match_the_source(reads in proptest::collection::vec((0u64..(6 * CS as u64), 0usize..(3 * CS as usize)), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let repo = new_repo(dir.path());
        let src = disk();
        let gid = backup(&repo, &MemIndex::default(), &src, "vm", "d0");
        let mut r = DiskReader::open(&repo, &gid, "d0").unwrap();
        prop_assert_eq!(r.capacity(), src.len() as u64);
        for (off, len) in reads {
            let mut buf = vec![0xAAu8; len];
            let n = r.read_at(off, &mut buf).unwrap();
            let start = (off as usize).min(src.len());
            let end = (start + len).min(src.len());
            prop_assert_eq!(n, end - start);
            prop_assert_eq!(&buf[..n], &src[start..end]);
        }
    }
}

#[test]
fn spans_slots_tail_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = disk();
    let gid = backup(&repo, &MemIndex::default(), &src, "vm", "d0");
    let mut r = DiskReader::open(&repo, &gid, "d0").unwrap();
    let mut all = vec![0u8; src.len() + 100];
    assert_eq!(r.read_at(0, &mut all).unwrap(), src.len());
    assert_eq!(&all[..src.len()], &src[..]);
    let cs = CS as u64;
    let mut b = vec![0u8; 1000];
    assert_eq!(r.read_at(cs - 500, &mut b).unwrap(), 1000);
    assert_eq!(&b[..], &src[cs as usize - 500..cs as usize + 500]);
    assert_eq!(r.read_at(5 * cs + 700, &mut b).unwrap(), 77);
    assert_eq!(&b[..77], &src[5 * CS as usize + 700..]);
    assert_eq!(r.read_at(src.len() as u64, &mut b).unwrap(), 0);
    assert_eq!(r.read_at(u64::MAX, &mut b).unwrap(), 0);
}

#[test]
fn zero_disk_fetches_no_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = vec![0u8; 4 * CS as usize + 3];
    let gid = backup(&repo, &MemIndex::default(), &src, "vm", "d0");
    let mut r = DiskReader::open(&repo, &gid, "d0").unwrap();
    let mut b = vec![1u8; src.len()];
    assert_eq!(r.read_at(0, &mut b).unwrap(), src.len());
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(r.stats().chunks_fetched, 0);
    assert_eq!(r.stats().cache_hits, 0);
}

#[test]
fn cache_is_bounded_and_hits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = data(16 * CS as usize, 3);
    let gid = backup(&repo, &MemIndex::default(), &src, "vm", "d0");
    let opts = ReaderOptions {
        cache_bytes: 2 * CS as usize,
    };
    let mut r = DiskReader::open_with(&repo, &gid, "d0", opts).unwrap();
    let mut b = vec![0u8; 10];
    for s in 0..16u64 {
        r.read_at(s * CS as u64, &mut b).unwrap();
        assert!(r.cached_bytes() <= 2 * CS as usize);
    }
    assert_eq!(r.stats().chunks_fetched, 16);
    r.read_at(15 * CS as u64 + 100, &mut b).unwrap();
    assert_eq!(r.stats().cache_hits, 1);
    assert_eq!(r.stats().chunks_fetched, 16);
    // Slot 0 was evicted long ago.
    r.read_at(0, &mut b).unwrap();
    assert_eq!(r.stats().chunks_fetched, 17);

    // A bound below one chunk still keeps one chunk.
    let tiny = ReaderOptions { cache_bytes: 1 };
    let mut r = DiskReader::open_with(&repo, &gid, "d0", tiny).unwrap();
    assert_eq!(r.cache_bound(), CS as usize);
    r.read_at(0, &mut b).unwrap();
    r.read_at(5, &mut b).unwrap();
    assert_eq!(r.stats().chunks_fetched, 1);
    assert_eq!(r.stats().cache_hits, 1);
}

#[test]
fn damaged_chunk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let src = data(3 * CS as usize, 9);
    let gid = backup(&repo, &MemIndex::default(), &src, "vm", "d0");
    let g = repo.load_generation(&gid).unwrap();
    let m = repo.load_manifest(&g.disks[0].manifest).unwrap();
    let id = repo.load_page(&m.pages[0]).unwrap().entries[1];
    let path = dir.path().join(object_path(BlobType::Chunk, &id));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let mut r = DiskReader::open(&repo, &gid, "d0").unwrap();
    let mut b = vec![0u8; 10];
    assert_eq!(r.read_at(0, &mut b).unwrap(), 10);
    let e = r.read_at(CS as u64 + 1, &mut b).unwrap_err().to_string();
    assert!(e.contains(&gid.short()), "{e}");
    assert!(e.contains("disk d0"), "{e}");
    assert!(e.contains("slot 1"), "{e}");
    assert!(e.contains(&id.to_hex()), "{e}");
}

#[test]
fn missing_disk_names_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let gid = backup(&repo, &MemIndex::default(), &data(100, 1), "vm", "d0");
    let e = DiskReader::open(&repo, &gid, "nope")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&gid.short()) && e.contains("nope"), "{e}");
}
