//! Builds a repository with many chunks for measuring garbage collection at
//! scale (`bench/gc-scale.sh`): `CHUNKS` tiny chunk objects, the first half
//! referenced by two generations (sharing one manifest), the second half
//! garbage aged one day so that `vmkeep gc` trashes and deletes it in one
//! run. Chunks are tiny (16 bytes) because gc's memory depends on how many
//! chunks there are, not on their size. The key slot uses an 8 MiB Argon2
//! memory cost so that unlocking does not set the process's peak.
//!
//! Usage: `gc_scale DIR CHUNKS` (password `bench`); prints
//! `gc-scale CHUNKS REFERENCED GARBAGE`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use vmkeep_engine::backend::{Durability, LocalBackend};
use vmkeep_engine::layout::object_path;
use vmkeep_engine::repo::{InitOptions, Repository};
use vmkeep_format::blob::BlobType;
use vmkeep_format::generation::{DiskRef, Generation, SourceKind};
use vmkeep_format::keyfile::KdfParams;
use vmkeep_format::manifest::{
    Manifest, ManifestPage, ManifestStats, ENTRIES_PER_PAGE, MIN_CHUNK_SIZE,
};
use vmkeep_format::ObjectId;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: gc_scale DIR CHUNKS"));
    let n: u64 = args
        .next()
        .expect("usage: gc_scale DIR CHUNKS")
        .parse()
        .expect("CHUNKS is a number");
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&dir)),
        Some(b"bench"),
        &InitOptions {
            chunk_size: MIN_CHUNK_SIZE,
            // A small Argon2 memory cost, so that the key derivation's
            // 64 MiB does not hide gc's own peak in the measurement.
            kdf: KdfParams {
                memory_kib: 8 << 10,
                ..KdfParams::default()
            },
            ..Default::default()
        },
    )
    .expect("init");
    let referenced = n / 2;
    let done = AtomicU64::new(0);
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    // Chunk i holds 16 bytes derived from i; ids come back in order.
    let ids: Vec<ObjectId> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut plain = [0u8; 16];
            plain[..8].copy_from_slice(&i.to_le_bytes());
            plain[8..].copy_from_slice(b"gc-scale");
            let (id, _) = repo
                .put_object(BlobType::Chunk, &plain, Durability::Deferred)
                .expect("store chunk");
            if i >= referenced {
                let p = dir.join(object_path(BlobType::Chunk, &id));
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_modified(day_ago))
                    .expect("age garbage chunk");
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d.is_multiple_of(200_000) {
                eprintln!("gc_scale: {d} of {n} chunks stored");
            }
            id
        })
        .collect();
    let mut pages = Vec::new();
    for entries in ids[..referenced as usize].chunks(ENTRIES_PER_PAGE as usize) {
        let page = ManifestPage {
            entries: entries.to_vec(),
        };
        let (pid, _) = repo
            .put_object(BlobType::ManifestPage, &page.encode(), Durability::Deferred)
            .expect("store page");
        pages.push(pid);
    }
    repo.backend().sync().expect("sync");
    let capacity = referenced * MIN_CHUNK_SIZE as u64;
    let m = Manifest {
        disk_name: "scale".into(),
        capacity,
        chunk_size: MIN_CHUNK_SIZE,
        entries_per_page: ENTRIES_PER_PAGE,
        pages,
        stats: ManifestStats::default(),
        change_id: String::new(),
    };
    let (mid, _) = repo
        .put_object(BlobType::Manifest, &m.encode(), Durability::Immediate)
        .expect("store manifest");
    for k in 0..2 {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        repo.commit_generation(&Generation {
            source_kind: SourceKind::Image,
            source: "scale".into(),
            hostname: "bench".into(),
            started: now + k,
            finished: now + k,
            utc_offset: 0,
            parent: None,
            disks: vec![DiskRef {
                name: "scale".into(),
                manifest: mid,
                capacity,
                chunk_size: MIN_CHUNK_SIZE,
                data_bytes: capacity,
                new_stored_bytes: 0,
            }],
            metadata: Vec::new(),
            writer: "gc_scale".into(),
        })
        .expect("commit generation");
    }
    println!("gc-scale {n} {referenced} {}", n - referenced);
}
