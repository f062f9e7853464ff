//! The one error type of the format crate. Every variant names the kind of
//! object it was decoding so callers can add the path or id.

use thiserror::Error;

/// A decoding or cryptographic failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The first 8 bytes are not the magic of the expected kind.
    #[error("not a vmkeep {kind}: bad magic {found}")]
    BadMagic { kind: &'static str, found: String },
    /// The object was written by a newer (or unknown) format version.
    #[error("{kind} format version {found} is not supported (this vmkeep reads version {supported}); upgrade vmkeep")]
    UnsupportedVersion {
        kind: &'static str,
        found: u32,
        supported: u32,
    },
    /// The input ended before the structure did.
    #[error("{kind} is truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        kind: &'static str,
        offset: usize,
        needed: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{kind} is malformed: {what}")]
    Malformed { kind: &'static str, what: String },
    /// The stored-bytes checksum does not match: the bytes were damaged.
    #[error("{kind} checksum mismatch: stored bytes are damaged")]
    ChecksumMismatch { kind: &'static str },
    /// AES-GCM authentication failed: wrong key, or tampered/swapped blob.
    #[error("{kind} failed to decrypt: wrong key or tampered data")]
    DecryptFailed { kind: &'static str },
    /// The blob is encrypted but no key was supplied.
    #[error("{kind} is encrypted and no key was given")]
    KeyRequired { kind: &'static str },
    /// The decoded plaintext does not hash to the id it was stored under.
    #[error("{kind} content does not match its id: expected {expected}, got {actual}")]
    IdMismatch {
        kind: &'static str,
        expected: String,
        actual: String,
    },
    /// zstd refused the compressed payload.
    #[error("{kind} failed to decompress: {what}")]
    Decompress { kind: &'static str, what: String },
    /// No key slot opens with the given password.
    #[error("wrong password: no key slot opens with it")]
    WrongPassword,
    /// Key derivation (Argon2id) rejected its parameters.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

impl FormatError {
    pub(crate) fn malformed(kind: &'static str, what: impl Into<String>) -> Self {
        FormatError::Malformed {
            kind,
            what: what.into(),
        }
    }
}
