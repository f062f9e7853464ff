//! The RocksDB [`Index`]. Keys: one type byte (the blob type) followed by
//! the 32-byte id; values: [`IndexEntry::to_bytes`]. Meta values live under
//! the type byte 0xFF followed by the UTF-8 key. Writes skip fsync: the
//! index is rebuildable, and an entry lost in a crash only costs a rewrite.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};
use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use super::{Index, IndexEntry};
use crate::{Error, Result};

const META: u8 = 0xff;

/// An index in a RocksDB directory.
pub struct RocksIndex {
    db: DB,
    path: PathBuf,
}

fn key(ty: BlobType, id: &ObjectId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = ty as u8;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

impl RocksIndex {
    /// Opens or creates the index at `path`. While another vmkeep process
    /// holds it, waits up to `wait` before failing with a message naming it.
    pub fn open(path: &Path, wait: Duration) -> Result<Self> {
        Self::open_unless(path, wait, &AtomicBool::new(false))
    }

    /// [`RocksIndex::open`] that stops waiting for another process once
    /// `stop` is set.
    pub fn open_unless(path: &Path, wait: Duration, stop: &AtomicBool) -> Result<Self> {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.set_max_open_files(256);
        o.set_keep_log_file_num(2);
        // Bounded memory whatever the repository's size: gc deletes one
        // entry per garbage chunk, and RocksDB's default memtable (64 MiB,
        // two of them) would otherwise hold them all.
        o.set_write_buffer_size(8 << 20);
        o.set_max_write_buffer_number(2);
        let start = Instant::now();
        loop {
            match DB::open(&o, path) {
                Ok(db) => {
                    return Ok(RocksIndex {
                        db,
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => {
                    let msg = e.to_string();
                    let locked = msg.contains("lock") || msg.contains("LOCK");
                    if locked && start.elapsed() < wait && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    let path = path.to_path_buf();
                    return Err(if locked {
                        Error::IndexBusy { path, msg }
                    } else {
                        Error::Index { path, msg }
                    });
                }
            }
        }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Index {
            path: self.path.clone(),
            msg: e.to_string(),
        }
    }
}

impl Index for RocksIndex {
    fn get(&self, ty: BlobType, id: &ObjectId) -> Result<Option<IndexEntry>> {
        match self.db.get_pinned(key(ty, id)).map_err(|e| self.err(e))? {
            Some(v) => Ok(IndexEntry::from_bytes(&v)),
            None => Ok(None),
        }
    }

    fn insert_batch(&self, items: &[(BlobType, ObjectId, IndexEntry)]) -> Result<()> {
        let mut b = WriteBatch::default();
        for (t, id, e) in items {
            b.put(key(*t, id), e.to_bytes());
        }
        self.db.write(b).map_err(|e| self.err(e))
    }

    fn remove(&self, ty: BlobType, id: &ObjectId) -> Result<()> {
        self.db.delete(key(ty, id)).map_err(|e| self.err(e))
    }

    fn for_each(
        &self,
        ty: BlobType,
        f: &mut dyn FnMut(&ObjectId, IndexEntry) -> Result<()>,
    ) -> Result<()> {
        let start = [ty as u8];
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.len() != 33 || k[0] != ty as u8 {
                break;
            }
            let id = ObjectId(k[1..].try_into().expect("33-byte key"));
            if let Some(e) = IndexEntry::from_bytes(&v) {
                f(&id, e)?;
            }
        }
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range(&[0u8][..], &[0xffu8, 0xff][..]);
        b.delete_range(&[META][..], &[0xffu8, 0xff][..]);
        self.db.write(b).map_err(|e| self.err(e))
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut k = vec![META];
        k.extend_from_slice(key.as_bytes());
        self.db.get(k).map_err(|e| self.err(e))
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut k = vec![META];
        k.extend_from_slice(key.as_bytes());
        self.db.put(k, value).map_err(|e| self.err(e))
    }
}
