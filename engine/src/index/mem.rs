//! An in-memory [`Index`] for tests and for throw-away runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

use super::{Index, IndexEntry};
use crate::Result;

/// Index entries in a mutex-guarded map.
#[derive(Default)]
pub struct MemIndex {
    map: Mutex<BTreeMap<(u8, ObjectId), IndexEntry>>,
    meta: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemIndex {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Index for MemIndex {
    fn get(&self, ty: BlobType, id: &ObjectId) -> Result<Option<IndexEntry>> {
        Ok(self
            .map
            .lock()
            .expect("poisoned")
            .get(&(ty as u8, *id))
            .copied())
    }
    fn insert_batch(&self, items: &[(BlobType, ObjectId, IndexEntry)]) -> Result<()> {
        let mut m = self.map.lock().expect("poisoned");
        for (t, id, e) in items {
            m.insert((*t as u8, *id), *e);
        }
        Ok(())
    }
    fn remove(&self, ty: BlobType, id: &ObjectId) -> Result<()> {
        self.map.lock().expect("poisoned").remove(&(ty as u8, *id));
        Ok(())
    }
    fn for_each(
        &self,
        ty: BlobType,
        f: &mut dyn FnMut(&ObjectId, IndexEntry) -> Result<()>,
    ) -> Result<()> {
        let items: Vec<_> = self
            .map
            .lock()
            .expect("poisoned")
            .range((ty as u8, ObjectId::ZERO)..=(ty as u8, ObjectId([0xff; 32])))
            .map(|(k, v)| (k.1, *v))
            .collect();
        for (id, e) in items {
            f(&id, e)?;
        }
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        self.map.lock().expect("poisoned").clear();
        self.meta.lock().expect("poisoned").clear();
        Ok(())
    }
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.lock().expect("poisoned").get(key).cloned())
    }
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta
            .lock()
            .expect("poisoned")
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
}
