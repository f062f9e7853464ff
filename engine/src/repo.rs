//! The repository: a backend plus its parsed `config` and unlocked keys;
//! [`Sealed`] is one read but not yet unlocked.
//!
//! Objects are named by [`crate::layout`] (SPEC.md §2). `config` is
//! written last by `init`, so a location without it is not a repository.
//! Invariant: every object read through [`Repository`] has had its
//! checksum, authentication tag and id verified before it is returned.

use std::sync::Arc;

use vmkeep_format::blob::{BlobType, Codec, Decoder};
use vmkeep_format::config::{Encryption, RepoConfig};
use vmkeep_format::generation::Generation;
use vmkeep_format::keyfile::{KdfParams, KeySlot};
use vmkeep_format::manifest::{Manifest, ManifestPage};
use vmkeep_format::{FormatError, MasterKey, ObjectId};

use crate::backend::{Backend, Durability};
use crate::host::now_unix;
use crate::layout::{id_from_path, object_path, Dir, Key};
use crate::{Error, Result};

/// Per-thread read state: a buffer for stored bytes and a zstd context,
/// reused from one object to the next.
#[derive(Debug, Default)]
pub struct ReadBuffers {
    raw: Vec<u8>,
    decoder: Decoder,
}

/// Options for `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub encryption: Encryption,
    pub chunk_size: u32,
    pub zstd_level: i32,
    pub kdf: KdfParams,
    pub label: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            encryption: Encryption::Aes256Gcm,
            chunk_size: vmkeep_format::manifest::DEFAULT_CHUNK_SIZE,
            zstd_level: 1,
            kdf: KdfParams::default(),
            label: String::new(),
        }
    }
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
    codec: Codec,
    key: Option<MasterKey>,
    /// The key slot that opened it.
    slot: Option<String>,
    /// Files in `keys/` skipped when opening (not readable as key slots).
    skipped: Vec<SkippedSlot>,
}

/// What `keys/` holds: the readable slots (by file name) and the files
/// that are not.
type SlotFiles = (Vec<(String, KeySlot)>, Vec<SkippedSlot>);

/// A file in `keys/` that is not a readable key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSlot {
    pub path: String,
    pub problem: String,
}

