//! Raw bindings to VMware's Virtual Disk Development Kit (`libvixDiskLib`),
//! plus thin safe wrappers, **loaded at run time**.
//!
//! Nothing links against VDDK: [`Library::load`] looks in a directory the
//! user names (`--vddk-libdir`) for `libvixDiskLib.so.8`, then `.so.7`, then
//! `.so.6`, each first in the directory itself and then in its `lib64/`
//! subdirectory, and opens it with `libloading`. Every entry point is then
//! looked up by name; a symbol that an older VDDK lacks (QueryAllocatedBlocks
//! before 6.7, Wait/Flush before 6.0, ...) is simply absent and fails only
//! when called, with [`SysError::MissingSymbol`] naming it. The same code
//! therefore runs against the real library and against the project's
//! stand-in (`tests/vddk-sim`).
//!
//! Layers:
//! - [`types`]: `#[repr(C)]` structs and constants from the public
//!   `vixDiskLib.h`, with compile-time size/offset checks for x86-64 Linux;
//! - [`Library`]: the loaded library and its raw `unsafe extern "C"`
//!   function pointers;
//! - [`Connection`] and [`Disk`]: safe wrappers (the only `unsafe` of the
//!   project lives in this crate and the stand-in). They keep VDDK's rules:
//!   Open and Close are serialised by one process-wide lock, a `Disk` is
//!   `Send` but not `Sync` and every I/O takes `&mut self` (one thread per
//!   handle), buffers are whole 512-byte sectors, a connection outlives its
//!   disks.
//! - log callbacks ([`logcb`]) format VDDK's `va_list` messages with the C
//!   library's `vsnprintf` and forward them to the `log` crate.

pub mod types;

#[cfg(feature = "rule-breaking")]
pub mod abuse;
mod connection;
mod disk;
mod error;
mod library;
pub mod logcb;

pub use connection::{ConnectParams, Connection};
pub use disk::{Disk, DiskInfo};
pub use error::SysError;
pub use library::{Library, LIBRARY_VERSIONS};
pub use types::{vix_error_code, VixError};
