//! The blob: the stored form of every object except `config` and key files.
//!
//! ```text
//! offset size  field
//!      0    8  magic = magic("blob")
//!      8    1  version = 1
//!      9    1  type (1 chunk, 2 manifest page, 3 manifest, 4 generation)
//!     10    1  flags (bit 0: zstd-compressed, bit 1: AES-256-GCM-encrypted)
//!     11    1  reserved, 0
//!     12    4  plaintext length, u32 LE
//!     16    4  payload length N, u32 LE
//!     20   12  nonce (zero when not encrypted)
//!     32    N  payload
//!   32+N   32  checksum: BLAKE3 of bytes [0, 32+N)
//! ```
//! Encryption: AES-256-GCM under the data key with the nonce above; the
//! associated data is the 32 header bytes followed by the object's id, so a
//! blob cannot be moved to another id, type or length. The payload is the
//! zstd frame when that is smaller than the plaintext, else the plaintext.
//! Invariant: every decode returns the plaintext only after the checksum,
//! the authentication tag (when encrypted) and the id have all been
//! verified.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use crate::{keys::IdHasher, magic, FormatError, ObjectId};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Length of the AES-GCM authentication tag at the end of an encrypted payload.
const TAG_LEN: usize = 16;
/// Length of the trailing checksum.
pub const CHECKSUM_LEN: usize = 32;
/// Current blob version.
pub const VERSION: u8 = 1;
/// Largest plaintext a blob may hold (64 MiB).
pub const MAX_PLAINTEXT: usize = 64 << 20;

const FLAG_COMPRESSED: u8 = 1;
const FLAG_ENCRYPTED: u8 = 2;
const KIND: &str = "blob";

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobType {
    Chunk = 1,
    ManifestPage = 2,
    Manifest = 3,
    Generation = 4,
}

impl BlobType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => BlobType::Chunk,
            2 => BlobType::ManifestPage,
            3 => BlobType::Manifest,
            4 => BlobType::Generation,
            _ => return None,
        })
    }
    /// Lower-case name used in messages and paths.
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Chunk => "chunk",
            BlobType::ManifestPage => "manifest page",
            BlobType::Manifest => "manifest",
            BlobType::Generation => "generation",
        }
    }
}

/// How to encode: the id hasher plus, for an encrypted repository, the data key.
#[derive(Clone)]
pub struct Codec {
    pub ids: IdHasher,
    cipher: Option<Aes256Gcm>,
    /// zstd level; 0 (or less) disables compression.
    pub level: i32,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("encrypted", &self.cipher.is_some())
            .field("level", &self.level)
            .finish()
    }
}

impl Codec {
    /// Codec of an encrypted repository.
    pub fn encrypted(key: &crate::MasterKey, level: i32) -> Self {
        Codec {
            ids: IdHasher::Keyed(key.id_key()),
            cipher: Some(Aes256Gcm::new(&key.data_key().into())),
            level,
        }
    }
    /// Codec of an unencrypted repository.
    pub fn plain(level: i32) -> Self {
        Codec {
            ids: IdHasher::Unkeyed,
            cipher: None,
            level,
        }
    }
    /// True when blobs are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The id of a plaintext.
    pub fn id(&self, plaintext: &[u8]) -> ObjectId {
        self.ids.id(plaintext)
    }

    /// Encodes with a fresh random nonce.
    pub fn encode(&self, ty: BlobType, id: &ObjectId, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        if self.cipher.is_some() {
            getrandom::getrandom(&mut nonce).expect("operating system random source failed");
        }
        self.encode_with_nonce(ty, id, plaintext, nonce)
    }

