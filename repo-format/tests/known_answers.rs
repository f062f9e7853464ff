//! Known-answer vectors: fixed keys, nonces and inputs must encode to the
//! exact bytes checked in under `tests/vectors/`, and those bytes must decode
//! back. A change to the on-disk format makes these tests fail.
//!
//! The vectors were written once by `write_vectors` below
//! (`VMKEEP_WRITE_VECTORS=1 cargo test -p vmkeep-format --test known_answers
//! -- --ignored write_vectors`) and cross-checked by the independent Python
//! implementation in `tests/vectors/check_vectors.py`. Compressed vectors pin
//! the output of the zstd library too: if a zstd upgrade alone changes them,
//! `*_still_decode` still passes and they may be regenerated with care.

use std::path::PathBuf;

use vmkeep_format::blob::{self, BlobType, Codec};
use vmkeep_format::config::{Encryption, RepoConfig};
use vmkeep_format::generation::{DiskRef, Generation, SourceKind};
use vmkeep_format::keyfile::{KdfParams, KeySlot};
use vmkeep_format::manifest::{Manifest, ManifestPage, ManifestStats};
use vmkeep_format::{FormatError, MasterKey, ObjectId};

/// The fixed master key: bytes 0, 1, ..., 63.
fn master_key() -> MasterKey {
    let mut b = [0u8; 64];
    for (i, v) in b.iter_mut().enumerate() {
        *v = i as u8;
    }
    MasterKey::from_bytes(b)
}

/// Fixed nonce number `n`: twelve bytes `n, n+1, ..., n+11`.
fn nonce(n: u8) -> [u8; 12] {
    let mut a = [0u8; 12];
    for (i, v) in a.iter_mut().enumerate() {
        *v = n.wrapping_add(i as u8);
    }
    a
}

/// Repository id of the config and key-slot vectors: bytes 0xa0..0xb0.
const REPO_ID: [u8; 16] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];
const PASSWORD: &[u8] = b"correct horse battery staple";

/// 2 KiB of highly compressible text.
fn compressible() -> Vec<u8> {
    b"vmkeep known-answer chunk 0123456789\n".repeat(56)
}

/// 300 bytes that zstd cannot shrink: BLAKE3 XOF output of a fixed seed.
fn incompressible() -> Vec<u8> {
    let mut out = vec![0u8; 300];
    blake3::Hasher::new()
        .update(b"vmkeep kat incompressible")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn page() -> ManifestPage {
    ManifestPage {
        entries: vec![
            ObjectId([0x11; 32]),
            ObjectId::ZERO,
            ObjectId([0x22; 32]),
            ObjectId::ZERO,
        ],
    }
}

fn manifest() -> Manifest {
    // 11 slots of 64 KiB (the last one 100 bytes), 4 entries per page:
    // 3 pages, the last holding 3 entries.
    Manifest {
        disk_name: "web01/disk0.vmdk".into(),
        capacity: 10 * 65536 + 100,
        chunk_size: 65536,
        entries_per_page: 4,
        pages: vec![
            ObjectId([0x31; 32]),
            ObjectId([0x32; 32]),
            ObjectId([0x33; 32]),
        ],
        stats: ManifestStats {
            data_slots: 7,
            zero_slots: 4,
            reused_slots: 2,
            read_bytes: 9 * 65536 + 100,
            new_chunks: 5,
            new_plain_bytes: 5 * 65536,
            new_stored_bytes: 123_456,
            dedup_chunks: 1,
        },
        change_id: "52 aa bb cc dd ee ff 00-11 22 33 44 55 66 77 88/7".into(),
    }
}

fn generation() -> Generation {
    Generation {
        source_kind: SourceKind::Vm,
        source: "web01".into(),
        hostname: "backup-host".into(),
        started: 1_700_000_000,
        finished: 1_700_000_095,
        utc_offset: 3600,
        parent: Some(ObjectId([0x44; 32])),
        disks: vec![
            DiskRef {
                name: "disk0".into(),
                manifest: ObjectId([0x55; 32]),
                capacity: 10 * 65536 + 100,
                chunk_size: 65536,
                data_bytes: 7 * 65536,
                new_stored_bytes: 123_456,
            },
            DiskRef {
                name: "disk1 (données)".into(),
                manifest: ObjectId([0x66; 32]),
                capacity: 1 << 30,
                chunk_size: 1 << 20,
                data_bytes: 0,
                new_stored_bytes: 0,
            },
        ],
        metadata: vec![
            ("vm.config".into(), b"<VirtualMachineConfigInfo/>".to_vec()),
            ("note".into(), vec![0, 1, 2, 0xff]),
        ],
        writer: "vmkeep 0.1.0".into(),
    }
}

fn config() -> RepoConfig {
    RepoConfig {
        id: REPO_ID,
        created: 1_700_000_000,
        encryption: Encryption::Aes256Gcm,
        chunk_size: 1 << 20,
        zstd_level: 3,
    }
}

fn enc() -> Codec {
    Codec::encrypted(&master_key(), 3)
}

/// One blob vector: file name, codec, type, plaintext, nonce.
struct BlobCase {
    file: &'static str,
    codec: Codec,
    ty: BlobType,
    plain: Vec<u8>,
    nonce: [u8; 12],
}

fn blob_cases() -> Vec<BlobCase> {
    vec![
        BlobCase {
            file: "chunk_compressible_encrypted.hex",
            codec: enc(),
            ty: BlobType::Chunk,
            plain: compressible(),
            nonce: nonce(0x10),
        },
        BlobCase {
            file: "chunk_incompressible_encrypted.hex",
            codec: enc(),
            ty: BlobType::Chunk,
            plain: incompressible(),
            nonce: nonce(0x20),
        },
        BlobCase {
            file: "chunk_unencrypted.hex",
            codec: Codec::plain(3),
            ty: BlobType::Chunk,
            plain: compressible(),
            nonce: nonce(0x30),
        },
        BlobCase {
            file: "manifest_page_blob.hex",
            codec: enc(),
            ty: BlobType::ManifestPage,
            plain: page().encode(),
            nonce: nonce(0x40),
        },
        BlobCase {
            file: "manifest_blob.hex",
            codec: enc(),
            ty: BlobType::Manifest,
            plain: manifest().encode(),
            nonce: nonce(0x50),
        },
        BlobCase {
            file: "generation_blob.hex",
            codec: enc(),
            ty: BlobType::Generation,
            plain: generation().encode(),
            nonce: nonce(0x60),
        },
    ]
}

fn vector_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file)
}

