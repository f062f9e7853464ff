//! vSphere Web Services (SOAP, vim25) client: only the calls vmkeep needs,
//! hand-written and typed.
//!
//! Nouns: [`Client`] (a logged-in session), [`MoRef`], [`VmInfo`] /
//! [`DiskInfo`], [`ChangedAreas`], [`Error`] / [`Fault`].
//!
//! Invariants: TLS verification is on unless the caller opts out or pins a
//! fingerprint; faults are typed; QueryChangedDiskAreas results always cover
//! the whole requested range or fail.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cbt;
pub mod client;
pub mod error;
#[cfg(test)]
mod fake_server;
pub mod find;
pub mod ops;
pub mod property;
pub mod soap;
pub mod task;
pub mod tls;
pub mod vm;
pub mod xml;

pub use cbt::{ChangedAreas, DiskArea, DiskChangeInfo};
pub use client::{About, Client, ConnectOptions, ServiceContent, UserSession};
pub use error::{Error, Fault, Result};
pub use find::VmSelector;
pub use ops::{NewDisk, NewVm, Placement, SnapshotOutcome};
pub use soap::MoRef;
pub use tls::{parse_fingerprint, sha1_thumbprint, sha256_fingerprint, TlsMode};
pub use vm::{DiskInfo, SnapshotNode, VmInfo, VmSummary};
