//! Exported entry points for disk I/O and metadata: Read, Write, their
//! async forms with Wait, Flush, QueryAllocatedBlocks/FreeBlockList, and
//! Get/Read/WriteMetadata.
//!
//! Invariants: every call on a handle holds its `busy` flag; finding it
//! already set means two threads use one handle at once, and the process
//! aborts. Ranges are whole sectors inside the capacity, else
//! VIX_E_DISK_OUTOFRANGE. Writes on read-only opens are VIX_E_FILE_READ_ONLY.

use std::ffi::{c_char, c_void};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use crate::abi::*;
use crate::api::{cstr, disk, SimDisk};
use crate::{config, die, state};

/// Holds a handle's busy flag; aborts if another thread holds it.
struct Busy<'a>(&'a SimDisk);

impl<'a> Busy<'a> {
    fn enter(d: &'a SimDisk, func: &str) -> Busy<'a> {
        if d.busy.swap(true, Ordering::SeqCst) {
            die(&format!(
                "{func} on handle of {} while another thread is using it",
                d.name
            ));
        }
        Busy(d)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

fn range_ok(d: &SimDisk, start: u64, n: u64) -> bool {
    start.checked_add(n).is_some_and(|end| end <= d.capacity)
}

fn do_read(d: &SimDisk, start: u64, n: u64, buf: *mut u8) -> VixError {
    if buf.is_null() {
        return VIX_E_INVALID_ARG;
    }
    if !range_ok(d, start, n) {
        return VIX_E_DISK_OUTOFRANGE;
    }
    let call = state::READ_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let ms = config::slow_read_ms();
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if config::fail_read_at() == Some(call) {
        return config::fail_read_code();
    }
    let len = (n * SECTOR_SIZE) as usize;
    // SAFETY: the caller passes a buffer of n sectors (the C contract).
    let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    let short = config::short_read_at() == Some(call);
    let want = if short { len / 2 } else { len };
    let mut done = 0;
    while done < want {
        match d
            .file
            .read_at(&mut out[done..want], start * SECTOR_SIZE + done as u64)
        {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return VIX_E_FILE_ERROR,
        }
    }
    if short {
        return VIX_E_HOST_FILE_ERROR_EOF;
    }
    // A flat file shorter than the capacity reads as zeros past its end.
    out[done..].fill(0);
    VIX_OK
}

fn do_write(d: &SimDisk, start: u64, n: u64, buf: *const u8) -> VixError {
    if buf.is_null() {
        return VIX_E_INVALID_ARG;
    }
    if d.read_only {
        return VIX_E_FILE_READ_ONLY;
    }
    if !range_ok(d, start, n) {
        return VIX_E_DISK_OUTOFRANGE;
    }
    // SAFETY: the caller passes a buffer of n sectors (the C contract).
    let data = unsafe { std::slice::from_raw_parts(buf, (n * SECTOR_SIZE) as usize) };
    match d.file.write_all_at(data, start * SECTOR_SIZE) {
        Ok(()) => VIX_OK,
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => VIX_E_FILE_ERROR,
        Err(_) => VIX_E_FILE_ERROR,
    }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Read(h: *mut c_void, start: u64, n: u64, buf: *mut u8) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_Read") };
    let _b = Busy::enter(d, "VixDiskLib_Read");
    do_read(d, start, n, buf)
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Write(h: *mut c_void, start: u64, n: u64, buf: *const u8) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_Write") };
    let _b = Busy::enter(d, "VixDiskLib_Write");
    do_write(d, start, n, buf)
}

#[no_mangle]
pub extern "C" fn VixDiskLib_ReadAsync(
    h: *mut c_void,
    start: u64,
    n: u64,
    buf: *mut u8,
    cb: Option<CompletionCb>,
    data: *mut c_void,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_ReadAsync") };
    let _b = Busy::enter(d, "VixDiskLib_ReadAsync");
    let Some(cb) = cb else {
        return VIX_E_INVALID_ARG;
    };
    let r = do_read(d, start, n, buf);
    d.pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((cb, data as usize, r));
    VIX_ASYNC
}

#[no_mangle]
pub extern "C" fn VixDiskLib_WriteAsync(
    h: *mut c_void,
    start: u64,
    n: u64,
    buf: *const u8,
    cb: Option<CompletionCb>,
    data: *mut c_void,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_WriteAsync") };
    let _b = Busy::enter(d, "VixDiskLib_WriteAsync");
    let Some(cb) = cb else {
        return VIX_E_INVALID_ARG;
    };
    let r = do_write(d, start, n, buf);
    d.pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((cb, data as usize, r));
    VIX_ASYNC
}

/// Completes every pending async request (the I/O itself ran at submission).
#[no_mangle]
pub extern "C" fn VixDiskLib_Wait(h: *mut c_void) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_Wait") };
    let _b = Busy::enter(d, "VixDiskLib_Wait");
    let pending = std::mem::take(&mut *d.pending.lock().unwrap_or_else(|e| e.into_inner()));
    for (cb, data, r) in pending {
        // SAFETY: cb and data were given together by the caller at submission.
        unsafe { cb(data as *mut c_void, r) };
    }
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Flush(h: *mut c_void) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_Flush") };
    let _b = Busy::enter(d, "VixDiskLib_Flush");
    if d.read_only {
        return VIX_OK;
    }
    match d.file.sync_data() {
        Ok(()) => VIX_OK,
        Err(_) => VIX_E_FILE_ERROR,
    }
}

#[cfg(not(feature = "no-query-allocated"))]
/// Allocated byte ranges of the flat file in `[from, to)`, by SEEK_DATA/HOLE.
fn data_ranges(d: &SimDisk, from: u64, to: u64) -> Result<Vec<(u64, u64)>, VixError> {
    use std::os::fd::AsRawFd;
    let fd = d.file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        // SAFETY: fd is an open file descriptor owned by d.file; lseek has no
        // memory effects (I/O uses pread/pwrite, so the offset is unused).
        let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
        if data < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            if errno == Some(libc::ENXIO) {
                break;
            }
            // No SEEK_DATA support: everything is allocated.
            return Ok(vec![(from, to)]);
        }
        let data = data as u64;
        if data >= to {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as i64, libc::SEEK_HOLE) };
        let hole = if hole < 0 { to } else { (hole as u64).min(to) };
        out.push((data, hole));
        pos = hole;
    }
    Ok(out)
}