/// Reads a checked-in vector: lowercase hex, whitespace ignored.
fn vector(file: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(vector_path(file))
        .unwrap_or_else(|e| panic!("reading vector {file}: {e}"));
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(digits).unwrap_or_else(|e| panic!("vector {file} is not hex: {e}"))
}

/// Asserts `actual` equals the checked-in vector `file`, byte for byte.
fn assert_vector(file: &str, actual: &[u8]) {
    let want = vector(file);
    assert!(
        want == actual,
        "{file}: encoding changed\n want {}\n  got {}",
        hex::encode(&want),
        hex::encode(actual)
    );
}

#[test]
fn blob_vectors_match_and_decode() {
    for c in blob_cases() {
        let id = c.codec.id(&c.plain);
        let bytes = c.codec.encode_with_nonce(c.ty, &id, &c.plain, c.nonce);
        assert_vector(c.file, &bytes);
        let stored = vector(c.file);
        assert_eq!(
            c.codec.decode(c.ty, &id, &stored).as_deref(),
            Ok(&c.plain[..]),
            "{}",
            c.file
        );
        let h = blob::check(&stored).unwrap();
        assert_eq!(h.ty, c.ty, "{}", c.file);
        assert_eq!(h.plain_len, c.plain.len(), "{}", c.file);
        assert_eq!(h.payload_len, stored.len() - 64, "{}", c.file);
    }
}

#[test]
fn blob_vector_headers() {
    // flags byte (offset 10): bit 0 compressed, bit 1 encrypted.
    let flags = |f: &str| vector(f)[10];
    assert_eq!(flags("chunk_compressible_encrypted.hex"), 0b11);
    assert_eq!(flags("chunk_incompressible_encrypted.hex"), 0b10);
    assert_eq!(flags("chunk_unencrypted.hex"), 0b01);
    for c in blob_cases() {
        let b = vector(c.file);
        assert_eq!(hex::encode(&b[..8]), "cecbf068de7a7552", "{}", c.file);
        assert_eq!(b[8], 1, "version of {}", c.file);
        assert_eq!(b[9], c.ty as u8, "type of {}", c.file);
        assert_eq!(b[11], 0, "reserved byte of {}", c.file);
        let want_nonce = if c.codec.is_encrypted() {
            c.nonce
        } else {
            [0; 12]
        };
        assert_eq!(b[20..32], want_nonce, "nonce of {}", c.file);
    }
    // Incompressible data is stored as is: payload = plaintext + 16-byte tag.
    let b = vector("chunk_incompressible_encrypted.hex");
    assert_eq!(b.len(), 32 + 300 + 16 + 32);
}

/// Object ids computed independently with the Python `blake3` package
/// (`tests/vectors/check_vectors.py`, which also rebuilds the stored
/// encrypted chunk byte for byte and unwraps the key slot with Python's
/// Argon2id and AES-GCM), pinning the id rule of SPEC.md §5.3.
#[test]
fn ids_match_independent_implementation() {
    let keyed = enc().id(&compressible());
    assert_eq!(keyed.to_hex(), KEYED_ID_COMPRESSIBLE);
    let unkeyed = Codec::plain(3).id(&compressible());
    assert_eq!(unkeyed.to_hex(), UNKEYED_ID_COMPRESSIBLE);
    let keyed = enc().id(&incompressible());
    assert_eq!(keyed.to_hex(), KEYED_ID_INCOMPRESSIBLE);
}