    /// Encodes with a given nonce (known-answer tests; never reuse a nonce).
    pub fn encode_with_nonce(
        &self,
        ty: BlobType,
        id: &ObjectId,
        plaintext: &[u8],
        nonce: [u8; 12],
    ) -> Vec<u8> {
        assert!(plaintext.len() <= MAX_PLAINTEXT, "blob plaintext too large");
        // SPEC.md §6: compression is enabled only for levels > 0.
        let compressed = if self.level > 0 && !plaintext.is_empty() {
            zstd::bulk::compress(plaintext, self.level)
                .ok()
                .filter(|c| c.len() < plaintext.len())
        } else {
            None
        };
        let mut flags = 0u8;
        let body: &[u8] = match &compressed {
            Some(c) => {
                flags |= FLAG_COMPRESSED;
                c
            }
            None => plaintext,
        };
        let nonce = if self.cipher.is_some() {
            flags |= FLAG_ENCRYPTED;
            nonce
        } else {
            [0u8; 12]
        };
        let payload_len = body.len() + if self.cipher.is_some() { 16 } else { 0 };
        let mut out = Vec::with_capacity(HEADER_LEN + payload_len + CHECKSUM_LEN);
        out.extend_from_slice(&magic::magic(magic::BLOB));
        out.extend_from_slice(&[VERSION, ty as u8, flags, 0]);
        out.extend_from_slice(&(plaintext.len() as u32).to_le_bytes());
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&nonce);
        match &self.cipher {
            Some(c) => {
                // Encrypted in place, right where the payload goes.
                let aad = aad(&out[..HEADER_LEN], id);
                out.extend_from_slice(body);
                let tag = c
                    .encrypt_inout_detached(
                        &Nonce::from(nonce),
                        &aad,
                        (&mut out[HEADER_LEN..]).into(),
                    )
                    .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
                out.extend_from_slice(&tag);
            }
            None => out.extend_from_slice(body),
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Verifies and decodes a blob stored under `id`, returning its plaintext.
    pub fn decode(&self, ty: BlobType, id: &ObjectId, blob: &[u8]) -> Result<Vec<u8>, FormatError> {
        let mut work = blob.to_vec();
        let mut out = Vec::new();
        self.decode_into(ty, id, &mut work, &mut Decoder::new(), &mut out)?;
        Ok(out)
    }

    /// Verifies and decodes a blob into `out` (cleared first), reusing the
    /// decoder's zstd context and the caller's buffers. The blob is
    /// decrypted in place, so `blob` holds garbage afterwards.
    pub fn decode_into(
        &self,
        ty: BlobType,
        id: &ObjectId,
        blob: &mut [u8],
        decoder: &mut Decoder,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        out.clear();
        let r = self.decode_to(ty, id, blob, decoder, Out::Vec(out));
        if r.is_err() {
            out.clear(); // never leave unverified bytes behind
        }
        r.map(|_| ())
    }

    /// Like [`Codec::decode_into`], into the front of a caller's slice (an
    /// aligned buffer for direct I/O, say); returns the plaintext length.
    /// A plaintext longer than `out` is an error. On error the contents of
    /// `out` are unspecified and must not be used.
    pub fn decode_into_slice(
        &self,
        ty: BlobType,
        id: &ObjectId,
        blob: &mut [u8],
        decoder: &mut Decoder,
        out: &mut [u8],
    ) -> Result<usize, FormatError> {
        self.decode_to(ty, id, blob, decoder, Out::Slice(out))
    }

    fn decode_to(
        &self,
        ty: BlobType,
        id: &ObjectId,
        blob: &mut [u8],
        decoder: &mut Decoder,
        mut out: Out<'_>,
    ) -> Result<usize, FormatError> {
        let h = check(blob)?;
        if h.ty != ty {
            return Err(FormatError::malformed(
                KIND,
                format!("holds a {} where a {} was expected", h.ty.name(), ty.name()),
            ));
        }
        let kind = ty.name();
        if let Out::Slice(s) = &out {
            if s.len() < h.plain_len {
                return Err(FormatError::malformed(
                    kind,
                    format!(
                        "plaintext of {} bytes exceeds the {}-byte buffer",
                        h.plain_len,
                        s.len()
                    ),
                ));
            }
        }
        let payload_end = HEADER_LEN + h.payload_len;
        let body: &[u8] = if h.encrypted {
            let c = self
                .cipher
                .as_ref()
                .ok_or(FormatError::KeyRequired { kind })?;
            if h.payload_len < TAG_LEN {
                return Err(FormatError::DecryptFailed { kind });
            }
            let aad = aad(&blob[..HEADER_LEN], id);
            let (ct, tag) = blob[HEADER_LEN..payload_end].split_at_mut(h.payload_len - TAG_LEN);
            let tag = Tag::try_from(&tag[..]).map_err(|_| FormatError::DecryptFailed { kind })?;
            c.decrypt_inout_detached(&Nonce::from(h.nonce), &aad, ct.into(), &tag)
                .map_err(|_| FormatError::DecryptFailed { kind })?;
            &blob[HEADER_LEN..payload_end - TAG_LEN]
        } else {
            if self.cipher.is_some() {
                return Err(FormatError::malformed(
                    kind,
                    "is not encrypted in an encrypted repository",
                ));
            }
            &blob[HEADER_LEN..payload_end]
        };
        let n = if h.compressed {
            let r = match &mut out {
                Out::Vec(v) => {
                    v.reserve(h.plain_len);
                    decoder.zstd.decompress_to_buffer(body, *v)
                }
                Out::Slice(s) => decoder
                    .zstd
                    .decompress_to_buffer(body, &mut s[..h.plain_len]),
            };
            let n = r.map_err(|e| FormatError::Decompress {
                kind,
                what: e.to_string(),
            })?;
            if n != h.plain_len {
                return Err(FormatError::malformed(
                    kind,
                    format!("decompressed to {n} bytes, header says {}", h.plain_len),
                ));
            }
            n
        } else {
            if body.len() != h.plain_len {
                return Err(FormatError::malformed(
                    kind,
                    format!(
                        "payload is {} bytes, header says {}",
                        body.len(),
                        h.plain_len
                    ),
                ));
            }
            match &mut out {
                Out::Vec(v) => v.extend_from_slice(body),
                Out::Slice(s) => s[..body.len()].copy_from_slice(body),
            }
            body.len()
        };
        let plain: &[u8] = match &out {
            Out::Vec(v) => v,
            Out::Slice(s) => &s[..n],
        };
        let actual = self.id(plain);
        if actual != *id {
            return Err(FormatError::IdMismatch {
                kind,
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(n)
    }
}

/// Where a decode puts the plaintext.
enum Out<'a> {
    /// Appended to an (empty) vector.
    Vec(&'a mut Vec<u8>),
    /// At the front of a slice at least as long as the plaintext.
    Slice(&'a mut [u8]),
}

/// Per-thread decoding state: a reusable zstd decompression context.
pub struct Decoder {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            zstd: zstd::bulk::Decompressor::new()
                .expect("zstd cannot allocate a decompression context"),
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

fn aad(header: &[u8], id: &ObjectId) -> [u8; 64] {
    let mut a = [0u8; 64];
    a[..32].copy_from_slice(header);
    a[32..].copy_from_slice(id.as_bytes());
    a
}

/// The parsed header of a blob whose checksum has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobHeader {
    pub ty: BlobType,
    pub compressed: bool,
    pub encrypted: bool,
    pub plain_len: usize,
    pub payload_len: usize,
    pub nonce: [u8; 12],
}

/// Keyless check: parses the header and verifies the stored-bytes checksum.
/// This is what `verify --keyless` runs on an offsite host.
pub fn check(blob: &[u8]) -> Result<BlobHeader, FormatError> {
    let h = parse_header(blob)?;
    check_sum(blob, &h)?;
    Ok(h)
}

/// Verifies the trailing checksum of a blob whose header `h` was parsed.
fn check_sum(blob: &[u8], h: &BlobHeader) -> Result<(), FormatError> {
    let (body, sum) = blob.split_at(HEADER_LEN + h.payload_len);
    if blake3::hash(body).as_bytes() != sum {
        return Err(FormatError::ChecksumMismatch { kind: h.ty.name() });
    }
    Ok(())
}

/// Parses and bounds-checks the header; the checksum is not looked at.
fn parse_header(blob: &[u8]) -> Result<BlobHeader, FormatError> {
    if blob.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(FormatError::Truncated {
            kind: KIND,
            offset: blob.len(),
            needed: HEADER_LEN + CHECKSUM_LEN - blob.len(),
        });
    }
    if blob[..8] != magic::magic(magic::BLOB) {
        return Err(FormatError::BadMagic {
            kind: KIND,
            found: hex::encode(&blob[..8]),
        });
    }
    if blob[8] != VERSION {
        return Err(FormatError::UnsupportedVersion {
            kind: KIND,
            found: blob[8] as u32,
            supported: VERSION as u32,
        });
    }
    let ty = BlobType::from_u8(blob[9])
        .ok_or_else(|| FormatError::malformed(KIND, format!("unknown type {}", blob[9])))?;
    let flags = blob[10];
    if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 || blob[11] != 0 {
        return Err(FormatError::malformed(
            KIND,
            format!("unknown flags {flags:#x}"),
        ));
    }
    let plain_len = u32::from_le_bytes(blob[12..16].try_into().expect("4")) as usize;
    let payload_len = u32::from_le_bytes(blob[16..20].try_into().expect("4")) as usize;
    if plain_len > MAX_PLAINTEXT {
        return Err(FormatError::malformed(
            KIND,
            format!("plaintext length {plain_len} too large"),
        ));
    }
    let expected = HEADER_LEN as u64 + payload_len as u64 + CHECKSUM_LEN as u64;
    if blob.len() as u64 != expected {
        return Err(FormatError::Truncated {
            kind: KIND,
            offset: blob.len(),
            needed: expected.saturating_sub(blob.len() as u64) as usize,
        });
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&blob[20..32]);
    Ok(BlobHeader {
        ty,
        compressed: flags & FLAG_COMPRESSED != 0,
        encrypted: flags & FLAG_ENCRYPTED != 0,
        plain_len,
        payload_len,
        nonce,
    })
}
