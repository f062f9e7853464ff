//! [`VddkSource`]: a [`DiskSource`] reading one disk through VDDK. It owns
//! its connection, its disk handle (used only by the pipeline's reader
//! thread) and, for remote disks, the PrepareForAccess guard, which ends
//! when the source is dropped.

use std::path::Path;

use super::{init, AccessGuard, ConnectSpec, VddkConnection, VddkDisk, VddkError};
use crate::source::{DiskSource, Extent};
use crate::Result;

/// Identity given to PrepareForAccess/EndAccess.
pub const ACCESS_IDENTITY: &str = "vmkeep";

/// A disk read through VDDK.
pub struct VddkSource {
    // Field order is drop order: disk, then connection, then EndAccess.
    disk: VddkDisk,
    _conn: VddkConnection,
    _access: AccessGuard,
}

impl VddkSource {
    /// Connects (read-only), prepares access for a remote VM, opens `path`.
    pub fn open(libdir: &Path, spec: &ConnectSpec, path: &str) -> Result<VddkSource, VddkError> {
        let lib = init::library(libdir)?;
        let spec = ConnectSpec {
            read_only: true,
            ..spec.clone()
        };
        let access = AccessGuard::prepare(&lib, &spec, ACCESS_IDENTITY)?;
        let conn = VddkConnection::connect_with(&lib, spec)?;
        let disk = conn.open(path, true)?;
        Ok(VddkSource {
            disk,
            _conn: conn,
            _access: access,
        })
    }

    /// The open disk (metadata, transport mode).
    pub fn disk(&mut self) -> &mut VddkDisk {
        &mut self.disk
    }
}

impl DiskSource for VddkSource {
    fn describe(&self) -> String {
        format!("vddk {}", self.disk.name())
    }

    fn capacity(&self) -> u64 {
        self.disk.capacity()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        Ok(self.disk.read_at(offset, buf)?)
    }

    fn allocated(&mut self, offset: u64, length: u64) -> Result<Option<Vec<Extent>>> {
        Ok(self.disk.allocated(offset, length)?)
    }
}