const KEYED_ID_COMPRESSIBLE: &str =
    "1dfae7d61101e8d18e40f406c65dfba1a23e079bbd1a742bab098ca09e7ba5ee";
const UNKEYED_ID_COMPRESSIBLE: &str =
    "a93d2f93396ba94603409ccd95d888b25a7d53790f179a193fdf7e1f7bb60ca2";
const KEYED_ID_INCOMPRESSIBLE: &str =
    "5b64bd908e8069f1787a4d95f814777b36b913e91b70d46cb5fba9ce0256b548";

#[test]
fn document_vectors_match_and_decode() {
    assert_vector("manifest_page.hex", &page().encode());
    assert_eq!(
        ManifestPage::decode(&vector("manifest_page.hex")),
        Ok(page())
    );

    assert_vector("manifest.hex", &manifest().encode());
    let m = Manifest::decode(&vector("manifest.hex")).unwrap();
    assert_eq!(m, manifest());
    assert_eq!(m.slot_count(), 11);
    assert_eq!(m.page_len(2), 3);
    assert_eq!(m.slot_len(10), 100);

    assert_vector("generation.hex", &generation().encode());
    assert_eq!(
        Generation::decode(&vector("generation.hex")),
        Ok(generation())
    );

    assert_vector("config.hex", &config().encode());
    assert_eq!(RepoConfig::decode(&vector("config.hex")), Ok(config()));
}

#[test]
fn document_vector_headers() {
    let want = [
        ("manifest_page.hex", "624f99dbb6745606"),
        ("manifest.hex", "12603ce500270957"),
        ("generation.hex", "655e7a03de3856f1"),
        ("config.hex", "90f5585c57c56921"),
        ("keyslot.hex", "1ebe4eb58ba154e7"),
    ];
    for (file, magic) in want {
        let b = vector(file);
        assert_eq!(hex::encode(&b[..8]), magic, "magic of {file}");
        assert_eq!(b[8..10], [1, 0], "version of {file}");
    }
    // Sealed files end with the unkeyed BLAKE3 of everything before.
    for file in ["config.hex", "keyslot.hex"] {
        let b = vector(file);
        let (body, sum) = b.split_at(b.len() - 32);
        assert_eq!(blake3::hash(body).as_bytes(), sum, "seal of {file}");
    }
}

fn kat_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    }
}

#[test]
fn keyslot_vector_opens() {
    let bytes = vector("keyslot.hex");
    let slot = KeySlot::decode(&bytes).unwrap();
    assert_eq!(
        slot.encode(),
        bytes,
        "key slot re-encodes to the same bytes"
    );
    assert_eq!(slot.kdf, kat_kdf());
    assert_eq!(slot.created, 1_700_000_000);
    assert_eq!(slot.label, "kat@vmkeep");
    let key = slot.open(PASSWORD, &REPO_ID).unwrap();
    assert_eq!(key.as_bytes(), master_key().as_bytes());
    assert_eq!(
        slot.open(b"correct horse battery stapler", &REPO_ID).err(),
        Some(FormatError::WrongPassword)
    );
    assert_eq!(
        slot.open(b"", &REPO_ID).err(),
        Some(FormatError::WrongPassword)
    );
    // Bound to its repository: the same password fails for another repo id.
    let mut other = REPO_ID;
    other[15] ^= 1;
    assert_eq!(
        slot.open(PASSWORD, &other).err(),
        Some(FormatError::WrongPassword)
    );
}

/// Writes every vector. Run once, review, check in; never in CI.
#[test]
#[ignore = "writes tests/vectors; run by hand with VMKEEP_WRITE_VECTORS=1"]
fn write_vectors() {
    if std::env::var_os("VMKEEP_WRITE_VECTORS").is_none() {
        eprintln!("set VMKEEP_WRITE_VECTORS=1 to overwrite tests/vectors");
        return;
    }
    let write = |file: &str, bytes: &[u8]| {
        std::fs::write(vector_path(file), format!("{}\n", hex::encode(bytes))).unwrap();
    };
    for c in blob_cases() {
        let id = c.codec.id(&c.plain);
        write(
            c.file,
            &c.codec.encode_with_nonce(c.ty, &id, &c.plain, c.nonce),
        );
    }
    write("manifest_page.hex", &page().encode());
    write("manifest.hex", &manifest().encode());
    write("generation.hex", &generation().encode());
    write("config.hex", &config().encode());
    let slot = KeySlot::create(
        &master_key(),
        PASSWORD,
        &REPO_ID,
        kat_kdf(),
        "kat@vmkeep".into(),
        1_700_000_000,
    )
    .unwrap();
    write("keyslot.hex", &slot.encode());
}
