//! [`Disk`]: an open `VixDiskLibHandle`, and [`DiskInfo`].
//!
//! Invariants: Open and Close run under [`OPEN_CLOSE`], one process-wide
//! lock (VDDK forbids concurrent Open/Close); a `Disk` is `Send` but not
//! `Sync`, and every call takes `&mut self`, so one thread at a time uses a
//! handle; reads and writes take buffers of whole 512-byte sectors; the
//! handle is closed exactly once (by [`Disk::close`] or on drop).

use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};

use crate::connection::{ConnInner, Connection};
use crate::error::SysError;
use crate::library::cstring;
use crate::types::*;

/// Serialises VixDiskLib_Open and VixDiskLib_Close across the process.
static OPEN_CLOSE: Mutex<()> = Mutex::new(());

/// What GetInfo reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Capacity in 512-byte sectors.
    pub capacity_sectors: u64,
    pub adapter_type: i32,
    pub num_links: i32,
    pub parent_file_name_hint: Option<String>,
    pub uuid: Option<String>,
    pub bios_geometry: (u32, u32, u32),
    /// Sector sizes (VDDK 7 and later only).
    pub logical_sector_size: Option<u32>,
    pub physical_sector_size: Option<u32>,
}

/// An open virtual disk.
pub struct Disk {
    conn: Arc<ConnInner>,
    raw: VixDiskLibHandle,
    path: String,
}

// SAFETY: VDDK allows a handle to move between threads as long as only one
// uses it at a time; Disk is not Sync and all calls take &mut self.
unsafe impl Send for Disk {}

fn sectors_of(func: &'static str, len: usize) -> Result<u64, SysError> {
    if !(len as u64).is_multiple_of(VIXDISKLIB_SECTOR_SIZE) {
        return Err(SysError::Invalid {
            func,
            msg: format!("buffer of {len} bytes is not a whole number of 512-byte sectors"),
        });
    }
    Ok(len as u64 / VIXDISKLIB_SECTOR_SIZE)
}

/// Copies a C string returned by VDDK (NULL → None).
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string.
unsafe fn opt_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: per the contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

impl Connection {
    /// `VixDiskLib_Open(conn, path, flags)`, under the Open/Close lock.
    pub fn open(&self, path: &str, flags: u32) -> Result<Disk, SysError> {
        const F: &str = "VixDiskLib_Open";
        let lib = &self.inner.lib;
        let f = lib.vix_open()?;
        let cpath = cstring(F, path)?;
        let mut h: VixDiskLibHandle = std::ptr::null_mut();
        let err = {
            let _g = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the connection is live (we hold it), cpath is
            // NUL-terminated, h is a valid out-pointer; OPEN_CLOSE is held.
            unsafe { f(self.inner.raw, cpath.as_ptr(), flags, &mut h) }
        };
        lib.check(F, err)?;
        if h.is_null() {
            return Err(SysError::Invalid {
                func: F,
                msg: "returned no handle".into(),
            });
        }
        Ok(Disk {
            conn: self.inner.clone(),
            raw: h,
            path: path.to_string(),
        })
    }
}

impl Disk {
    fn lib(&self) -> &crate::Library {
        &self.conn.lib
    }

    /// The path it was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `VixDiskLib_Read`: fills `buf` (whole sectors) from `start_sector`.
    pub fn read(&mut self, start_sector: u64, buf: &mut [u8]) -> Result<(), SysError> {
        const F: &str = "VixDiskLib_Read";
        let n = sectors_of(F, buf.len())?;
        let f = self.lib().vix_read()?;
        // SAFETY: the handle is open and used by this thread only (&mut
        // self); buf holds exactly n sectors.
        let err = unsafe { f(self.raw, start_sector, n, buf.as_mut_ptr()) };
        self.lib().check(F, err)
    }

    /// `VixDiskLib_Write`: writes `buf` (whole sectors) at `start_sector`.
    pub fn write(&mut self, start_sector: u64, buf: &[u8]) -> Result<(), SysError> {
        const F: &str = "VixDiskLib_Write";
        let n = sectors_of(F, buf.len())?;
        let f = self.lib().vix_write()?;
        // SAFETY: as in read; VDDK only reads from buf.
        let err = unsafe { f(self.raw, start_sector, n, buf.as_ptr()) };
        self.lib().check(F, err)
    }

