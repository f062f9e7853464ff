//! Exported entry points for the library's life cycle, connections, disk
//! open/close, disk info and error text. I/O and metadata are in `io.rs`.
//!
//! Path rules: a local connection (NULL params or no server name) opens an
//! absolute descriptor path; a remote one opens "[datastore] dir/x.vmdk",
//! resolved through `VDDK_SIM_DATASTORES`. A remote connection with a
//! snapshotRef reads, for read-only opens, the frozen flat file
//! `<datastore>/.vmkeep-snapshots/<snapshotRef>/dir/x-flat.vmdk`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crate::abi::*;
use crate::config;
use crate::state::{self, require_init, OpenCloseGuard};
use crate::vmdk::Descriptor;

/// A connection.
pub struct SimConn {
    remote: bool,
    read_only: bool,
    snapshot: Option<String>,
    thumbprint: Option<String>,
    transport: &'static CStr,
}

/// An open disk.
pub struct SimDisk {
    pub name: String,
    pub file: File,
    pub desc: Mutex<Descriptor>,
    pub capacity: u64,
    pub read_only: bool,
    pub busy: AtomicBool,
    pub transport: &'static CStr,
    pub pending: Mutex<Vec<(CompletionCb, usize, VixError)>>,
}

/// Copies a C string (NULL → None).
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: per the contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_InitEx(
    major: u32,
    _minor: u32,
    log: Option<LogFunc>,
    _warn: Option<LogFunc>,
    _panic: Option<LogFunc>,
    _lib_dir: *const c_char,
    _config_file: *const c_char,
) -> VixError {
    if !(6..=8).contains(&major) {
        return VIX_E_NOT_SUPPORTED;
    }
    state::set_init(true, log);
    state::log(&format!("InitEx({major}) ok"));
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Exit() {
    require_init("VixDiskLib_Exit");
    state::set_init(false, None);
}

#[no_mangle]
pub extern "C" fn VixDiskLib_GetErrorText(err: VixError, _locale: *const c_char) -> *mut c_char {
    let text = format!("{} (vddk-sim)", error_name(err & 0xFFFF));
    let c = CString::new(text).unwrap_or_default();
    // SAFETY: c is a valid C string; strdup returns a malloc'd copy the
    // caller frees with FreeErrorText.
    unsafe { libc::strdup(c.as_ptr()) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_FreeErrorText(text: *mut c_char) {
    // SAFETY: text is NULL or came from GetErrorText (strdup).
    unsafe { libc::free(text.cast()) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_AllocateConnectParams() -> *mut ConnectParams {
    // SAFETY: calloc of one zeroed struct; freed by FreeConnectParams.
    unsafe { libc::calloc(1, std::mem::size_of::<ConnectParams>()).cast() }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_FreeConnectParams(p: *mut ConnectParams) {
    // SAFETY: p is NULL or came from AllocateConnectParams.
    unsafe { libc::free(p.cast()) }
}

/// Transport-mode names as static C strings.
fn transport(modes: Option<&str>) -> &'static CStr {
    for m in modes.unwrap_or("nbdssl:nbd").split(':') {
        match m {
            "nbdssl" => return c"nbdssl",
            "nbd" => return c"nbd",
            "hotadd" => return c"hotadd",
            "san" => return c"san",
            _ => {}
        }
    }
    c"nbd"
}

#[no_mangle]
pub extern "C" fn VixDiskLib_ConnectEx(
    params: *const ConnectParams,
    read_only: c_char,
    snapshot_ref: *const c_char,
    transport_modes: *const c_char,
    out: *mut *mut c_void,
) -> VixError {
    require_init("VixDiskLib_ConnectEx");
    if out.is_null() {
        return VIX_E_INVALID_ARG;
    }
    // SAFETY: params is NULL or points at a caller-owned ConnectParams whose
    // string fields are NULL or valid C strings; likewise the two strings.
    let conn = unsafe {
        let remote = !params.is_null() && !(*params).server_name.is_null();
        let mut conn = SimConn {
            remote,
            read_only: read_only != 0,
            snapshot: None,
            thumbprint: None,
            transport: c"file",
        };
        if remote {
            let p = &*params;
            if !cstr(p.vmx_spec).is_some_and(|s| s.starts_with("moref=")) {
                return VIX_E_INVALID_ARG;
            }
            let (user, pass) = if p.cred_type == CRED_UID {
                (cstr(p.creds.user_name), cstr(p.creds.password))
            } else {
                (None, None)
            };
            let (Some(user), Some(pass)) = (user, pass) else {
                return VIX_E_AUTHENTICATION_FAIL;
            };
            if user.is_empty() || pass.is_empty() {
                return VIX_E_AUTHENTICATION_FAIL;
            }
            if let Some((u, pw)) = config::credentials() {
                if u != user || pw != pass {
                    return VIX_E_AUTHENTICATION_FAIL;
                }
            }
            conn.snapshot = cstr(snapshot_ref);
            conn.thumbprint = cstr(p.thumb_print);
            conn.transport = transport(cstr(transport_modes).as_deref());
        }
        conn
    };
    let p = Box::into_raw(Box::new(conn)) as *mut c_void;
    state::register(p);
    // SAFETY: out is a valid out-pointer (checked non-NULL).
    unsafe { *out = p };
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Disconnect(conn: *mut c_void) -> VixError {
    require_init("VixDiskLib_Disconnect");
    state::unregister(conn, "VixDiskLib_Disconnect");
    // SAFETY: conn was live (just unregistered) and came from Box::into_raw.
    drop(unsafe { Box::from_raw(conn as *mut SimConn) });
    VIX_OK
}

/// Descriptor path, flat file path, and whether the flat file is a frozen
/// snapshot copy.
fn resolve(conn: &SimConn, path: &str, read_only: bool) -> Result<(PathBuf, PathBuf), VixError> {
    if !conn.remote {
        let desc = PathBuf::from(path);
        if !desc.is_absolute() {
            return Err(VIX_E_FILE_NOT_FOUND);
        }
        let d = Descriptor::load(&desc)?;
        let flat = desc.parent().unwrap_or(Path::new("/")).join(d.flat_name());
        return Ok((desc, flat));
    }
    let rest = path.strip_prefix('[').ok_or(VIX_E_FILE_NOT_FOUND)?;
    let (ds, rel) = rest.split_once(']').ok_or(VIX_E_INVALID_ARG)?;
    let rel = rel.trim_start();
    if rel.split('/').any(|c| c == "..") {
        return Err(VIX_E_INVALID_ARG);
    }
    let dir = config::datastore_dir(ds).ok_or(VIX_E_FILE_NOT_FOUND)?;
    let desc = dir.join(rel);
    let d = Descriptor::load(&desc)?;
    let rel_dir = Path::new(rel).parent().unwrap_or(Path::new(""));
    let flat = match (&conn.snapshot, read_only) {
        (Some(snap), true) => dir
            .join(".vmkeep-snapshots")
            .join(snap)
            .join(rel_dir)
            .join(d.flat_name()),
        _ => dir.join(rel_dir).join(d.flat_name()),
    };
    Ok((desc, flat))
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Open(
    conn: *const c_void,
    path: *const c_char,
    flags: u32,
    out: *mut *mut c_void,
) -> VixError {
    require_init("VixDiskLib_Open");
    let _g = OpenCloseGuard::enter("VixDiskLib_Open");
    state::check_live(conn, "VixDiskLib_Open");
    if out.is_null() {
        return VIX_E_INVALID_ARG;
    }
    // SAFETY: conn is live, so it points at a SimConn we allocated; path is
    // NULL or a valid C string.
    let (conn, path) = unsafe { (&*(conn as *const SimConn), cstr(path)) };
    let Some(path) = path else {
        return VIX_E_INVALID_ARG;
    };
    if conn.remote {
        let expected = config::thumbprint();
        let ok = match (&conn.thumbprint, &expected) {
            (None, _) => false,
            (Some(t), Some(e)) => t.eq_ignore_ascii_case(e),
            (Some(_), None) => true,
        };
        if !ok {
            state::log(&format!("Open {path}: SSL thumbprint mismatch"));
            return VIX_E_FAIL;
        }
    }
    let read_only = flags & FLAG_OPEN_READ_ONLY != 0 || conn.read_only;
    let (desc_path, flat) = match resolve(conn, &path, read_only) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let desc = match Descriptor::load(&desc_path) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let file = match OpenOptions::new().read(true).write(!read_only).open(&flat) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return VIX_E_FILE_NOT_FOUND,
        Err(_) => return VIX_E_FILE_ACCESS_ERROR,
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let disk = SimDisk {
        name: path.clone(),
        capacity: desc.capacity(len),
        file,
        desc: Mutex::new(desc),
        read_only,
        busy: AtomicBool::new(false),
        transport: conn.transport,
        pending: Mutex::new(Vec::new()),
    };
    config::access_log(&format!("Open {path} {}", flat.display()));
    state::log(&format!("Open {path} -> {}", flat.display()));
    let p = Box::into_raw(Box::new(disk)) as *mut c_void;
    state::register(p);
    // SAFETY: out is a valid out-pointer (checked non-NULL).
    unsafe { *out = p };
    VIX_OK
}

/// The live disk behind `h`; aborts for unknown or closed handles.
///
/// # Safety
/// Only `VixDiskLibHandle`s from Open are live; a live one points at a
/// `SimDisk` that stays allocated until Close.
pub unsafe fn disk<'a>(h: *const c_void, func: &str) -> &'a SimDisk {
    require_init(func);
    state::check_live(h, func);
    // SAFETY: h is live (checked), so it is a SimDisk from Box::into_raw.
    unsafe { &*(h as *const SimDisk) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Close(h: *mut c_void) -> VixError {
    require_init("VixDiskLib_Close");
    let _g = OpenCloseGuard::enter("VixDiskLib_Close");
    state::unregister(h, "VixDiskLib_Close");
    // SAFETY: h was live and came from Box::into_raw in Open.
    let d = unsafe { Box::from_raw(h as *mut SimDisk) };
    if d.busy.load(std::sync::atomic::Ordering::SeqCst) {
        crate::die("VixDiskLib_Close while another thread uses the handle");
    }
    config::access_log(&format!("Close {}", d.name));
    VIX_OK
}

fn adapter(name: Option<String>) -> c_int {
    match name.as_deref() {
        Some("ide") => ADAPTER_IDE,
        Some("buslogic") => ADAPTER_SCSI_BUSLOGIC,
        Some("lsilogic") => ADAPTER_SCSI_LSILOGIC,
        _ => ADAPTER_UNKNOWN,
    }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_GetInfo(h: *mut c_void, out: *mut *mut Info) -> VixError {
    // SAFETY: checked by disk().
    let d = unsafe { disk(h, "VixDiskLib_GetInfo") };
    if out.is_null() {
        return VIX_E_INVALID_ARG;
    }
    let desc = d.desc.lock().unwrap_or_else(|e| e.into_inner());
    let geo = |k: &str| desc.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: calloc returns zeroed memory for one Info or NULL; strdup
    // copies valid C strings; FreeInfo frees both.
    unsafe {
        let info = libc::calloc(1, std::mem::size_of::<Info>()) as *mut Info;
        if info.is_null() {
            return VIX_E_OUT_OF_MEMORY;
        }
        (*info).bios_geo = Geometry {
            cylinders: geo("geometry.biosCylinders"),
            heads: geo("geometry.biosHeads"),
            sectors: geo("geometry.biosSectors"),
        };
        (*info).phys_geo = Geometry {
            cylinders: geo("geometry.cylinders"),
            heads: geo("geometry.heads"),
            sectors: geo("geometry.sectors"),
        };
        (*info).capacity = d.capacity;
        (*info).adapter_type = adapter(desc.get("adapterType"));
        (*info).num_links = 1;
        (*info).parent_file_name_hint = std::ptr::null_mut();
        (*info).uuid = match desc.get("uuid").and_then(|u| CString::new(u).ok()) {
            Some(u) => libc::strdup(u.as_ptr()),
            None => std::ptr::null_mut(),
        };
        (*info).logical_sector_size = SECTOR_SIZE as u32;
        (*info).physical_sector_size = SECTOR_SIZE as u32;
        *out = info;
    }
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_FreeInfo(info: *mut Info) {
    require_init("VixDiskLib_FreeInfo");
    if info.is_null() {
        return;
    }
    // SAFETY: info came from GetInfo; its strings from strdup or NULL.
    unsafe {
        libc::free((*info).uuid.cast());
        libc::free((*info).parent_file_name_hint.cast());
        libc::free(info.cast());
    }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_GetTransportMode(h: *mut c_void) -> *const c_char {
    // SAFETY: checked by disk().
    let d = unsafe { disk(h, "VixDiskLib_GetTransportMode") };
    d.transport.as_ptr()
}

/// Reads the vmxSpec of PrepareForAccess/EndAccess parameters.
///
/// # Safety
/// `p` is NULL or a valid ConnectParams.
unsafe fn vm_of(p: *const ConnectParams) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { cstr((*p).vmx_spec) }
}

#[no_mangle]
pub extern "C" fn VixDiskLib_PrepareForAccess(
    p: *const ConnectParams,
    id: *const c_char,
) -> VixError {
    require_init("VixDiskLib_PrepareForAccess");
    // SAFETY: p/id are NULL or valid per the C interface.
    let (vm, id) = unsafe { (vm_of(p), cstr(id)) };
    let (Some(vm), Some(id)) = (vm, id) else {
        return VIX_E_INVALID_ARG;
    };
    config::access_log(&format!("PrepareForAccess {vm} {id}"));
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_EndAccess(p: *const ConnectParams, id: *const c_char) -> VixError {
    require_init("VixDiskLib_EndAccess");
    // SAFETY: p/id are NULL or valid per the C interface.
    let (vm, id) = unsafe { (vm_of(p), cstr(id)) };
    let (Some(vm), Some(id)) = (vm, id) else {
        return VIX_E_INVALID_ARG;
    };
    config::access_log(&format!("EndAccess {vm} {id}"));
    VIX_OK
}

#[no_mangle]
pub extern "C" fn VixDiskLib_Cleanup(
    _p: *const ConnectParams,
    cleaned: *mut u32,
    remaining: *mut u32,
) -> VixError {
    require_init("VixDiskLib_Cleanup");
    // SAFETY: each out-pointer is NULL or valid.
    unsafe {
        if !cleaned.is_null() {
            *cleaned = 0;
        }
        if !remaining.is_null() {
            *remaining = 0;
        }
    }
    VIX_OK
}
