//! [`VddkTarget`]: a [`DiskTarget`] writing one existing disk through VDDK
//! (VDDK cannot create or grow managed disks: the disk must already hold
//! at least the capacity restored).
//!
//! Invariant: a zero range is written only where the disk does not already
//! read as zeros (unallocated per QueryAllocatedBlocks, or read back and
//! found zero), so thin disks stay thin. A disk is written in place: once
//! writing started, a failed restore leaves it partial, and
//! [`DiskTarget::failure_note`] says so.

use std::path::Path;

use super::{init, AccessGuard, ConnectSpec, VddkConnection, VddkDisk, VddkError};
use crate::target::DiskTarget;
use crate::{Error, Result};

/// Bytes compared or zeroed per step in `write_zeros`.
const ZERO_STEP: u64 = 1 << 20;

/// A disk written through VDDK.
pub struct VddkTarget {
    disk: VddkDisk,
    _conn: VddkConnection,
    _access: AccessGuard,
    zeros: Vec<u8>,
    scratch: Vec<u8>,
    /// A write (data or zeros) was tried: the disk is no longer what it was.
    written: bool,
}

impl VddkTarget {
    /// Connects read-write, prepares access for a remote VM, opens `path`.
    pub fn open(libdir: &Path, spec: &ConnectSpec, path: &str) -> Result<VddkTarget, VddkError> {
        let lib = init::library(libdir)?;
        let spec = ConnectSpec {
            read_only: false,
            ..spec.clone()
        };
        let access = AccessGuard::prepare(&lib, &spec, super::source::ACCESS_IDENTITY)?;
        let conn = VddkConnection::connect_with(&lib, spec)?;
        let disk = conn.open(path, false)?;
        Ok(VddkTarget {
            disk,
            _conn: conn,
            _access: access,
            zeros: Vec::new(),
            scratch: Vec::new(),
            written: false,
        })
    }

    /// The open disk (metadata, transport mode).
    pub fn disk(&mut self) -> &mut VddkDisk {
        &mut self.disk
    }

    /// Zeroes `[offset, offset + len)` where it is not zero already.
    fn zero_allocated(&mut self, offset: u64, len: u64) -> Result<()> {
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = (end - pos).min(ZERO_STEP) as usize;
            self.scratch.resize(n, 0);
            self.disk.read_at(pos, &mut self.scratch)?;
            if self.scratch.iter().any(|&b| b != 0) {
                if self.zeros.len() < n {
                    self.zeros.resize(n, 0);
                }
                let zeros = std::mem::take(&mut self.zeros);
                let r = self.disk.write_at(pos, &zeros[..n]);
                self.zeros = zeros;
                r?;
            }
            pos += n as u64;
        }
        Ok(())
    }
}

impl DiskTarget for VddkTarget {
    fn describe(&self) -> String {
        format!("vddk {}", self.disk.name())
    }

    fn prepare(&mut self, capacity: u64) -> Result<()> {
        let have = self.disk.capacity();
        if have < capacity {
            return Err(Error::TargetInvalid {
                target: self.describe(),
                msg: format!("the disk holds {have} bytes, the restore needs {capacity}"),
            });
        }
        if have > capacity {
            log::warn!(
                "{}: the disk holds {have} bytes, more than the {capacity} restored",
                self.describe()
            );
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.written = true;
        Ok(self.disk.write_at(offset, data)?)
    }

    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        self.written = true;
        match self.disk.allocated(offset, len)? {
            None => self.zero_allocated(offset, len),
            Some(extents) => {
                for e in extents {
                    self.zero_allocated(e.offset, e.length)?;
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        Ok(self.disk.flush()?)
    }

    fn failure_note(&self) -> String {
        if self.written {
            format!(
                "the content of {} is now partial, neither its old content nor the generation's",
                self.describe()
            )
        } else {
            format!("{} was not written", self.describe())
        }
    }
}
