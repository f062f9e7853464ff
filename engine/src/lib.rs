//! The vmkeep engine: the repository on a storage backend, the RocksDB
//! chunk index, and the backup and restore pipelines between disk sources,
//! disk targets and the repository.
//!
//! Nouns: [`layout`] names every object (SPEC.md §2); a
//! [`backend::Backend`] stores objects under those keys with the
//! operations of an object store (SPEC.md §11.1); a [`repo::Repository`]
//! is a backend plus its config and keys; an [`index::Index`] answers "is
//! this chunk stored?" and is always rebuildable from the repository; a
//! [`source::DiskSource`] is what a backup reads and a
//! [`target::DiskTarget`] what a restore writes.
//!
//! Invariant: modules import each other without a cycle
//! (`tests/module_graph.rs`); `error`, `host` and `layout` import no other.

#![forbid(unsafe_code)]

pub mod areas;
pub mod backend;
pub mod backup;
pub mod buf;
pub mod error;
pub mod gc;
pub mod host;
pub mod index;
pub mod layout;
pub mod lock;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod reader;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod session;
pub mod source;
pub mod stats;
pub mod target;
pub mod trash;
pub mod vddk;
pub mod verify;

pub use error::{Error, Result};