fn describe_skipped(s: &[SkippedSlot]) -> String {
    s.iter()
        .map(|k| format!("{}: {}", k.path, k.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The disk named `name` of generation `g` (id `gid`), or
/// [`Error::NoSuchDisk`] listing the disks it has.
pub fn disk_of<'a>(
    g: &'a Generation,
    gid: &ObjectId,
    name: &str,
) -> Result<&'a vmkeep_format::generation::DiskRef> {
    g.disks
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::NoSuchDisk {
            generation: gid.short(),
            disk: name.to_string(),
            has: g
                .disks
                .iter()
                .map(|d| format!("{:?}", d.name))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Metadata key holding the commit time in Unix nanoseconds (decimal).
pub const META_COMMITTED_NS: &str = "vmkeep.committed_ns";

/// The commit time of a generation in nanoseconds, 0 when not recorded.
pub fn committed_ns(g: &Generation) -> u128 {
    g.metadata
        .iter()
        .find(|(k, _)| k == META_COMMITTED_NS)
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

impl Repository {
    /// The current time, Unix seconds.
    pub fn now() -> i64 {
        now_unix()
    }

    /// Creates a repository. Refuses a location that already holds one or
    /// holds anything at all.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: Option<&[u8]>,
        o: &InitOptions,
    ) -> Result<Self> {
        let loc = backend.location();
        if backend.exists(&Key::Config.path())? {
            return Err(Error::RepoExists(loc));
        }
        let mut nonempty = false;
        backend.list(&Dir::Root.path(), &mut |_| {
            nonempty = true;
            Ok(())
        })?;
        if nonempty {
            return Err(Error::Invalid(format!(
                "{loc} is not empty: choose a new or empty directory for the repository"
            )));
        }
        vmkeep_format::manifest::check_chunk_size(o.chunk_size)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if !(0..=22).contains(&o.zstd_level) {
            return Err(Error::Invalid(format!(
                "zstd level {} is not in 0..=22",
                o.zstd_level
            )));
        }
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).expect("operating system random source failed");
        let config = RepoConfig {
            id,
            created: now_unix(),
            encryption: o.encryption,
            chunk_size: o.chunk_size,
            zstd_level: o.zstd_level,
        };
        let (codec, key, slot) = match o.encryption {
            Encryption::Aes256Gcm => {
                let pw = password.ok_or_else(|| Error::PasswordRequired(loc.clone()))?;
                let key = MasterKey::generate();
                let slot = KeySlot::create(&key, pw, &id, o.kdf, o.label.clone(), now_unix())
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                backend.put(
                    &Key::KeySlot(&slot.id_hex()).path(),
                    &slot.encode(),
                    Durability::Immediate,
                )?;
                (
                    Codec::encrypted(&key, o.zstd_level),
                    Some(key),
                    Some(slot.id_hex()),
                )
            }
            Encryption::None => (Codec::plain(o.zstd_level), None, None),
        };
        backend.put(&Key::Config.path(), &config.encode(), Durability::Immediate)?;
        Ok(Repository {
            backend,
            config,
            codec,
            key,
            slot,
            skipped: Vec::new(),
        })
    }

    /// Reads and checks the config only (no key needed).
    pub fn read_config(backend: &dyn Backend) -> Result<RepoConfig> {
        let loc = backend.location();
        let raw = match backend.get(&Key::Config.path()) {
            // The location is a file: ENOTDIR for `<file>/config`.
            Err(Error::Storage { source, .. }) if source.raw_os_error() == Some(20) => {
                return Err(Error::NotARepo {
                    repo: loc,
                    why: "it is a file, not a directory".into(),
                })
            }
            other => other?,
        };
        let raw = raw.ok_or_else(|| {
            // Distinguish "nothing there" from "something else there".
            let mut any = false;
            let _ = backend.list(&Dir::Root.path(), &mut |_| {
                any = true;
                Ok(())
            });
            if any {
                Error::NotARepo {
                    repo: loc.clone(),
                    why: "no config file".into(),
                }
            } else {
                Error::RepoMissing(loc.clone())
            }
        })?;
        RepoConfig::decode(&raw).map_err(|e| match e {
            FormatError::BadMagic { .. } => Error::NotARepo {
                repo: loc.clone(),
                why: "its config file is not a vmkeep config".into(),
            },
            source => Error::RepoFormat {
                repo: loc.clone(),
                source,
            },
        })
    }

    /// Opens a repository, unlocking it with `password` when encrypted.
    pub fn open(backend: Arc<dyn Backend>, password: Option<&[u8]>) -> Result<Self> {
        Self::read(backend)?.unlock(password)
    }

    /// The reading half of [`Repository::open`]: the config and, when the
    /// repository is encrypted, its key slots. A caller can then start other
    /// reads (which would otherwise queue in front of these) while
    /// [`Sealed::unlock`] derives the key.
    pub fn read(backend: Arc<dyn Backend>) -> Result<Sealed> {
        let config = Self::read_config(backend.as_ref())?;
        let slots = match config.encryption {
            Encryption::None => None,
            Encryption::Aes256Gcm => Some(Self::slots(backend.as_ref())),
        };
        Ok(Sealed {
            backend,
            config,
            slots,
        })
    }

    /// The readable key slots, and the files in `keys/` that are not
    /// (damaged, truncated, a stray file): a damaged slot must not lock
    /// out the passwords of the others (SPEC.md §5.2).
    fn slots(backend: &dyn Backend) -> Result<SlotFiles> {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (p, name, raw) in crate::backend::read_all(backend, &Dir::KeySlots.path())? {
            if crate::layout::is_temporary(&name) {
                continue; // an incomplete write (SPEC.md §2)
            }
            match KeySlot::decode(&raw) {
                Ok(slot) => out.push((name, slot)),
                Err(e) => skipped.push(SkippedSlot {
                    path: p,
                    problem: e.to_string(),
                }),
            }
        }
        Ok((out, skipped))
    }

    /// The key slots, failing when there is none that can be read.
    fn usable_slots(&self) -> Result<Vec<(String, KeySlot)>> {
        let (slots, skipped) = Self::slots(self.backend.as_ref())?;
        if slots.is_empty() {
            return Err(Error::NoKeySlots {
                repo: self.location(),
                skipped: describe_skipped(&skipped),
            });
        }
        Ok(slots)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    pub fn codec(&self) -> &Codec {
        &self.codec
    }
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Key slots: (slot id, label, created, is the slot that opened it).
    pub fn key_list(&self) -> Result<Vec<(String, String, i64, bool)>> {
        Ok(self
            .usable_slots()?
            .into_iter()
            .map(|(n, s)| {
                let cur = self.slot.as_deref() == Some(n.as_str());
                (n, s.label, s.created, cur)
            })
            .collect())
    }

    /// Files in `keys/` that could not be read as key slots when the
    /// repository was opened (they were skipped).
    pub fn skipped_key_slots(&self) -> &[SkippedSlot] {
        &self.skipped
    }

    /// Adds a key slot for `password`; returns its id.
    pub fn key_add(&self, password: &[u8], kdf: KdfParams, label: String) -> Result<String> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| Error::NotEncrypted(self.location()))?;
        let slot = KeySlot::create(key, password, &self.config.id, kdf, label, now_unix())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.backend.put(
            &Key::KeySlot(&slot.id_hex()).path(),
            &slot.encode(),
            Durability::Immediate,
        )?;
        Ok(slot.id_hex())
    }

    /// Removes the key slot whose id starts with `prefix` (unique); refuses
    /// the last readable one and the one in use. Returns the full id.
    pub fn key_remove(&self, prefix: &str) -> Result<String> {
        let slots = self.usable_slots()?;
        let p = prefix.to_ascii_lowercase();
        let matches: Vec<&String> = slots
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !p.is_empty() && n.starts_with(&p))
            .collect();
        let id = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::KeySlot {
                    slot: prefix.to_string(),
                    msg: format!(
                        "no key slot of {} starts with it (slots: {})",
                        self.location(),
                        slots
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
            many => {
                return Err(Error::KeySlot {
                    slot: prefix.to_string(),
                    msg: format!(
                        "ambiguous: matches {}",
                        many.iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        };
        if slots.len() == 1 {
            return Err(Error::KeySlot {
                slot: id,
                msg: "it is the last key slot: refusing to remove it (add another password first)"
                    .into(),
            });
        }
        if self.slot.as_deref() == Some(id.as_str()) {
            return Err(Error::KeySlot {
                slot: id,
                msg: "it is the one this command unlocked with; open with another password to remove it".into(),
            });
        }
        self.backend.delete(&Key::KeySlot(&id).path())?;
        Ok(id)
    }

    /// Encodes and stores a blob; returns its id and stored length.
    pub fn put_object(
        &self,
        ty: BlobType,
        plaintext: &[u8],
        d: Durability,
    ) -> Result<(ObjectId, usize)> {
        let id = self.codec.id(plaintext);
        let blob = self.codec.encode(ty, &id, plaintext);
        self.backend.put(&object_path(ty, &id), &blob, d)?;
        Ok((id, blob.len()))
    }

    /// Reads, verifies and decodes an object (every check, SPEC.md §6).
    pub fn get_object(&self, ty: BlobType, id: &ObjectId) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_object_into(ty, id, &mut ReadBuffers::default(), &mut out)?;
        Ok(out)
    }

    /// Reads, verifies and decodes an object into `out`, reusing the
    /// per-thread buffers; the pipelines that read many chunks use it.
    /// An object missing from its place is looked for in the gc trash
    /// (SPEC.md §13.4).
    pub fn get_object_into(
        &self,
        ty: BlobType,
        id: &ObjectId,
        bufs: &mut ReadBuffers,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.read_stored(ty, id, bufs)?;
        self.codec
            .decode_into(ty, id, &mut bufs.raw, &mut bufs.decoder, out)
            .map_err(|source| Error::Object {
                what: ty.name(),
                id: id.to_hex(),
                source,
            })
    }

    /// Like [`Repository::get_object_into`], into the front of `out`
    /// (an aligned buffer, say); returns the plaintext's length.
    pub fn get_object_into_slice(
        &self,
        ty: BlobType,
        id: &ObjectId,
        bufs: &mut ReadBuffers,
        out: &mut [u8],
    ) -> Result<usize> {
        self.read_stored(ty, id, bufs)?;
        self.codec
            .decode_into_slice(ty, id, &mut bufs.raw, &mut bufs.decoder, out)
            .map_err(|source| Error::Object {
                what: ty.name(),
                id: id.to_hex(),
                source,
            })
    }

    /// Reads an object's stored bytes into `bufs.raw`, from the trash when
    /// it is missing from its place.
    fn read_stored(&self, ty: BlobType, id: &ObjectId, bufs: &mut ReadBuffers) -> Result<()> {
        let path = object_path(ty, id);
        // Third try: gc may have put it back between the first two.
        if self.backend.get_into(&path, &mut bufs.raw)?
            || crate::trash::find(self.backend.as_ref(), &path, &mut bufs.raw)?
            || self.backend.get_into(&path, &mut bufs.raw)?
        {
            return Ok(());
        }
        Err(Error::ObjectMissing {
            what: ty.name(),
            id: id.to_hex(),
        })
    }

    pub fn load_manifest(&self, id: &ObjectId) -> Result<Manifest> {
        let b = self.get_object(BlobType::Manifest, id)?;
        Manifest::decode(&b).map_err(|source| Error::Object {
            what: "manifest",
            id: id.to_hex(),
            source,
        })
    }

    pub fn load_page(&self, id: &ObjectId) -> Result<ManifestPage> {
        let b = self.get_object(BlobType::ManifestPage, id)?;
        ManifestPage::decode(&b).map_err(|source| Error::Object {
            what: "manifest page",
            id: id.to_hex(),
            source,
        })
    }

    /// Page `p` of manifest `m`, checked against it (its slot count,
    /// SPEC.md §7.2).
    pub fn load_page_of(&self, m: &Manifest, p: usize) -> Result<ManifestPage> {
        let pid = m.pages[p];
        let page = self.load_page(&pid)?;
        m.check_page(p, &page).map_err(|source| Error::Object {
            what: "manifest page",
            id: pid.to_hex(),
            source,
        })?;
        Ok(page)
    }

    pub fn load_generation(&self, id: &ObjectId) -> Result<Generation> {
        let b = self.get_object(BlobType::Generation, id)?;
        Generation::decode(&b).map_err(|source| Error::Object {
            what: "generation",
            id: id.to_hex(),
            source,
        })
    }

    /// Stores a generation document durably; this commits the backup.
    pub fn commit_generation(&self, g: &Generation) -> Result<ObjectId> {
        Ok(self
            .put_object(BlobType::Generation, &g.encode(), Durability::Immediate)?
            .0)
    }

    /// Ids of every generation file (unsorted, unread).
    pub fn generation_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = Vec::new();
        self.backend
            .list(&Dir::Blobs(BlobType::Generation).path(), &mut |p| {
                if let Some(id) = id_from_path(p) {
                    ids.push(id);
                }
                Ok(())
            })?;
        Ok(ids)
    }

    /// Every generation, oldest first (SPEC.md §8 order), the readable
    /// ones and, apart, those that cannot be read. A generation listed but
    /// gone when loaded was forgotten meanwhile and is left out.
    pub fn list_generations(&self) -> Result<GenerationList> {
        let mut readable = Vec::new();
        let mut damaged = Vec::new();
        for id in self.generation_ids()? {
            match self.load_generation(&id) {
                Ok(g) => readable.push((id, g)),
                Err(Error::ObjectMissing { .. }) => {}
                Err(e) => damaged.push(DamagedGeneration {
                    id,
                    problem: e.to_string(),
                    modified: self
                        .backend
                        .modified(&object_path(BlobType::Generation, &id))
                        .ok()
                        .flatten(),
                }),
            }
        }
        readable.sort_by_key(|a| (a.1.started, committed_ns(&a.1), a.1.finished, a.0));
        damaged.sort_by_key(|d| (d.modified, d.id));
        Ok(GenerationList { readable, damaged })
    }

    /// The readable generations, oldest first; see [`Repository::list_generations`]
    /// for the damaged ones.
    pub fn generations(&self) -> Result<Vec<(ObjectId, Generation)>> {
        Ok(self.list_generations()?.readable)
    }

    /// The id a prefix names (at least 4 hex digits, unique), without
    /// reading the generation: `forget` removes damaged ones by id.
    pub fn resolve_id(&self, spec: &str) -> Result<ObjectId> {
        let s = spec.to_ascii_lowercase();
        if s.len() < 4 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::GenerationNotFound(format!(
                "{spec} (give at least 4 hex digits of its id, `latest` or `latest:NAME`)"
            )));
        }
        let matches: Vec<ObjectId> = self
            .generation_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&s))
            .collect();
        match matches.len() {
            0 => Err(Error::GenerationNotFound(spec.to_string())),
            1 => Ok(matches[0]),
            _ => Err(Error::GenerationAmbiguous {
                prefix: spec.to_string(),
                matches: matches
                    .iter()
                    .map(|m| m.short())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Resolves `spec`: a unique id prefix (at least 4 hex digits),
    /// `latest`, or `latest:SOURCE` (the newest readable generation of a
    /// source). A damaged generation named by its id is an error naming it.
    pub fn resolve_generation(&self, spec: &str) -> Result<(ObjectId, Generation)> {
        self.resolve_generation_noting(spec)
            .map(|(id, g, _)| (id, g))
    }

    /// [`Repository::resolve_generation`], also returning, for `latest`,
    /// the damaged generations that might be newer than the one chosen
    /// (the caller should say so).
    pub fn resolve_generation_noting(
        &self,
        spec: &str,
    ) -> Result<(ObjectId, Generation, Vec<DamagedGeneration>)> {
        if spec == "latest" || spec.starts_with("latest:") {
            let list = self.list_generations()?;
            let (id, g) = list.resolve_latest(spec)?.clone();
            let suspects = list.damaged_since(g.started).into_iter().cloned().collect();
            return Ok((id, g, suspects));
        }
        let id = self.resolve_id(spec)?;
        match self.load_generation(&id) {
            Ok(g) => Ok((id, g, Vec::new())),
            Err(e @ Error::ObjectMissing { .. }) => Err(e),
            Err(e) => Err(Error::GenerationDamaged {
                id: id.short(),
                msg: e.to_string(),
            }),
        }
    }
}

/// A generation that is listed but cannot be read.
#[derive(Clone, Debug)]
pub struct DamagedGeneration {
    pub id: ObjectId,
    /// Why it cannot be read.
    pub problem: String,
    /// Its file's modification time (about its commit time), when known.
    pub modified: Option<i64>,
}

/// The generations of a repository: readable ones in SPEC.md §8 order,
/// and the damaged ones (whose source is unknown).
#[derive(Clone, Debug, Default)]
pub struct GenerationList {
    pub readable: Vec<(ObjectId, Generation)>,
    pub damaged: Vec<DamagedGeneration>,
}

impl GenerationList {
    /// The newest readable generation, of `source` when given.
    pub fn latest(&self, source: Option<&str>) -> Option<&(ObjectId, Generation)> {
        self.readable
            .iter()
            .rev()
            .find(|(_, g)| source.is_none_or(|s| g.source == s))
    }

    /// `latest` or `latest:SOURCE`.
    pub fn resolve_latest(&self, spec: &str) -> Result<&(ObjectId, Generation)> {
        let src = spec.strip_prefix("latest:");
        self.latest(src).ok_or_else(|| {
            let mut what = spec.to_string();
            if !self.damaged.is_empty() {
                what.push_str(&format!(
                    " (among the readable generations; {} cannot be read)",
                    self.damaged.len()
                ));
            }
            Error::GenerationNotFound(what)
        })
    }

    /// Damaged generations that may have been committed after `t` (Unix
    /// seconds): their file is not older, or its time is unknown.
    pub fn damaged_since(&self, t: i64) -> Vec<&DamagedGeneration> {
        self.damaged
            .iter()
            .filter(|d| d.modified.is_none_or(|m| m >= t))
            .collect()
    }

    /// The readable sources (lineages), sorted.
    pub fn sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .readable
            .iter()
            .map(|(_, g)| g.source.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Repository {
    /// Marks a generation protected from `forget` (`protected/<id>`).
    pub fn set_protected(&self, id: &ObjectId, on: bool) -> Result<()> {
        let p = Key::Protected(id).path();
        if on {
            self.backend.put(&p, b"", Durability::Immediate)
        } else {
            self.backend.delete(&p)
        }
    }

    /// Every protected generation id (one listing of `protected/`).
    pub fn protected_ids(&self) -> Result<std::collections::HashSet<ObjectId>> {
        let mut out = std::collections::HashSet::new();
        self.backend.list(&Dir::Protected.path(), &mut |p| {
            out.extend(id_from_path(p));
            Ok(())
        })?;
        Ok(out)
    }

    /// True when the generation is protected.
    pub fn is_protected(&self, id: &ObjectId) -> Result<bool> {
        self.backend.exists(&Key::Protected(id).path())
    }

    /// Removes a generation document (its data stays until garbage
    /// collection). Protected generations are refused.
    pub fn forget_generation(&self, id: &ObjectId) -> Result<()> {
        if self.is_protected(id)? {
            return Err(Error::GenerationProtected(id.short()));
        }
        self.backend.delete(&object_path(BlobType::Generation, id))
    }
}

/// A repository whose config and key slots are read but not yet unlocked
/// ([`Repository::read`]). Invariant: `slots` is `Some` exactly when the
/// config says the repository is encrypted; an error reading them is kept
/// and reported by [`Sealed::unlock`] after the password check, so the
/// errors come in the same order as from [`Repository::open`].
pub struct Sealed {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
    slots: Option<Result<SlotFiles>>,
}

impl Sealed {
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Derives the master key from `password` (Argon2id, the slow part)
    /// and opens the repository. Every readable slot is tried; slots that
    /// cannot be read or refuse their costs are skipped and named
    /// ([`Repository::skipped_key_slots`], or the error when none opens).
    pub fn unlock(self, password: Option<&[u8]>) -> Result<Repository> {
        let Sealed {
            backend,
            config,
            slots,
        } = self;
        let loc = backend.location();
        let Some(slots) = slots else {
            return Ok(Repository {
                codec: Codec::plain(config.zstd_level),
                backend,
                config,
                key: None,
                slot: None,
                skipped: Vec::new(),
            });
        };
        let pw = password.ok_or_else(|| Error::PasswordRequired(loc.clone()))?;
        let (slots, mut skipped) = slots?;
        let mut tried = 0;
        for (name, slot) in slots {
            match slot.open(pw, &config.id) {
                Ok(key) => {
                    return Ok(Repository {
                        codec: Codec::encrypted(&key, config.zstd_level),
                        backend,
                        config,
                        key: Some(key),
                        slot: Some(name),
                        skipped,
                    })
                }
                Err(FormatError::WrongPassword) => tried += 1,
                Err(e) => skipped.push(SkippedSlot {
                    path: Key::KeySlot(&name).path(),
                    problem: e.to_string(),
                }),
            }
        }
        if tried == 0 {
            return Err(Error::NoKeySlots {
                repo: loc,
                skipped: describe_skipped(&skipped),
            });
        }
        Err(Error::WrongPassword {
            repo: loc,
            skipped: if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    " (key slots skipped as unreadable: {})",
                    describe_skipped(&skipped)
                )
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    fn init(dir: &std::path::Path) -> Arc<dyn Backend> {
        let b: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.join("repo")));
        // Defaults (encrypted), with the cheapest key derivation.
        let o = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                lanes: 1,
            },
            label: "test".into(),
            ..InitOptions::default()
        };
        Repository::init(b.clone(), Some(b"pw"), &o).unwrap();
        b
    }

    /// `read` does all the reading: the key slots can vanish before
    /// `unlock` (which is what lets `backup` start its read-ahead in
    /// between without delaying the key files).
    #[test]
    fn read_reads_the_key_slots_and_unlock_only_derives() {
        let d = tempfile::tempdir().unwrap();
        let b = init(d.path());
        let sealed = Repository::read(b.clone()).unwrap();
        assert_eq!(sealed.config().encryption, Encryption::Aes256Gcm);
        std::fs::remove_dir_all(d.path().join("repo/keys")).unwrap();
        let r = sealed.unlock(Some(b"pw")).unwrap();
        assert!(r.slot.is_some());
    }

    /// Errors come in `open`'s order: a missing password before unreadable
    /// key slots, a wrong password named as such.
    #[test]
    fn unlock_reports_errors_in_opens_order() {
        let d = tempfile::tempdir().unwrap();
        let b = init(d.path());
        let wrong = Repository::read(b.clone()).unwrap().unlock(Some(b"nope"));
        assert!(
            matches!(wrong, Err(Error::WrongPassword { .. })),
            "{:?}",
            wrong.err()
        );
        std::fs::remove_dir_all(d.path().join("repo/keys")).unwrap();
        std::fs::create_dir(d.path().join("repo/keys")).unwrap();
        let no_pw = Repository::read(b.clone()).unwrap().unlock(None);
        assert!(
            matches!(no_pw, Err(Error::PasswordRequired(_))),
            "{:?}",
            no_pw.err()
        );
        let no_slots = Repository::read(b).unwrap().unlock(Some(b"pw"));
        match no_slots {
            Err(e) => assert!(e.to_string().contains("no usable key slot"), "{e}"),
            Ok(_) => panic!("opened without key slots"),
        }
    }

    /// Issue 13 item 4: a damaged slot file or a stray file in `keys/` is
    /// skipped and named; the other slots still open the repository, and
    /// only when none opens does the error come (naming what was skipped).
    #[test]
    fn damaged_and_stray_key_files_are_skipped_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let b = init(d.path());
        let r = Repository::open(b.clone(), Some(b"pw")).unwrap();
        let second = r
            .key_add(
                b"pw2",
                KdfParams {
                    memory_kib: 64,
                    iterations: 1,
                    lanes: 1,
                },
                "t".into(),
            )
            .unwrap();
        let keys = d.path().join("repo/keys");
        std::fs::write(keys.join("README"), b"these are vmkeep key slots\n").unwrap();
        // Flip a byte in the middle of the second slot.
        let p = keys.join(&second);
        let mut raw = std::fs::read(&p).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x40;
        std::fs::write(&p, &raw).unwrap();
        let r = Repository::open(b.clone(), Some(b"pw")).unwrap();
        let mut skipped: Vec<_> = r
            .skipped_key_slots()
            .iter()
            .map(|s| s.path.clone())
            .collect();
        skipped.sort();
        let mut want = vec![format!("keys/{second}"), "keys/README".to_string()];
        want.sort();
        assert_eq!(skipped, want);
        match Repository::open(b.clone(), Some(b"pw2")) {
            Err(e @ Error::WrongPassword { .. }) => {
                let m = e.to_string();
                assert!(m.contains("keys/README") && m.contains(&second), "{m}");
            }
            other => panic!("{:?}", other.err()),
        }
        // Only unreadable files left: no usable slot, naming them.
        for e in std::fs::read_dir(&keys).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "README" && e.file_name() != second.as_str() {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        match Repository::open(b, Some(b"pw")) {
            Err(e @ Error::NoKeySlots { .. }) => {
                assert!(e.to_string().contains("keys/README"), "{e}")
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
