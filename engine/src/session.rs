//! The write session: what every backup running in one process shares to
//! write into one repository (SPEC.md §11).
//!
//! Nouns: the *pool* of worker threads that hash, compress and encrypt
//! for every disk at once; the *in-flight set*, objects a writer has
//! claimed (its put is under way) or stored (put, not yet in the index);
//! the *commit cadence*, after how many new objects the session makes
//! them durable (`sync`) and only then tells the index.
//!
//! Invariants:
//! - an object is put at most once per session: a writer claims it first,
//!   and a second writer that meets the claim waits for the put to finish
//!   (or to fail, and then puts it itself);
//! - the index learns of an object only after a `sync` that followed its
//!   put, so a crash never leaves the index naming a lost object;
//! - one session per repository per process ([`WriteSession::new`]
//!   refuses a second), so no two pools or in-flight sets compete.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use crate::backend::Durability;
use crate::index::{Index, IndexEntry};
use crate::layout::object_path;
use crate::repo::Repository;
use crate::{Error, Result};

/// How many new objects the session stores between index commits.
pub const COMMIT_EVERY: usize = 256;

/// Repositories with an open session in this process (by location).
static OPEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A writer's put is under way.
    Claimed,
    /// Put; in the index after the next commit.
    Stored,
}

type Key = (u8, ObjectId);

/// What [`WriteSession::store`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// This call put the object.
    New,
    /// It was stored already (by this session or before).
    Existing,
}

/// The state every backup of one process shares to write into one
/// repository. See the module documentation.
pub struct WriteSession<'r> {
    repo: &'r Repository,
    index: &'r dyn Index,
    pool: rayon::ThreadPool,
    threads: usize,
    inflight: Mutex<HashMap<Key, State>>,
    changed: Condvar,
    /// Stored objects not yet in the index.
    uncommitted: Mutex<Vec<(BlobType, ObjectId, IndexEntry)>>,
    /// Held while a commit syncs and writes the index, so two commits do
    /// not interleave (the second would find nothing left to do).
    committing: Mutex<()>,
}

impl<'r> WriteSession<'r> {
    /// Opens the session of `repo` with `threads` workers (0: one per
    /// core). Fails while another session of the same repository is open
    /// in this process.
    pub fn new(repo: &'r Repository, index: &'r dyn Index, threads: usize) -> Result<Self> {
        let pool = crate::pipeline::pool(threads, "vmkeep-worker")?;
        let location = repo.backend().location();
        {
            let mut open = OPEN.lock().expect("poisoned");
            if !open
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                return Err(Error::SessionOpen { repo: location });
            }
        }
        Ok(WriteSession {
            repo,
            index,
            threads: pool.current_num_threads(),
            pool,
            inflight: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            uncommitted: Mutex::new(Vec::new()),
            committing: Mutex::new(()),
        })
    }

    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    pub fn index(&self) -> &'r dyn Index {
        self.index
    }

    /// The shared worker pool.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Number of workers in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// True when the object is stored: put by this session, or in the
    /// index and still present (the touch proves it exists and tells gc it
    /// is in use, SPEC.md §13.4). An object another writer is putting
    /// right now counts as not stored: the caller encodes it too, and
    /// [`store`](Self::store) sorts out who puts it.
    pub fn is_stored(&self, ty: BlobType, id: &ObjectId) -> Result<bool> {
        if self
            .inflight
            .lock()
            .expect("poisoned")
            .get(&(ty as u8, *id))
            == Some(&State::Stored)
        {
            return Ok(true);
        }
        Ok(self.index.get(ty, id)?.is_some() && self.repo.backend().touch(&object_path(ty, id))?)
    }

    /// Stores an object unless it is stored already (see the invariants).
    /// `blob` is the encoded object, `plain_len` its plaintext length.
    pub fn store(&self, ty: BlobType, id: ObjectId, blob: &[u8], plain_len: u32) -> Result<Stored> {
        let key = (ty as u8, id);
        if self.unclaimed(&key).is_none() {
            return Ok(Stored::Existing);
        }
        if self.index.get(ty, &id)?.is_some() && self.repo.backend().touch(&object_path(ty, &id))? {
            return Ok(Stored::Existing);
        }
        // Another writer may have claimed it while the index was asked.
        match self.unclaimed(&key) {
            None => return Ok(Stored::Existing),
            Some(mut f) => {
                f.insert(key, State::Claimed);
            }
        }
        let put = self
            .repo
            .backend()
            .put(&object_path(ty, &id), blob, Durability::Deferred);
        // Listed for the next commit before it is shown as stored: a writer
        // that then relies on it finds it in the batch its own commit
        // syncs (or in one a running commit is syncing).
        let due = put.is_ok() && {
            let mut u = self.uncommitted.lock().expect("poisoned");
            u.push((
                ty,
                id,
                IndexEntry {
                    plain_len,
                    stored_len: blob.len() as u32,
                },
            ));
            u.len() >= COMMIT_EVERY
        };
        {
            let mut f = self.inflight.lock().expect("poisoned");
            match put {
                Ok(()) => f.insert(key, State::Stored),
                Err(_) => f.remove(&key),
            };
            self.changed.notify_all();
        }
        put?;
        if due {
            self.commit()?;
        }
        Ok(Stored::New)
    }

    /// Waits while another writer's put of `key` is under way; `None` when
    /// the object is stored, else the in-flight set, locked, without `key`.
    fn unclaimed(&self, key: &Key) -> Option<MutexGuard<'_, HashMap<Key, State>>> {
        let mut f = self.inflight.lock().expect("poisoned");
        loop {
            match f.get(key) {
                Some(State::Stored) => return None,
                Some(State::Claimed) => f = self.changed.wait(f).expect("poisoned"),
                None => return Some(f),
            }
        }
    }

    /// Makes every object stored so far durable, then tells the index. A
    /// writer calls it before it stores anything that names them (a
    /// manifest).
    pub fn commit(&self) -> Result<()> {
        let _one = self.committing.lock().expect("poisoned");
        let batch = std::mem::take(&mut *self.uncommitted.lock().expect("poisoned"));
        if batch.is_empty() {
            return Ok(());
        }
        let done = self
            .repo
            .backend()
            .sync()
            .and_then(|()| self.index.insert_batch(&batch));
        if let Err(e) = done {
            // Still stored, still not in the index: the next commit retries.
            self.uncommitted.lock().expect("poisoned").extend(batch);
            return Err(e);
        }
        let mut f = self.inflight.lock().expect("poisoned");
        for (t, id, _) in &batch {
            f.remove(&(*t as u8, *id));
        }
        Ok(())
    }

    /// Objects stored and not yet committed (for tests and reports).
    pub fn uncommitted(&self) -> usize {
        self.uncommitted.lock().expect("poisoned").len()
    }
}

impl Drop for WriteSession<'_> {
    fn drop(&mut self) {
        // What was stored is kept: the index learns of it at the next
        // commit, or from a rebuild. Best effort here.
        if let Err(e) = self.commit() {
            log::warn!("write session: last index commit failed: {e}");
        }
        let location = self.repo.backend().location();
        if let Some(open) = OPEN.lock().expect("poisoned").as_mut() {
            open.remove(&location);
        }
    }
}