#[cfg(not(feature = "no-query-allocated"))]
#[no_mangle]
pub extern "C" fn VixDiskLib_QueryAllocatedBlocks(
    h: *mut c_void,
    start: u64,
    n: u64,
    chunk: u64,
    out: *mut *mut BlockList,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_QueryAllocatedBlocks") };
    let _b = Busy::enter(d, "VixDiskLib_QueryAllocatedBlocks");
    if out.is_null() || chunk < MIN_CHUNK_SIZE || !start.is_multiple_of(chunk) || n == 0 {
        return VIX_E_INVALID_ARG;
    }
    if !range_ok(d, start, n) {
        return VIX_E_DISK_OUTOFRANGE;
    }
    if !n.is_multiple_of(chunk) && start + n != d.capacity {
        return VIX_E_INVALID_ARG;
    }
    if n.div_ceil(chunk) > MAX_CHUNK_NUMBER {
        return VIX_E_INVALID_ARG;
    }
    let ranges = match data_ranges(d, start * SECTOR_SIZE, (start + n) * SECTOR_SIZE) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // Round each range out to whole chunks, clip to the query, merge.
    let mut blocks: Vec<Block> = Vec::new();
    let end = start + n;
    for (a, b) in ranges {
        let s = (a / SECTOR_SIZE) / chunk * chunk;
        let e = (b.div_ceil(SECTOR_SIZE)).div_ceil(chunk) * chunk;
        let (s, e) = (s.max(start), e.min(end));
        match blocks.last_mut() {
            Some(last) if last.offset + last.length >= s => {
                last.length = last.length.max(e - last.offset)
            }
            _ => blocks.push(Block {
                offset: s,
                length: e - s,
            }),
        }
    }
    let size = 8 + 16 * blocks.len().max(1);
    // SAFETY: malloc of `size` bytes fits the header and blocks.len()
    // entries; the copy stays inside it; FreeBlockList frees it.
    unsafe {
        let list = libc::malloc(size) as *mut BlockList;
        if list.is_null() {
            return VIX_E_OUT_OF_MEMORY;
        }
        (*list).num_blocks = blocks.len() as u32;
        let first = std::ptr::addr_of_mut!((*list).blocks) as *mut Block;
        std::ptr::copy_nonoverlapping(blocks.as_ptr(), first, blocks.len());
        *out = list;
    }
    VIX_OK
}

