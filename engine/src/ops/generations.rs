//! The generations listing: every readable generation (of one source or
//! all), oldest first, then the ones that cannot be read.
//!
//! Invariant: a damaged generation's source is unknown, so it is listed
//! whatever source was asked for; the listing never fails on one.

use serde::Serialize;

use crate::repo::Repository;
use crate::Result;

/// Which generations to list.
#[derive(Clone, Debug, Default)]
pub struct GenerationsOptions {
    /// Only generations of this source (lineage).
    pub source: Option<String>,
}

/// One disk of a generation.
#[derive(Clone, Debug, Serialize)]
pub struct DiskRow {
    pub name: String,
    pub manifest: String,
    pub capacity: u64,
    pub chunk_size: u32,
    pub data_bytes: u64,
    pub new_stored_bytes: u64,
}

/// A readable generation.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationRow {
    pub id: String,
    pub source: String,
    pub host: String,
    /// Start and end, Unix seconds.
    pub started: i64,
    pub finished: i64,
    /// The start as RFC 3339 in the backup host's UTC offset.
    pub time: String,
    pub parent: Option<String>,
    pub protected: bool,
    /// Always false (see [`DamagedRow`]).
    pub damaged: bool,
    pub disks: Vec<DiskRow>,
}

/// A generation that cannot be read.
#[derive(Clone, Debug, Serialize)]
pub struct DamagedRow {
    pub id: String,
    /// Always true.
    pub damaged: bool,
    pub problem: String,
    pub protected: bool,
    /// Its file's modification time, Unix seconds, when known.
    pub modified: Option<i64>,
}

/// The listing. It serializes as one array: the readable generations,
/// then the damaged ones.
#[derive(Clone, Debug)]
pub struct GenerationsReport {
    pub generations: Vec<GenerationRow>,
    pub damaged: Vec<DamagedRow>,
}

impl Serialize for GenerationsReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.generations.len() + self.damaged.len()))?;
        for g in &self.generations {
            seq.serialize_element(g)?;
        }
        for d in &self.damaged {
            seq.serialize_element(d)?;
        }
        seq.end()
    }
}

/// Lists the generations.
pub fn generations(repo: &Repository, o: &GenerationsOptions) -> Result<GenerationsReport> {
    let list = repo.list_generations()?;
    let protected = repo.protected_ids()?;
    let generations = list
        .readable
        .iter()
        .filter(|(_, g)| o.source.as_ref().is_none_or(|s| &g.source == s))
        .map(|(id, g)| GenerationRow {
            id: id.to_hex(),
            source: g.source.clone(),
            host: g.hostname.clone(),
            started: g.started,
            finished: g.finished,
            time: super::rfc3339(g.started, g.utc_offset),
            parent: g.parent.map(|p| p.to_hex()),
            protected: protected.contains(id),
            damaged: false,
            disks: g
                .disks
                .iter()
                .map(|d| DiskRow {
                    name: d.name.clone(),
                    manifest: d.manifest.to_hex(),
                    capacity: d.capacity,
                    chunk_size: d.chunk_size,
                    data_bytes: d.data_bytes,
                    new_stored_bytes: d.new_stored_bytes,
                })
                .collect(),
        })
        .collect();
    let damaged = list
        .damaged
        .iter()
        .map(|d| DamagedRow {
            id: d.id.to_hex(),
            damaged: true,
            problem: d.problem.clone(),
            protected: protected.contains(&d.id),
            modified: d.modified,
        })
        .collect();
    Ok(GenerationsReport {
        generations,
        damaged,
    })
}
