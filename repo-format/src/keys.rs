//! Repository keys. A [`MasterKey`] is 64 random bytes made at `init`:
//! bytes 0..32 are the chunk-id key (keyed BLAKE3), bytes 32..64 the
//! AES-256-GCM data key. It never leaves memory unwrapped; key slots
//! ([`crate::keyfile`]) store it wrapped by password-derived keys.
//!
//! An [`IdHasher`] computes object ids: keyed BLAKE3 under the id key in an
//! encrypted repository, plain (unkeyed) BLAKE3 in an unencrypted one.

use crate::ObjectId;

/// The repository's secret key material.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 64],
}

impl MasterKey {
    /// Wraps 64 bytes of key material.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        MasterKey { bytes }
    }

    /// A fresh random master key.
    pub fn generate() -> Self {
        let mut b = [0u8; 64];
        getrandom::getrandom(&mut b).expect("operating system random source failed");
        MasterKey { bytes: b }
    }

    /// The raw 64 bytes (for wrapping into a key slot).
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.bytes
    }

    /// The 32-byte keyed-BLAKE3 key for object ids.
    pub fn id_key(&self) -> [u8; 32] {
        self.bytes[..32].try_into().expect("32 bytes")
    }

    /// The 32-byte AES-256-GCM key for blob payloads.
    pub fn data_key(&self) -> [u8; 32] {
        self.bytes[32..].try_into().expect("32 bytes")
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Computes object ids for one repository.
#[derive(Clone, Debug)]
pub enum IdHasher {
    /// Encrypted repository: keyed BLAKE3 with the master key's id key.
    Keyed([u8; 32]),
    /// Unencrypted repository: plain BLAKE3.
    Unkeyed,
}

impl IdHasher {
    /// The id of `plaintext`.
    pub fn id(&self, plaintext: &[u8]) -> ObjectId {
        let h = match self {
            IdHasher::Keyed(k) => blake3::keyed_hash(k, plaintext),
            IdHasher::Unkeyed => blake3::hash(plaintext),
        };
        ObjectId(*h.as_bytes())
    }
}
