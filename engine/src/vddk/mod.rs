//! The safe VDDK layer: process-wide initialisation, connections, the
//! PrepareForAccess/EndAccess guard, disk handles, and the VDDK disk source
//! and target that plug into the backup and restore pipelines.
//!
//! Nouns: the *library* (one per process: loaded and `InitEx`'d once, from
//! one libdir — [`init::library`]); a [`VddkConnection`] (local, or to a
//! vCenter/ESXi host with credentials, the server's SHA-1 thumbprint, the
//! VM's moref, an optional snapshot and transport modes); an
//! [`AccessGuard`] (PrepareForAccess now, EndAccess on every way out); a
//! [`VddkDisk`] (an open disk: byte offsets in, whole 512-byte sectors to
//! VDDK); [`VddkSource`] and [`VddkTarget`].
//!
//! Invariants: Open/Close are serialised process-wide (inside `vddk-sys`);
//! a disk handle is used by one thread at a time (`&mut self`, not `Sync`);
//! misaligned reads and writes are refused, never rounded; every VDDK error
//! becomes a typed [`VddkError`] naming the function, the object, the
//! library's text, and whether a retry can help.

mod conn;
mod disk;
pub mod init;
mod source;
mod target;

pub use crate::error::vddk::{VddkError, VixFailure};
pub use conn::{AccessGuard, ConnectSpec, VddkConnection};
pub use disk::{VddkDisk, SECTOR};
pub use source::VddkSource;
pub use target::VddkTarget;
