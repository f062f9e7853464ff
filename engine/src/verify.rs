//! Repository verification.
//!
//! Keyed mode walks every generation → manifest → page, collects the chunk
//! ids they reference (each chunk once, however many generations share it),
//! then reads, decrypts and re-hashes the selected chunks in parallel, in
//! id order, with the backend prefetching ahead of the workers. Any
//! unreadable object marks every generation that references it as damaged.
//! Memory: one set of referenced chunk ids plus each generation's page
//! list; which generations reference a bad chunk is found by re-reading
//! pages, only when something is bad.
//!
//! Every damaged object found is reported in [`VerifyReport::bad`], so the
//! caller can drop it from the chunk index and no backup deduplicates
//! against it again (SPEC.md §13.3). With quarantine, damaged objects of
//! every type (generations, manifests, pages, chunks) are moved to
//! `quarantine/<path>`: the next backup that meets the same data stores it
//! again, which heals the generations that reference it.
//!
//! A subset check ([`Subset`]) reads only some chunks: a generation with
//! no damage found is then "intact in the checked subset", never "intact".
//!
//! Keyless mode needs no password: it checks every stored object against
//! its stored-bytes checksum (and the sealed `config` and key files). It is
//! what an offsite host runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use vmkeep_format::blob::{self, BlobType};
use vmkeep_format::ObjectId;

use crate::backend::{Backend, Durability};
use crate::index::Index;
use crate::layout::{object_path, Dir, Key};
use crate::repo::{ReadBuffers, Repository};
use crate::Result;

/// Which part of the chunks to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// All of them.
    All,
    /// Part `n` of `m` (1-based): chunks whose id falls in bucket `n`.
    Part { n: u32, m: u32 },
    /// A random share, in percent.
    Percent(f64),
}

impl Subset {
    /// Parses `N/M` or `P%`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("{s:?}: the percentage must be in (0, 100]"));
            }
            return Ok(Subset::Percent(v));
        }
        let (n, m) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected N/M or P%"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: N is not a number"))?;
        let m: u32 = m
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: M is not a number"))?;
        if m == 0 || n == 0 || n > m {
            return Err(format!("{s:?}: need 1 <= N <= M"));
        }
        Ok(Subset::Part { n, m })
    }

    fn selects(&self, id: &ObjectId) -> bool {
        match *self {
            Subset::All => true,
            Subset::Part { n, m } => {
                let b = u32::from_le_bytes(id.0[..4].try_into().expect("4 bytes"));
                b % m == n - 1
            }
            Subset::Percent(p) => {
                let mut r = [0u8; 8];
                getrandom::getrandom(&mut r).expect("operating system random source failed");
                (u64::from_le_bytes(r) as f64 / u64::MAX as f64) * 100.0 < p
            }
        }
    }
}

/// One damaged or missing object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: String,
    pub problem: String,
}

/// The verdict on one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationVerdict {
    pub id: ObjectId,
    /// Its source; empty when the generation itself cannot be read.
    pub source: String,
    /// Paths of the damaged objects it references (empty: restores intact,
    /// as far as the chunks read show).
    pub damaged: Vec<String>,
}

impl GenerationVerdict {
    /// `intact`, `intact in the checked subset` or `damaged`.
    pub fn status(&self, subset: Subset) -> &'static str {
        match (self.damaged.is_empty(), subset) {
            (false, _) => "damaged",
            (true, Subset::All) => "intact",
            (true, _) => "intact in the checked subset",
        }
    }
}

/// What a verify found.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// Which chunks were read.
    pub subset: Subset,
    pub generations: Vec<GenerationVerdict>,
    /// Distinct chunks referenced by all generations.
    pub chunks_referenced: u64,
    /// Chunks read and checked in this run.
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    pub damage: Vec<Damage>,
    /// The damaged objects by type and id (every type a backup reuses or
    /// deduplicates against: drop them from the index).
    pub bad: Vec<(BlobType, ObjectId)>,
    pub quarantined: Vec<String>,
}