    /// `VixDiskLib_Flush`.
    pub fn flush(&mut self) -> Result<(), SysError> {
        let f = self.lib().vix_flush()?;
        // SAFETY: the handle is open and exclusively ours.
        let err = unsafe { f(self.raw) };
        self.lib().check("VixDiskLib_Flush", err)
    }

    /// `VixDiskLib_GetInfo` + `FreeInfo`.
    pub fn info(&mut self) -> Result<DiskInfo, SysError> {
        const F: &str = "VixDiskLib_GetInfo";
        let get = self.lib().vix_get_info()?;
        let free = self.lib().vix_free_info()?;
        let mut p: *mut VixDiskLibInfo = std::ptr::null_mut();
        // SAFETY: handle open and ours; p is a valid out-pointer.
        let err = unsafe { get(self.raw, &mut p) };
        self.lib().check(F, err)?;
        if p.is_null() {
            return Err(SysError::Invalid {
                func: F,
                msg: "returned no info".into(),
            });
        }
        let v7 = self.lib().version() >= 7;
        // SAFETY: p points at a VixDiskLibInfo allocated by the library. The
        // fields are read one by one through the raw pointer, so a VDDK 6
        // struct (56 bytes) is never read past its end: the sector sizes
        // (offsets 56/60) are only read from VDDK 7 on. Strings are copied
        // before FreeInfo, which is called exactly once.
        let info = unsafe {
            let info = DiskInfo {
                capacity_sectors: (*p).capacity,
                adapter_type: (*p).adapter_type,
                num_links: (*p).num_links,
                parent_file_name_hint: opt_string((*p).parent_file_name_hint),
                uuid: opt_string((*p).uuid),
                bios_geometry: (
                    (*p).bios_geo.cylinders,
                    (*p).bios_geo.heads,
                    (*p).bios_geo.sectors,
                ),
                logical_sector_size: v7.then(|| (*p).logical_sector_size),
                physical_sector_size: v7.then(|| (*p).physical_sector_size),
            };
            free(p);
            info
        };
        Ok(info)
    }

    /// `VixDiskLib_GetTransportMode` ("file", "nbd", "nbdssl", "hotadd", "san").
    pub fn transport_mode(&mut self) -> Result<String, SysError> {
        let f = self.lib().vix_get_transport_mode()?;
        // SAFETY: handle open and ours; the result is a static string or NULL.
        Ok(unsafe { opt_string(f(self.raw)) }.unwrap_or_default())
    }

    /// Whether `QueryAllocatedBlocks` exists in this library (VDDK 6.7+).
    pub fn can_query_allocated(&self) -> bool {
        self.lib().has_symbol("VixDiskLib_QueryAllocatedBlocks")
            && self.lib().has_symbol("VixDiskLib_FreeBlockList")
    }

    /// `VixDiskLib_QueryAllocatedBlocks`: allocated (offset, length) blocks in
    /// sectors within `[start, start + count)`. The caller keeps `count /
    /// chunk <= VIXDISKLIB_MAX_CHUNK_NUMBER` and `chunk >= 128`.
    pub fn query_allocated_blocks(
        &mut self,
        start: u64,
        count: u64,
        chunk: u64,
    ) -> Result<Vec<VixDiskLibBlock>, SysError> {
        const F: &str = "VixDiskLib_QueryAllocatedBlocks";
        let q = self.lib().vix_query_allocated_blocks()?;
        let free = self.lib().vix_free_block_list()?;
        let mut list: *mut VixDiskLibBlockList = std::ptr::null_mut();
        // SAFETY: handle open and ours; list is a valid out-pointer.
        let err = unsafe { q(self.raw, start, count, chunk, &mut list) };
        self.lib().check(F, err)?;
        if list.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: list points at a block list whose trailing array holds
        // num_blocks entries (C flexible-array idiom); it is copied, then
        // freed exactly once with FreeBlockList.
        let blocks = unsafe {
            let n = (*list).num_blocks as usize;
            let first = std::ptr::addr_of!((*list).blocks) as *const VixDiskLibBlock;
            let v = std::slice::from_raw_parts(first, n).to_vec();
            free(list);
            v
        };
        Ok(blocks)
    }

