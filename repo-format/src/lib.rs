//! The vmkeep repository format, as SPEC.md defines it: pure codecs from
//! bytes to types and back, with no file, network or database access.
//!
//! Nouns: an [`ObjectId`] names every stored object (keyed BLAKE3 of its
//! plaintext); a *blob* ([`blob`]) is the stored form of an object
//! (optionally zstd-compressed, optionally AES-256-GCM-encrypted, always
//! checksummed); a [`manifest::Manifest`] maps every chunk-sized slot of one
//! disk generation to a chunk, through [`manifest::ManifestPage`]s; a
//! [`generation::Generation`] records one backup run; [`config::RepoConfig`]
//! and [`keyfile::KeySlot`] describe the repository and its keys.
//!
//! Invariant: every decoder returns a typed [`FormatError`] on unknown
//! versions, truncated or garbled input; none of them panics.

#![forbid(unsafe_code)]

pub mod blob;
pub mod codec;
pub mod config;
pub mod error;
pub mod generation;
pub mod id;
pub mod keyfile;
pub mod keys;
pub mod magic;
pub mod manifest;

pub use error::FormatError;
pub use id::ObjectId;
pub use keys::{IdHasher, MasterKey};

/// Result type of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
