//! Fixtures the engine's integration tests share: an in-memory disk
//! source and target, a cheap encrypted repository, and one-call backup
//! and restore of a single-disk generation.

#![allow(dead_code)]

pub mod backends;

use std::collections::BTreeSet;
use std::sync::Arc;

use vmkeep_engine::backend::LocalBackend;
use vmkeep_engine::backup::{backup_disk, commit_generation, DiskJob, GenerationInfo};
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::layout::object_path;
use vmkeep_engine::progress::NoProgress;
use vmkeep_engine::repo::{InitOptions, Repository};
use vmkeep_engine::restore::restore_disk;
use vmkeep_engine::session::WriteSession;
use vmkeep_engine::source::{DiskSource, Extent};
use vmkeep_engine::target::DiskTarget;
use vmkeep_format::blob::BlobType;
use vmkeep_format::generation::SourceKind;
use vmkeep_format::keyfile::KdfParams;
use vmkeep_format::ObjectId;

/// The chunk size of [`new_repo`].
pub const CS: u32 = 64 << 10;

/// A disk in memory, every byte allocated.
pub struct Mem(pub Vec<u8>);

impl DiskSource for Mem {
    fn describe(&self) -> String {
        "mem".into()
    }
    fn capacity(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> vmkeep_engine::Result<()> {
        b.copy_from_slice(&self.0[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn allocated(&mut self, _: u64, _: u64) -> vmkeep_engine::Result<Option<Vec<Extent>>> {
        Ok(None)
    }
}

/// A restore target in memory.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl DiskTarget for Out {
    fn describe(&self) -> String {
        "out".into()
    }
    fn prepare(&mut self, c: u64) -> vmkeep_engine::Result<()> {
        self.0 = vec![0; c as usize];
        Ok(())
    }
    fn write_at(&mut self, o: u64, d: &[u8]) -> vmkeep_engine::Result<()> {
        self.0[o as usize..o as usize + d.len()].copy_from_slice(d);
        Ok(())
    }
    fn write_zeros(&mut self, _: u64, _: u64) -> vmkeep_engine::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> vmkeep_engine::Result<()> {
        Ok(())
    }
}

/// An encrypted repository of chunk size [`CS`] in `dir`, password `pw`,
/// with the cheapest key derivation.
pub fn new_repo(dir: &std::path::Path) -> Repository {
    let o = InitOptions {
        chunk_size: CS,
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        },
        ..Default::default()
    };
    Repository::init(Arc::new(LocalBackend::new(dir)), Some(b"pw"), &o).unwrap()
}

/// Backs `data` up as disk `disk` of a new generation of `source`.
pub fn backup(repo: &Repository, ix: &MemIndex, data: &[u8], source: &str, disk: &str) -> ObjectId {
    let job = DiskJob {
        disk_name: disk.into(),
        source: Box::new(Mem(data.to_vec())),
        use_allocation: false,
        areas: None,
        parent: None,
        chunk_size: CS,
        change_id: String::new(),
        lock: None,
        cancel: None,
    };
    let d = backup_disk(&WriteSession::new(repo, ix, 2).unwrap(), job, &NoProgress).unwrap();
    let info = GenerationInfo {
        source_kind: SourceKind::Image,
        source: source.into(),
        parent: None,
        started: 0,
        utc_offset: 0,
        metadata: vec![],
    };
    commit_generation(repo, info, &[d]).unwrap().0
}

/// The first disk of generation `gid`, restored into memory.
pub fn restore(repo: &Repository, gid: &ObjectId) -> vmkeep_engine::Result<Vec<u8>> {
    let g = repo.load_generation(gid)?;
    let m = repo.load_manifest(&g.disks[0].manifest)?;
    let mut o = Out::default();
    restore_disk(repo, &m, &gid.short(), &mut o, 2, &NoProgress)?;
    Ok(o.0)
}

/// The manifests, pages and chunks generation `gid` depends on (paths).
pub fn dependencies(repo: &Repository, gid: &ObjectId) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for d in &repo.load_generation(gid).unwrap().disks {
        s.insert(object_path(BlobType::Manifest, &d.manifest));
        for p in &repo.load_manifest(&d.manifest).unwrap().pages {
            s.insert(object_path(BlobType::ManifestPage, p));
            for c in repo.load_page(p).unwrap().entries.iter() {
                if !c.is_zero() {
                    s.insert(object_path(BlobType::Chunk, c));
                }
            }
        }
    }
    s
}
