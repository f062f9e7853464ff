//! The engine's error type. Every variant names the thing at fault (a path,
//! an object id, a generation, a source) so the CLI can print it as is.
//!
//! Invariant: this module imports no other engine module (every module
//! returns its errors, so such an import would be a cycle); the typed
//! errors it wraps, such as [`vddk::VddkError`], live in its submodules.

pub mod vddk;

use std::path::PathBuf;

use thiserror::Error;
use vmkeep_format::FormatError;

/// Result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An engine failure.
#[derive(Debug, Error)]
pub enum Error {
    #[error("repository {0} does not exist")]
    RepoMissing(String),
    #[error("{repo} is not a vmkeep repository ({why})")]
    NotARepo { repo: String, why: String },
    #[error("repository {0} already exists")]
    RepoExists(String),
    #[error("repository {repo}: {source}")]
    RepoFormat {
        repo: String,
        #[source]
        source: FormatError,
    },
    #[error("wrong password for repository {repo}{skipped}")]
    WrongPassword { repo: String, skipped: String },
    #[error("repository {repo} has no usable key slot in keys/{}", if skipped.is_empty() { String::new() } else { format!(" (skipped: {skipped})") })]
    NoKeySlots { repo: String, skipped: String },
    #[error("key slot {slot}: {msg}")]
    KeySlot { slot: String, msg: String },
    /// No key slot id starts with `prefix`; `slots` lists the ids.
    #[error("key slot {prefix}: no key slot of {repo} starts with it (slots: {slots})")]
    KeySlotNotFound {
        prefix: String,
        repo: String,
        slots: String,
    },
    #[error("key slot {prefix}: ambiguous: matches {matches}")]
    KeySlotAmbiguous { prefix: String, matches: String },
    /// Removing it would leave no password that opens the repository.
    #[error(
        "key slot {0}: it is the last key slot: refusing to remove it (add another password first)"
    )]
    LastKeySlot(String),
    /// The slot the repository was unlocked with.
    #[error(
        "key slot {0}: it is the one this command unlocked with; open with another password to remove it"
    )]
    KeySlotInUse(String),
    #[error("repository {0} is not encrypted: it has no keys")]
    NotEncrypted(String),
    #[error("repository {0} is encrypted: a password is required")]
    PasswordRequired(String),
    #[error("{what} {id}: {source}")]
    Object {
        what: &'static str,
        id: String,
        #[source]
        source: FormatError,
    },
    #[error("{what} {id} is missing from the repository")]
    ObjectMissing { what: &'static str, id: String },
    #[error("storage {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage {path}: no space left on device")]
    StorageFull { path: String },
    #[error("index {path}: {msg}")]
    Index { path: PathBuf, msg: String },
    /// Another process holds the index (RocksDB's lock) past the wait.
    #[error("index {path}: in use by another vmkeep process ({msg})")]
    IndexBusy { path: PathBuf, msg: String },
    #[error("generation {0} not found")]
    GenerationNotFound(String),
    #[error("generation prefix {prefix} is ambiguous: matches {matches}")]
    GenerationAmbiguous { prefix: String, matches: String },
    #[error("generation {id} cannot be read: {msg}")]
    GenerationDamaged { id: String, msg: String },
    #[error(
        "generation {0} is protected (remove the protection first: `vmkeep protect {0} --remove`)"
    )]
    GenerationProtected(String),
    /// The parent of a running backup (named by its lock).
    #[error("generation {0} is the parent of a running backup: it stays until that backup ends")]
    GenerationInUse(String),
    #[error("invalid {what} {name:?}: {msg}")]
    BadName {
        what: &'static str,
        name: String,
        msg: String,
    },
    #[error("source {source_name}: {msg}")]
    SourceInvalid { source_name: String, msg: String },
    #[error("source {source_name} at offset {offset}: {error}")]
    SourceRead {
        source_name: String,
        offset: u64,
        #[source]
        error: std::io::Error,
    },
    #[error("target {target}: {msg}")]
    TargetInvalid { target: String, msg: String },
    #[error("target {target} at offset {offset}: {error}")]
    TargetWrite {
        target: String,
        offset: u64,
        #[source]
        error: std::io::Error,
    },
    #[error("changed-areas {file}: {msg}")]
    Areas { file: String, msg: String },
    #[error("parent generation {parent}: {msg}")]
    Parent { parent: String, msg: String },
    /// A generation has no disk of the name asked for; `has` lists its disks.
    #[error("generation {generation} has no disk named {disk:?} (it has: {has})")]
    NoSuchDisk {
        generation: String,
        disk: String,
        has: String,
    },
    /// A generation with several disks and none chosen.
    #[error("generation {generation} has {count} disks: choose one with --disk ({has})")]
    DiskNotChosen {
        generation: String,
        count: usize,
        has: String,
    },
    /// A manifest page (slots from `slot` on) cannot be read.
    #[error(
        "generation {generation}, disk {disk}, slot {slot}: manifest page {page} ({id}): {msg}"
    )]
    PageBad {
        generation: String,
        disk: String,
        slot: u64,
        page: usize,
        id: String,
        msg: String,
    },
    #[error("generation {generation}, disk {disk}, slot {slot}: chunk {chunk}: {msg}")]
    ChunkBad {
        generation: String,
        disk: String,
        slot: u64,
        chunk: String,
        msg: String,
    },
    #[error("{0}")]
    Vddk(#[from] vddk::VddkError),
    /// A disk read or written through VDDK could not be opened.
    #[error("opening {path} through VDDK: {source}")]
    VddkOpen {
        path: String,
        #[source]
        source: vddk::VddkError,
    },
    /// A restore stopped; `note` says what it left in the target.
    #[error("restore failed: {note}")]
    RestoreFailed {
        note: String,
        #[source]
        source: Box<Error>,
    },
    /// `holder` describes the conflicting lock, `advice` what to do about it.
    #[error("repository {repo} is locked: {holder}; {advice}")]
    Locked {
        repo: String,
        holder: String,
        advice: String,
    },
    /// The lock of a running operation could not be refreshed before it
    /// would have become stale: the operation stopped without committing.
    #[error(
        "stopped: the lock {lock} on repository {repo} could not be refreshed before \
         others could take it as stale ({why}); nothing more was committed, run the command \
         again once the repository's storage accepts writes"
    )]
    LockLost {
        repo: String,
        /// The lock file's key (`locks/<name>`).
        lock: String,
        why: String,
    },
    #[error("interrupted")]
    Interrupted,
    /// A disk's backup stopped because another disk of the same generation
    /// failed (that disk's error is the one reported).
    #[error("cancelled: another disk of the generation failed")]
    Cancelled,
    /// One disk of a multi-disk operation failed; `source` says how.
    #[error("disk {disk}: {source}")]
    Disk {
        disk: String,
        #[source]
        source: Box<Error>,
    },
    /// A second write session of one repository in one process.
    #[error("repository {repo} already has a write session in this process")]
    SessionOpen { repo: String },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The error a [`Error::RestoreFailed`] wraps, or this one.
    pub fn cause(&self) -> &Error {
        match self {
            Error::RestoreFailed { source, .. } => source.cause(),
            e => e,
        }
    }

    /// A storage error for `path`, with ENOSPC mapped to [`Error::StorageFull`].
    pub fn storage(path: impl Into<String>, e: std::io::Error) -> Self {
        let path = path.into();
        if e.raw_os_error() == Some(28) {
            Error::StorageFull { path }
        } else {
            Error::Storage { path, source: e }
        }
    }
}
