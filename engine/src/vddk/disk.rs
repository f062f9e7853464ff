//! [`VddkDisk`]: an open disk addressed in bytes, talking to VDDK in whole
//! 512-byte sectors.
//!
//! Invariants: every offset and length is a multiple of [`SECTOR`] and
//! inside the capacity, else the request is refused (never rounded);
//! allocation queries use 64 KiB chunks (128 sectors, VDDK's minimum) and
//! are split so no call covers more than VDDK's maximum chunk count; a
//! library without QueryAllocatedBlocks answers "unknown" (`None`).

use vddk_sys::types::{VIXDISKLIB_MAX_CHUNK_NUMBER, VIXDISKLIB_MIN_CHUNK_SIZE};
use vddk_sys::{Disk, DiskInfo};

use super::VddkError;
use crate::source::Extent;

/// Bytes per VDDK sector.
pub const SECTOR: u64 = 512;

/// An open VDDK disk.
pub struct VddkDisk {
    disk: Disk,
    name: String,
    info: DiskInfo,
    read_only: bool,
}

impl VddkDisk {
    pub(crate) fn new(mut disk: Disk, name: &str, read_only: bool) -> Result<VddkDisk, VddkError> {
        let info = disk.info().map_err(|e| VddkError::from_sys(e, name))?;
        Ok(VddkDisk {
            disk,
            name: name.to_string(),
            info,
            read_only,
        })
    }

    /// The path it was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.info.capacity_sectors * SECTOR
    }

    /// What GetInfo said at open.
    pub fn info(&self) -> &DiskInfo {
        &self.info
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn err(&self, e: vddk_sys::SysError) -> VddkError {
        VddkError::from_sys(e, &self.name)
    }

    /// The first sector of `[offset, offset + len)`, refusing misalignment.
    fn sectors(&self, what: &str, offset: u64, len: u64) -> Result<u64, VddkError> {
        if !offset.is_multiple_of(SECTOR) || !len.is_multiple_of(SECTOR) {
            return Err(VddkError::Misaligned {
                object: self.name.clone(),
                msg: format!(
                    "{what} of {len} bytes at offset {offset} is not in whole 512-byte sectors"
                ),
            });
        }
        Ok(offset / SECTOR)
    }

    /// Reads `buf.len()` bytes at `offset` (both sector multiples).
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), VddkError> {
        let s = self.sectors("read", offset, buf.len() as u64)?;
        self.disk.read(s, buf).map_err(|e| self.err(e))
    }

    /// Writes `data` at `offset` (both sector multiples).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), VddkError> {
        let s = self.sectors("write", offset, data.len() as u64)?;
        self.disk.write(s, data).map_err(|e| self.err(e))
    }

    /// Flushes written data (a no-op on VDDKs without Flush).
    pub fn flush(&mut self) -> Result<(), VddkError> {
        match self.disk.flush() {
            Err(vddk_sys::SysError::MissingSymbol(_)) => Ok(()),
            r => r.map_err(|e| self.err(e)),
        }
    }

    /// "file", "nbd", "nbdssl", "hotadd" or "san".
    pub fn transport_mode(&mut self) -> Result<String, VddkError> {
        self.disk.transport_mode().map_err(|e| self.err(e))
    }

    /// Whether [`VddkDisk::allocated`] can answer.
    pub fn can_query_allocated(&self) -> bool {
        self.disk.can_query_allocated()
    }

    /// Allocated byte extents within `[offset, offset + length)`, sorted and
    /// merged, or `None` when this VDDK cannot tell. Extents are rounded out
    /// to 64 KiB chunks, then clipped to the range asked.
    pub fn allocated(
        &mut self,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<Extent>>, VddkError> {
        if !self.can_query_allocated() {
            return Ok(None);
        }
        let chunk = VIXDISKLIB_MIN_CHUNK_SIZE;
        let cap = self.info.capacity_sectors;
        let end_byte = offset.saturating_add(length).min(self.capacity());
        if end_byte <= offset {
            return Ok(Some(Vec::new()));
        }
        let first = offset / SECTOR / chunk * chunk;
        let last = (end_byte.div_ceil(SECTOR).div_ceil(chunk) * chunk).min(cap);
        let step = VIXDISKLIB_MAX_CHUNK_NUMBER * chunk;
        let mut out: Vec<Extent> = Vec::new();
        let mut s = first;
        while s < last {
            let n = (last - s).min(step);
            let blocks = self
                .disk
                .query_allocated_blocks(s, n, chunk)
                .map_err(|e| self.err(e))?;
            for b in blocks {
                let a = (b.offset * SECTOR).max(offset);
                let z = ((b.offset + b.length) * SECTOR).min(end_byte);
                if z <= a {
                    continue;
                }
                match out.last_mut() {
                    Some(prev) if prev.end() >= a => prev.length = prev.length.max(z - prev.offset),
                    _ => out.push(Extent {
                        offset: a,
                        length: z - a,
                    }),
                }
            }
            s += n;
        }
        Ok(Some(out))
    }

    /// Every metadata key and its value.
    pub fn metadata(&mut self) -> Result<Vec<(String, String)>, VddkError> {
        let keys = self.disk.metadata_keys().map_err(|e| self.err(e))?;
        keys.into_iter()
            .map(|k| {
                let v = self.read_metadata(&k)?;
                Ok((k, v))
            })
            .collect()
    }

    /// The value of metadata `key`.
    pub fn read_metadata(&mut self, key: &str) -> Result<String, VddkError> {
        self.disk.read_metadata(key).map_err(|e| self.err(e))
    }

    /// Sets metadata `key` to `value`.
    pub fn write_metadata(&mut self, key: &str, value: &str) -> Result<(), VddkError> {
        self.disk
            .write_metadata(key, value)
            .map_err(|e| self.err(e))
    }

    /// Closes the disk, reporting Close's result.
    pub fn close(self) -> Result<(), VddkError> {
        let name = self.name;
        self.disk.close().map_err(|e| VddkError::from_sys(e, &name))
    }
}