impl Default for VerifyReport {
    fn default() -> Self {
        VerifyReport {
            subset: Subset::All,
            generations: Vec::new(),
            chunks_referenced: 0,
            chunks_checked: 0,
            bytes_checked: 0,
            damage: Vec::new(),
            bad: Vec::new(),
            quarantined: Vec::new(),
        }
    }
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Keyed verification of every generation. Damaged objects are dropped
/// from `index` when given, and moved to `quarantine/` with `quarantine`.
pub fn verify(
    repo: &Repository,
    index: Option<&dyn Index>,
    subset: Subset,
    quarantine: bool,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        subset,
        ..VerifyReport::default()
    };
    let mut gen_ids = repo.generation_ids()?;
    gen_ids.sort();
    // Every chunk id referenced (32 bytes each plus the table), and per
    // generation the pages it was read from, to find who references a bad
    // chunk afterwards without keeping a chunk → generations map.
    let mut refs: HashSet<ObjectId> = HashSet::new();
    let mut gen_pages: Vec<Vec<ObjectId>> = Vec::new();
    let mut verdicts: Vec<GenerationVerdict> = Vec::new();
    let mut damage: Vec<Damage> = Vec::new();
    let mut bad: Vec<(BlobType, ObjectId)> = Vec::new();
    // Documents shared by several generations are read once; their
    // verdict is remembered.
    let mut seen_meta: HashSet<(u8, ObjectId)> = HashSet::new();
    let mut note = |ty: BlobType, id: ObjectId, problem: String, damage: &mut Vec<Damage>| {
        let path = object_path(ty, &id);
        if seen_meta.insert((ty as u8, id)) {
            damage.push(Damage {
                path: path.clone(),
                problem,
            });
            bad.push((ty, id));
        }
        path
    };
    for gid in gen_ids {
        let mut pages: Vec<ObjectId> = Vec::new();
        let mut v = GenerationVerdict {
            id: gid,
            source: String::new(),
            damaged: Vec::new(),
        };
        let g = match repo.load_generation(&gid) {
            Ok(g) => g,
            // Forgotten since it was listed.
            Err(crate::Error::ObjectMissing { .. }) => continue,
            Err(e) => {
                let path = note(BlobType::Generation, gid, e.to_string(), &mut damage);
                v.damaged.push(path);
                verdicts.push(v);
                gen_pages.push(pages);
                continue;
            }
        };
        v.source = g.source.clone();
        for d in &g.disks {
            let m = match repo.load_manifest(&d.manifest) {
                Ok(m) => m,
                Err(e) => {
                    let path = note(BlobType::Manifest, d.manifest, e.to_string(), &mut damage);
                    v.damaged.push(path);
                    continue;
                }
            };
            for (p, pid) in m.pages.iter().enumerate() {
                let page = repo.load_page_of(&m, p);
                match page {
                    Ok(page) => {
                        refs.extend(page.entries.iter().filter(|i| !i.is_zero()));
                        pages.push(*pid);
                    }
                    Err(e) => {
                        let path = note(BlobType::ManifestPage, *pid, e.to_string(), &mut damage);
                        v.damaged.push(path);
                    }
                }
            }
        }
        verdicts.push(v);
        pages.sort_unstable();
        pages.dedup();
        gen_pages.push(pages);
    }
    report.chunks_referenced = refs.len() as u64;
    let mut selected: Vec<ObjectId> = refs
        .iter()
        .filter(|id| subset.selects(id))
        .copied()
        .collect();
    drop(refs);
    // Directory order: neighbours on disk are read together.
    selected.sort_unstable();
    let (bytes, mut bad_chunks) = check_chunks(repo, &selected);
    report.chunks_checked = selected.len() as u64;
    report.bytes_checked = bytes;
    bad_chunks.sort();
    if !bad_chunks.is_empty() {
        let bad_ids: HashSet<ObjectId> = bad_chunks.iter().map(|(id, _)| *id).collect();
        // page id → the bad chunks it names (pages shared by generations are
        // read once more here, only when something is damaged)
        let mut page_bad: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        for (gi, pages) in gen_pages.iter().enumerate() {
            let mut hit: Vec<ObjectId> = Vec::new();
            for pid in pages {
                let named = page_bad
                    .entry(*pid)
                    .or_insert_with(|| match repo.load_page(pid) {
                        Ok(page) => page
                            .entries
                            .iter()
                            .filter(|i| bad_ids.contains(i))
                            .copied()
                            .collect(),
                        Err(_) => Vec::new(), // read fine a moment ago
                    });
                hit.extend(named.iter());
            }
            hit.sort_unstable();
            hit.dedup();
            for id in hit {
                verdicts[gi].damaged.push(object_path(BlobType::Chunk, &id));
            }
        }
    }
    for (id, problem) in bad_chunks {
        damage.push(Damage {
            path: object_path(BlobType::Chunk, &id),
            problem,
        });
        bad.push((BlobType::Chunk, id));
    }
    for (ty, id) in &bad {
        if let Some(ix) = index {
            if matches!(ty, BlobType::Chunk | BlobType::ManifestPage) {
                ix.remove(*ty, id)?;
            }
        }
        let path = object_path(*ty, id);
        if quarantine && repo.backend().exists(&path)? {
            quarantine_object(repo.backend().as_ref(), &path)?;
            report.quarantined.push(path);
        }
    }
    report.generations = verdicts;
    report.damage = damage;
    report.bad = bad;
    Ok(report)
}

