//! `libvixDiskLib.so` stand-in: the VDDK C interface over local files, for
//! tests. See `README.md` for the environment variables and file naming.
//!
//! Nouns: a *connection* (local, or "remote" with server, credentials and
//! thumbprint, optionally bound to a snapshot), a *disk* (a VMDK
//! descriptor plus its flat data file), *metadata* (the descriptor's
//! `ddb.*` lines).
//!
//! Invariants the stand-in enforces by aborting the process with a message
//! on stderr (as the real library punishes them, only more reliably):
//! nothing but InitEx may come first; Open and Close never overlap in time;
//! one handle is never used by two threads at once; a closed or unknown
//! handle is never used again.

#![allow(non_snake_case)] // the crate and its exports carry VDDK's C names

mod abi;
mod api;
mod config;
mod io;
mod state;
mod vmdk;

/// Reports a broken VDDK rule on stderr and aborts the process.
pub(crate) fn die(msg: &str) -> ! {
    eprintln!("vddk-sim: FATAL: VDDK rule broken: {msg}");
    std::process::abort()
}