    /// `VixDiskLib_GetMetadataKeys`.
    pub fn metadata_keys(&mut self) -> Result<Vec<String>, SysError> {
        const F: &str = "VixDiskLib_GetMetadataKeys";
        let f = self.lib().vix_get_metadata_keys()?;
        let mut need = 0usize;
        // SAFETY: a NULL buffer of length 0 asks only for the needed size.
        let err = unsafe { f(self.raw, std::ptr::null_mut(), 0, &mut need) };
        if err != VIX_OK && vix_error_code(err) != VIX_E_BUFFER_TOOSMALL {
            return Err(self.lib().error(F, err));
        }
        let mut buf = vec![0 as c_char; need.max(2)];
        // SAFETY: buf is writable for buf.len() bytes.
        let err = unsafe { f(self.raw, buf.as_mut_ptr(), buf.len(), &mut need) };
        self.lib().check(F, err)?;
        // Keys are NUL-terminated strings ending with an empty one.
        let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
        Ok(bytes
            .split(|&b| b == 0)
            .take_while(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect())
    }

    /// `VixDiskLib_ReadMetadata(key)`.
    pub fn read_metadata(&mut self, key: &str) -> Result<String, SysError> {
        const F: &str = "VixDiskLib_ReadMetadata";
        let f = self.lib().vix_read_metadata()?;
        let ckey = cstring(F, key)?;
        let mut need = 0usize;
        // SAFETY: NULL buffer of length 0 asks for the needed size.
        let err = unsafe { f(self.raw, ckey.as_ptr(), std::ptr::null_mut(), 0, &mut need) };
        if err != VIX_OK && vix_error_code(err) != VIX_E_BUFFER_TOOSMALL {
            return Err(self.lib().error(F, err));
        }
        let mut buf = vec![0 as c_char; need.max(1)];
        // SAFETY: buf is writable for buf.len() bytes; ckey NUL-terminated.
        let err = unsafe {
            f(
                self.raw,
                ckey.as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut need,
            )
        };
        self.lib().check(F, err)?;
        *buf.last_mut().expect("non-empty") = 0;
        // SAFETY: buf is NUL-terminated (last byte forced to 0).
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// `VixDiskLib_WriteMetadata(key, value)`.
    pub fn write_metadata(&mut self, key: &str, value: &str) -> Result<(), SysError> {
        const F: &str = "VixDiskLib_WriteMetadata";
        let f = self.lib().vix_write_metadata()?;
        let (k, v) = (cstring(F, key)?, cstring(F, value)?);
        // SAFETY: handle open and ours; both strings NUL-terminated.
        let err = unsafe { f(self.raw, k.as_ptr(), v.as_ptr()) };
        self.lib().check(F, err)
    }

    /// `VixDiskLib_Close`, under the Open/Close lock.
    /// Errors are reported here; dropping a `Disk` closes it too but can
    /// only log them.
    pub fn close(mut self) -> Result<(), SysError> {
        self.close_inner() // Drop then sees a NULL handle and does nothing
    }

    fn close_inner(&mut self) -> Result<(), SysError> {
        if self.raw.is_null() {
            return Ok(());
        }
        let f = self.lib().vix_close()?;
        let err = {
            let _g = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: raw came from Open and is closed exactly once (set to
            // NULL right after); OPEN_CLOSE is held.
            unsafe { f(self.raw) }
        };
        self.raw = std::ptr::null_mut();
        self.lib().check("VixDiskLib_Close", err)
    }

    #[cfg(feature = "rule-breaking")]
    pub(crate) fn raw_handle(&self) -> VixDiskLibHandle {
        self.raw
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            log::warn!(target: "vddk", "closing {}: {e}", self.path);
        }
    }
}