#[cfg(not(feature = "no-query-allocated"))]
#[no_mangle]
pub extern "C" fn VixDiskLib_FreeBlockList(list: *mut BlockList) -> VixError {
    require_init_free();
    // SAFETY: list is NULL or came from QueryAllocatedBlocks (malloc).
    unsafe { libc::free(list.cast()) };
    VIX_OK
}

#[cfg(not(feature = "no-query-allocated"))]
fn require_init_free() {
    state::require_init("VixDiskLib_FreeBlockList");
}

/// Copies `s` plus a NUL into `buf` when it fits; sets `*need`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `need` NULL or valid.
unsafe fn give(bytes: &[u8], buf: *mut c_char, len: usize, need: *mut usize) -> VixError {
    // SAFETY: per the contract.
    unsafe {
        if !need.is_null() {
            *need = bytes.len();
        }
        if buf.is_null() || len < bytes.len() {
            return VIX_E_BUFFER_TOOSMALL;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
    }
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_GetMetadataKeys(
    h: *mut c_void,
    buf: *mut c_char,
    len: usize,
    need: *mut usize,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_GetMetadataKeys") };
    let _b = Busy::enter(d, "VixDiskLib_GetMetadataKeys");
    let mut bytes = Vec::new();
    for (k, _) in d.desc.lock().unwrap_or_else(|e| e.into_inner()).metadata() {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(0);
    }
    bytes.push(0);
    // SAFETY: buf/len/need come from the caller per the C contract.
    unsafe { give(&bytes, buf, len, need) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_ReadMetadata(
    h: *mut c_void,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
    need: *mut usize,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_ReadMetadata") };
    let _b = Busy::enter(d, "VixDiskLib_ReadMetadata");
    // SAFETY: key is NULL or a valid C string.
    let Some(key) = (unsafe { cstr(key) }) else {
        return VIX_E_INVALID_ARG;
    };
    let Some(v) = d.desc.lock().unwrap_or_else(|e| e.into_inner()).get(&key) else {
        return VIX_E_DISK_KEY_NOTFOUND;
    };
    let mut bytes = v.into_bytes();
    bytes.push(0);
    // SAFETY: buf/len/need come from the caller per the C contract.
    unsafe { give(&bytes, buf, len, need) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_WriteMetadata(
    h: *mut c_void,
    key: *const c_char,
    val: *const c_char,
) -> VixError {
    // SAFETY: disk() aborts unless h is a live handle.
    let d = unsafe { disk(h, "VixDiskLib_WriteMetadata") };
    let _b = Busy::enter(d, "VixDiskLib_WriteMetadata");
    if d.read_only {
        return VIX_E_FILE_READ_ONLY;
    }
    // SAFETY: key/val are NULL or valid C strings.
    let (Some(k), Some(v)) = (unsafe { cstr(key) }, unsafe { cstr(val) }) else {
        return VIX_E_INVALID_ARG;
    };
    d.desc
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set(&k, &v)
        .err()
        .unwrap_or(VIX_OK)
}
