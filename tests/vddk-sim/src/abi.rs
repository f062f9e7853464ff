//! The C interface of `vixDiskLib.h` as the stand-in sees it, written from
//! the public header independently of `vddk-sys` (a layout mistake in one
//! must not cancel out in the other): error codes, open flags, and the
//! structs VDDK callers pass in or get back, laid out for x86-64 Linux.

#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_long, c_void};

pub type VixError = u64;

pub const VIX_OK: VixError = 0;
pub const VIX_E_FAIL: VixError = 1;
pub const VIX_E_OUT_OF_MEMORY: VixError = 2;
pub const VIX_E_INVALID_ARG: VixError = 3;
pub const VIX_E_FILE_NOT_FOUND: VixError = 4;
pub const VIX_E_NOT_SUPPORTED: VixError = 6;
pub const VIX_E_FILE_ERROR: VixError = 7;
pub const VIX_E_FILE_READ_ONLY: VixError = 11;
pub const VIX_E_FILE_ACCESS_ERROR: VixError = 13;
pub const VIX_E_BUFFER_TOOSMALL: VixError = 24;
pub const VIX_E_AUTHENTICATION_FAIL: VixError = 35;
pub const VIX_E_HOST_FILE_ERROR_EOF: VixError = 14005;
pub const VIX_E_HOST_TCP_CONN_LOST: VixError = 14011;
pub const VIX_E_DISK_INVAL: VixError = 16000;
pub const VIX_E_DISK_OUTOFRANGE: VixError = 16007;
pub const VIX_E_DISK_NOTSUPPORTED: VixError = 16013;
pub const VIX_E_DISK_KEY_NOTFOUND: VixError = 16052;
pub const VIX_ASYNC: VixError = 25000;

pub const FLAG_OPEN_UNBUFFERED: u32 = 1 << 0;
pub const FLAG_OPEN_SINGLE_LINK: u32 = 1 << 1;
pub const FLAG_OPEN_READ_ONLY: u32 = 1 << 2;

pub const SECTOR_SIZE: u64 = 512;
pub const MIN_CHUNK_SIZE: u64 = 128;
pub const MAX_CHUNK_NUMBER: u64 = 512 * 1024;

pub const CRED_UID: c_int = 1;

pub const ADAPTER_IDE: c_int = 1;
pub const ADAPTER_SCSI_BUSLOGIC: c_int = 2;
pub const ADAPTER_SCSI_LSILOGIC: c_int = 3;
pub const ADAPTER_UNKNOWN: c_int = 256;

/// `VixDiskLibGenericLogFunc`; the `va_list` arrives as a pointer.
pub type LogFunc = unsafe extern "C" fn(fmt: *const c_char, args: *mut c_void);
/// `VixDiskLibCompletionCB`.
pub type CompletionCb = unsafe extern "C" fn(data: *mut c_void, result: VixError);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct UidCreds {
    pub user_name: *const c_char,
    pub password: *const c_char,
}

/// `VixDiskLibConnectParams` (the creds and spec unions are modelled by
/// their largest member: three pointers each).
#[repr(C)]
pub struct ConnectParams {
    pub vmx_spec: *const c_char,
    pub server_name: *const c_char,
    pub thumb_print: *const c_char,
    pub private_use: c_long,
    pub cred_type: c_int,
    pub creds: UidCreds,
    pub creds_rest: *const c_void,
    pub port: u32,
    pub nfc_host_port: u32,
    pub reserved3: *const c_char,
    pub reserved4: [c_char; 8],
    pub reserved5: *const c_void,
    pub spec: [*const c_void; 3],
    pub spec_type: c_int,
}

#[repr(C)]
pub struct Geometry {
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
}

/// `VixDiskLibInfo` as VDDK 7 and 8 define it.
#[repr(C)]
pub struct Info {
    pub bios_geo: Geometry,
    pub phys_geo: Geometry,
    pub capacity: u64,
    pub adapter_type: c_int,
    pub num_links: c_int,
    pub parent_file_name_hint: *mut c_char,
    pub uuid: *mut c_char,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Block {
    pub offset: u64,
    pub length: u64,
}

/// `VixDiskLibBlockList`; `blocks` is a flexible array of `num_blocks`.
#[repr(C)]
pub struct BlockList {
    pub num_blocks: u32,
    pub blocks: [Block; 1],
}

#[cfg(target_arch = "x86_64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ConnectParams>() == 128);
    assert!(offset_of!(ConnectParams, cred_type) == 32);
    assert!(offset_of!(ConnectParams, creds) == 40);
    assert!(offset_of!(ConnectParams, port) == 64);
    assert!(offset_of!(ConnectParams, nfc_host_port) == 68);
    assert!(offset_of!(ConnectParams, spec_type) == 120);
    assert!(size_of::<Info>() == 64);
    assert!(offset_of!(Info, capacity) == 24);
    assert!(offset_of!(Info, uuid) == 48);
    assert!(offset_of!(Info, logical_sector_size) == 56);
    assert!(offset_of!(BlockList, blocks) == 8);
};

/// The name of an error code, for GetErrorText.
pub fn error_name(code: u64) -> &'static str {
    match code {
        0 => "VIX_OK",
        1 => "VIX_E_FAIL: Unknown error",
        2 => "VIX_E_OUT_OF_MEMORY: Memory allocation failed",
        3 => "VIX_E_INVALID_ARG: One of the parameters was invalid",
        4 => "VIX_E_FILE_NOT_FOUND: The file was not found",
        6 => "VIX_E_NOT_SUPPORTED: The operation is not supported",
        7 => "VIX_E_FILE_ERROR: A file access error occurred",
        11 => "VIX_E_FILE_READ_ONLY: The file is write-protected",
        13 => "VIX_E_FILE_ACCESS_ERROR: Insufficient permissions",
        24 => "VIX_E_BUFFER_TOOSMALL: Buffer too small",
        35 => "VIX_E_AUTHENTICATION_FAIL: Cannot connect: authentication failed",
        14005 => "VIX_E_HOST_FILE_ERROR_EOF: Unexpected end of file",
        14011 => "VIX_E_HOST_TCP_CONN_LOST: The connection was lost",
        16000 => "VIX_E_DISK_INVAL: Invalid disk",
        16007 => "VIX_E_DISK_OUTOFRANGE: Accessing beyond the end of the disk",
        16013 => "VIX_E_DISK_NOTSUPPORTED: The disk type is not supported",
        16052 => "VIX_E_DISK_KEY_NOTFOUND: The metadata key was not found",
        25000 => "VIX_ASYNC: The operation completes asynchronously",
        _ => "Unknown VIX error",
    }
}
