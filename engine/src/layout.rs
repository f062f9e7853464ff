//! The object layout (SPEC.md §2): every kind of object a repository
//! stores and its *key*, the one place where object names are made.
//!
//! Nouns: a [`Key`] names one object (config, key slot, chunk, manifest
//! page, manifest, generation, protection mark, lock, quarantined object,
//! trashed object, trash log); a [`Dir`] names a group of them to list. A
//! key is relative: the local backend stores it at `<root>/<key>`
//! ([`local_path`]), an object store at `<prefix><key>` ([`store_key`]).
//!
//! Invariants: keys use `/`, never start or end with it, and have no empty
//! component; objects of different kinds live under different top-level
//! directories, so two kinds never share a key even for the same id; a
//! name starting with [`TEMP_PREFIX`] is an incomplete write, never an
//! object. Pure: no I/O, so every module may use it.

use std::fmt;
use std::path::{Path, PathBuf};

use vmkeep_format::blob::BlobType;
use vmkeep_format::ObjectId;

/// Names starting with this are incomplete writes (SPEC.md §2).
pub const TEMP_PREFIX: &str = ".tmp-";

/// One object of the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// `config`: the repository parameters.
    Config,
    /// `keys/<16 hex>`: one key slot.
    KeySlot(&'a str),
    /// A blob: `chunks/<2 hex>/<id>`, `pages/<2 hex>/<id>`,
    /// `manifests/<id>` or `generations/<id>`.
    Blob(BlobType, &'a ObjectId),
    /// `protected/<id>`: the generation is protected from `forget`.
    Protected(&'a ObjectId),
    /// `locks/<16 hex>`: one lock file.
    Lock(&'a str),
    /// `quarantine/<key>`: a damaged object moved aside by verify.
    Quarantined(&'a str),
    /// `trash/<batch>/<key>`: an object gc batch `batch` moved aside.
    Trashed { batch: &'a str, key: &'a str },
    /// `trashlog/<batch>`: the record of gc batch `batch`.
    TrashLog(&'a str),
}

impl Key<'_> {
    /// The object's relative key.
    pub fn path(&self) -> String {
        match *self {
            Key::Config => "config".into(),
            Key::KeySlot(slot) => format!("keys/{slot}"),
            Key::Blob(ty, id) => {
                let h = id.to_hex();
                match ty {
                    BlobType::Chunk | BlobType::ManifestPage => {
                        format!("{}/{}/{h}", object_dir(ty), &h[..2])
                    }
                    BlobType::Manifest | BlobType::Generation => {
                        format!("{}/{h}", object_dir(ty))
                    }
                }
            }
            Key::Protected(id) => format!("protected/{}", id.to_hex()),
            Key::Lock(name) => format!("locks/{name}"),
            Key::Quarantined(key) => format!("quarantine/{key}"),
            Key::Trashed { batch, key } => format!("trash/{batch}/{key}"),
            Key::TrashLog(batch) => format!("trashlog/{batch}"),
        }
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A group of objects, listed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir<'a> {
    /// Everything (`init` checks that the location is empty).
    Root,
    /// `keys/`.
    KeySlots,
    /// Every blob of a type (`chunks/`, `pages/`, ...).
    Blobs(BlobType),
    /// One fan-out directory of chunks or pages (`chunks/ab/`).
    Shard(BlobType, u8),
    /// `protected/`.
    Protected,
    /// `locks/`.
    Locks,
    /// The quarantined blobs of a type (`quarantine/chunks/`).
    Quarantined(BlobType),
    /// `trashlog/`: one record per gc batch.
    TrashLogs,
    /// `trash/`: every trashed object.
    Trash,
    /// A directory of blobs inside a gc batch (`trash/<T>/chunks/ab/`).
    Trashed { batch: &'a str, dir: &'a Dir<'a> },
}

impl Dir<'_> {
    /// The directory's relative key prefix, without a trailing `/`
    /// (empty for [`Dir::Root`]).
    pub fn path(&self) -> String {
        match *self {
            Dir::Root => String::new(),
            Dir::KeySlots => "keys".into(),
            Dir::Blobs(ty) => object_dir(ty).into(),
            Dir::Shard(ty, b) => format!("{}/{b:02x}", object_dir(ty)),
            Dir::Protected => "protected".into(),
            Dir::Locks => "locks".into(),
            Dir::Quarantined(ty) => format!("quarantine/{}", object_dir(ty)),
            Dir::TrashLogs => "trashlog".into(),
            Dir::Trash => "trash".into(),
            Dir::Trashed { batch, dir } => format!("trash/{batch}/{}", dir.path()),
        }
    }
}

impl fmt::Display for Dir<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Key of the blob of type `ty` with id `id`.
pub fn object_path(ty: BlobType, id: &ObjectId) -> String {
    Key::Blob(ty, id).path()
}

/// Top-level directory of the blobs of type `ty`.
pub fn object_dir(ty: BlobType) -> &'static str {
    match ty {
        BlobType::Chunk => "chunks",
        BlobType::ManifestPage => "pages",
        BlobType::Manifest => "manifests",
        BlobType::Generation => "generations",
    }
}

/// The directories that hold blobs of `ty`, each listed on its own so a
/// sweep holds one directory's names at a time: the 256 fan-out
/// directories of chunks and pages, the one directory of the others.
pub fn shards(ty: BlobType) -> Vec<Dir<'static>> {
    match ty {
        BlobType::Chunk | BlobType::ManifestPage => {
            (0..=255u8).map(|b| Dir::Shard(ty, b)).collect()
        }
        _ => vec![Dir::Blobs(ty)],
    }
}

/// The last component of a key (its name).
pub fn name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The id a key ends in, if its name is one.
pub fn id_from_path(key: &str) -> Option<ObjectId> {
    ObjectId::from_hex(name_of(key)).ok()
}

/// The type and id of a blob key ([`Key::Blob`]), if `key` is one.
pub fn blob_of(key: &str) -> Option<(BlobType, ObjectId)> {
    let dir = key.split('/').next()?;
    let ty = [
        BlobType::Chunk,
        BlobType::ManifestPage,
        BlobType::Manifest,
        BlobType::Generation,
    ]
    .into_iter()
    .find(|t| object_dir(*t) == dir)?;
    let id = id_from_path(key)?;
    (object_path(ty, &id) == key).then_some((ty, id))
}

/// The key a [`Key::Trashed`] key of `batch` holds the object of.
pub fn untrashed<'a>(batch: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix("trash/")?
        .strip_prefix(batch)?
        .strip_prefix('/')
}

/// True for the name of an incomplete write.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Where the local backend rooted at `root` keeps `key` (a [`Dir`] path
/// too; the empty key is the root itself).
pub fn local_path(root: &Path, key: &str) -> PathBuf {
    debug_assert!(!key.starts_with('/'), "keys are relative: {key:?}");
    if key.is_empty() {
        root.to_path_buf()
    } else {
        root.join(key)
    }
}

/// The object-store key of `key` in a repository at `prefix` (empty, or
/// ending in `/`).
pub fn store_key(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

/// The object-store prefix that lists `dir` of a repository at `prefix`:
/// with a trailing `/`, so `chunks` never lists `chunks2/...`.
pub fn store_prefix(prefix: &str, dir: &str) -> String {
    if dir.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}{}/", dir.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_spec_path() {
        let id = ObjectId([0xab; 32]);
        let h = "ab".repeat(32);
        let cases = [
            (Key::Config, "config".to_string()),
            (
                Key::KeySlot("0123456789abcdef"),
                "keys/0123456789abcdef".into(),
            ),
            (Key::Blob(BlobType::Chunk, &id), format!("chunks/ab/{h}")),
            (
                Key::Blob(BlobType::ManifestPage, &id),
                format!("pages/ab/{h}"),
            ),
            (Key::Blob(BlobType::Manifest, &id), format!("manifests/{h}")),
            (
                Key::Blob(BlobType::Generation, &id),
                format!("generations/{h}"),
            ),
            (Key::Protected(&id), format!("protected/{h}")),
            (Key::Lock("00ff"), "locks/00ff".into()),
            (
                Key::Quarantined("manifests/x"),
                "quarantine/manifests/x".into(),
            ),
            (
                Key::Trashed {
                    batch: "17",
                    key: "chunks/ab/x",
                },
                "trash/17/chunks/ab/x".into(),
            ),
            (Key::TrashLog("17"), "trashlog/17".into()),
        ];
        for (k, want) in cases {
            assert_eq!(k.path(), want, "{k:?}");
            assert_eq!(k.to_string(), want);
        }
    }

    #[test]
    fn dirs_are_the_prefixes_of_their_keys() {
        let id = ObjectId([0x07; 32]);
        for ty in [
            BlobType::Chunk,
            BlobType::ManifestPage,
            BlobType::Manifest,
            BlobType::Generation,
        ] {
            let k = object_path(ty, &id);
            assert!(k.starts_with(&format!("{}/", Dir::Blobs(ty))), "{k}");
            let shard = shards(ty)
                .into_iter()
                .filter(|d| k.starts_with(&format!("{d}/")))
                .count();
            assert_eq!(shard, 1, "{k} is in exactly one shard");
            assert_eq!(blob_of(&k), Some((ty, id)));
            let t = Key::Trashed {
                batch: "5",
                key: &k,
            }
            .path();
            let d = Dir::Trashed {
                batch: "5",
                dir: &Dir::Blobs(ty),
            };
            assert!(t.starts_with(&format!("{d}/")), "{t}");
            assert_eq!(untrashed("5", &t), Some(k.as_str()));
            assert_eq!(untrashed("50", &t), None);
            let q = Key::Quarantined(&k).path();
            assert!(q.starts_with(&format!("{}/", Dir::Quarantined(ty))), "{q}");
        }
        assert_eq!(shards(BlobType::Chunk).len(), 256);
        assert_eq!(Dir::Root.path(), "");
    }

    #[test]
    fn keys_parse_back_only_when_well_formed() {
        let id = ObjectId([0x11; 32]);
        assert_eq!(id_from_path(&object_path(BlobType::Chunk, &id)), Some(id));
        assert_eq!(id_from_path("chunks/11/not-hex"), None);
        // A chunk id under the wrong fan-out directory, or a page path
        // under chunks/, is not a blob key.
        let h = id.to_hex();
        assert_eq!(blob_of(&format!("chunks/22/{h}")), None);
        assert_eq!(blob_of(&format!("manifests/11/{h}")), None);
        assert_eq!(blob_of(&format!("locks/{h}")), None);
        assert_eq!(name_of("a/b/c"), "c");
        assert_eq!(name_of("config"), "config");
        assert!(is_temporary(".tmp-0011"));
        assert!(!is_temporary("0011"));
    }

    #[test]
    fn local_paths_and_store_keys_share_the_relative_key() {
        let k = Key::Lock("ab").path();
        assert_eq!(
            local_path(Path::new("/r"), &k),
            PathBuf::from("/r/locks/ab")
        );
        assert_eq!(local_path(Path::new("/r"), ""), PathBuf::from("/r"));
        assert_eq!(store_key("backups/vm1/", &k), "backups/vm1/locks/ab");
        assert_eq!(store_prefix("p/", "chunks"), "p/chunks/");
        assert_eq!(store_prefix("p/", ""), "p/");
    }
}