/// Reads, decrypts and re-hashes every chunk in `ids` (every check,
/// checksum included) on one worker per core, the backend prefetching ahead
/// of them. Returns the plaintext bytes checked and the bad chunks.
fn check_chunks(repo: &Repository, ids: &[ObjectId]) -> (u64, Vec<(ObjectId, String)>) {
    let threads = crate::pipeline::default_threads();
    let (tx, rx) = crossbeam_channel::bounded::<ObjectId>(threads * 8);
    let bad = Mutex::new(Vec::new());
    let bytes = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(move || {
            for id in ids {
                repo.backend().prefetch(&object_path(BlobType::Chunk, id));
                if tx.send(*id).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads {
            let (rx, bad, bytes) = (rx.clone(), &bad, &bytes);
            s.spawn(move || {
                let mut bufs = ReadBuffers::default();
                let mut out = Vec::new();
                for id in rx {
                    match repo.get_object_into(BlobType::Chunk, &id, &mut bufs, &mut out) {
                        Ok(()) => {
                            bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => bad.lock().expect("poisoned").push((id, e.to_string())),
                    }
                }
            });
        }
    });
    (bytes.into_inner(), bad.into_inner().expect("poisoned"))
}

/// Moves an object to `quarantine/<key>`, durably (a copy, then a delete).
pub fn quarantine_object(b: &dyn Backend, key: &str) -> Result<()> {
    b.move_object(key, &Key::Quarantined(key).path(), Durability::Immediate)
        .map(drop)
}

/// Keyless verification: every object's stored-bytes checksum.
pub fn verify_keyless(b: &dyn Backend) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let config = Key::Config.path();
    match b.get(&config)? {
        None => report.damage.push(Damage {
            path: config,
            problem: "missing".into(),
        }),
        Some(raw) => {
            if let Err(e) = vmkeep_format::config::RepoConfig::decode(&raw) {
                report.damage.push(Damage {
                    path: config,
                    problem: e.to_string(),
                });
            }
        }
    }
    let mut keys = Vec::new();
    b.list(&Dir::KeySlots.path(), &mut |p| {
        keys.push(p.to_string());
        Ok(())
    })?;
    for k in keys {
        if let Some(raw) = b.get(&k)? {
            if let Err(e) = vmkeep_format::keyfile::KeySlot::decode(&raw) {
                report.damage.push(Damage {
                    path: k,
                    problem: e.to_string(),
                });
            }
        }
    }
    for ty in [
        BlobType::Generation,
        BlobType::Manifest,
        BlobType::ManifestPage,
        BlobType::Chunk,
    ] {
        let mut paths = Vec::new();
        b.list(&Dir::Blobs(ty).path(), &mut |p| {
            paths.push(p.to_string());
            Ok(())
        })?;
        let found: Vec<(u64, Option<Damage>)> = paths
            .par_iter()
            .map(|p| -> Result<(u64, Option<Damage>)> {
                let Some(raw) = b.get(p)? else {
                    return Ok((0, None));
                };
                let d = match blob::check(&raw) {
                    Ok(h) if h.ty == ty => None,
                    Ok(h) => Some(format!("holds a {} blob", h.ty.name())),
                    Err(e) => Some(e.to_string()),
                };
                Ok((
                    raw.len() as u64,
                    d.map(|problem| Damage {
                        path: p.clone(),
                        problem,
                    }),
                ))
            })
            .collect::<Result<_>>()?;
        for (n, d) in found {
            if ty == BlobType::Chunk {
                report.chunks_checked += 1;
            }
            report.bytes_checked += n;
            report.damage.extend(d);
        }
    }
    report.damage.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}
