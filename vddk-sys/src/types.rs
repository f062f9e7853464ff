//! The C types of `vixDiskLib.h` as laid out on x86-64 Linux (LP64): error
//! codes, open flags, `VixDiskLibConnectParams` (128 bytes),
//! `VixDiskLibInfo` (64 bytes from VDDK 7; the two sector-size fields at 56
//! and 60 do not exist in VDDK 6, whose struct ends at 56),
//! `VixDiskLibBlock` and `VixDiskLibBlockList`.
//!
//! Invariant: every size and field offset is checked at compile time below,
//! against the public header and nbdkit's `vddk-structs.h`.

use std::ffi::{c_char, c_int, c_long, c_void};
use std::mem::{offset_of, size_of};

/// A VDDK error: 64 bits, the code is the low 16 bits.
pub type VixError = u64;

/// The error code part of a [`VixError`].
pub const fn vix_error_code(e: VixError) -> u16 {
    (e & 0xFFFF) as u16
}

pub const VIX_OK: VixError = 0;
pub const VIX_E_FAIL: u16 = 1;
pub const VIX_E_OUT_OF_MEMORY: u16 = 2;
pub const VIX_E_INVALID_ARG: u16 = 3;
pub const VIX_E_FILE_NOT_FOUND: u16 = 4;
pub const VIX_E_OBJECT_IS_BUSY: u16 = 5;
pub const VIX_E_NOT_SUPPORTED: u16 = 6;
pub const VIX_E_FILE_ERROR: u16 = 7;
pub const VIX_E_DISK_FULL: u16 = 8;
pub const VIX_E_CANCELLED: u16 = 10;
pub const VIX_E_FILE_READ_ONLY: u16 = 11;
pub const VIX_E_FILE_ACCESS_ERROR: u16 = 13;
pub const VIX_E_FILE_ALREADY_LOCKED: u16 = 15;
pub const VIX_E_BUFFER_TOOSMALL: u16 = 24;
pub const VIX_E_OBJECT_NOT_FOUND: u16 = 25;
pub const VIX_E_HOST_NOT_CONNECTED: u16 = 26;
pub const VIX_E_VM_HOST_DISCONNECTED: u16 = 34;
pub const VIX_E_AUTHENTICATION_FAIL: u16 = 35;
pub const VIX_E_HOST_CONNECTION_LOST: u16 = 36;
pub const VIX_E_HOST_FILE_ERROR_EOF: u16 = 14005;
pub const VIX_E_HOST_SERVER_NOT_FOUND: u16 = 14008;
pub const VIX_E_HOST_NETWORK_CONN_REFUSED: u16 = 14009;
pub const VIX_E_HOST_TCP_SOCKET_ERROR: u16 = 14010;
pub const VIX_E_HOST_TCP_CONN_LOST: u16 = 14011;
pub const VIX_E_DISK_INVAL: u16 = 16000;
pub const VIX_E_DISK_NOINIT: u16 = 16001;
pub const VIX_E_DISK_OUTOFRANGE: u16 = 16007;
pub const VIX_E_DISK_KEY_NOTFOUND: u16 = 16052;
pub const VIX_E_DISK_INVALID_CONNECTION: u16 = 16054;
pub const VIX_E_CANNOT_CONNECT_TO_HOST: u16 = 18000;
pub const VIX_ASYNC: u16 = 25000;
pub const VIX_E_NET_HTTP_COULDNT_CONNECT: u16 = 30007;
pub const VIX_E_NET_HTTP_OPERATION_TIMEDOUT: u16 = 30028;
pub const VIX_E_NET_HTTP_TRANSFER: u16 = 30200;

/// `VixDiskLib_Open` flags.
pub const VIXDISKLIB_FLAG_OPEN_UNBUFFERED: u32 = 1;
pub const VIXDISKLIB_FLAG_OPEN_SINGLE_LINK: u32 = 2;
pub const VIXDISKLIB_FLAG_OPEN_READ_ONLY: u32 = 4;

/// Bytes per sector of every VDDK read and write.
pub const VIXDISKLIB_SECTOR_SIZE: u64 = 512;
/// Smallest chunk size (sectors) `QueryAllocatedBlocks` accepts.
pub const VIXDISKLIB_MIN_CHUNK_SIZE: u64 = 128;
/// Most chunks one `QueryAllocatedBlocks` call may cover.
pub const VIXDISKLIB_MAX_CHUNK_NUMBER: u64 = 512 * 1024;

pub const VIXDISKLIB_CRED_UID: c_int = 1;
pub const VIXDISKLIB_CRED_SESSIONID: c_int = 2;
pub const VIXDISKLIB_SPEC_VMX: c_int = 0;

pub const VIXDISKLIB_ADAPTER_IDE: c_int = 1;
pub const VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC: c_int = 2;
pub const VIXDISKLIB_ADAPTER_SCSI_LSILOGIC: c_int = 3;

/// Opaque connection and disk handles.
pub type VixDiskLibConnection = *mut c_void;
pub type VixDiskLibHandle = *mut c_void;

/// `VixDiskLibGenericLogFunc`: `(const char *fmt, va_list args)`. On x86-64
/// Linux a `va_list` parameter is passed as a pointer to its tag.
pub type VixDiskLibGenericLogFunc = unsafe extern "C" fn(fmt: *const c_char, args: *mut c_void);

/// Completion callback of ReadAsync/WriteAsync.
pub type VixDiskLibCompletionCB = unsafe extern "C" fn(data: *mut c_void, result: VixError);

/// `creds.uid` of [`VixDiskLibConnectParams`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VixDiskLibUidPasswdCreds {
    pub user_name: *mut c_char,
    pub password: *mut c_char,
}

/// `creds.sessionId` of [`VixDiskLibConnectParams`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VixDiskLibSessionIdCreds {
    pub cookie: *mut c_char,
    pub user_name: *mut c_char,
    pub key: *mut c_char,
}

/// The `creds` union.
#[repr(C)]
#[derive(Clone, Copy)]
pub union VixDiskLibCreds {
    pub uid: VixDiskLibUidPasswdCreds,
    pub session_id: VixDiskLibSessionIdCreds,
    pub reserved: *mut c_void,
}

/// `spec.vStorageObjSpec` (first-class disks).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VixDiskLibVStorageObjectSpec {
    pub id: *mut c_char,
    pub datastore_moref: *mut c_char,
    pub ss_id: *mut c_char,
}

/// `VixDiskLibConnectParams`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VixDiskLibConnectParams {
    pub vmx_spec: *mut c_char,
    pub server_name: *mut c_char,
    pub thumb_print: *mut c_char,
    pub reserved1: c_long,
    pub cred_type: c_int,
    pub creds: VixDiskLibCreds,
    pub port: u32,
    pub nfc_host_port: u32,
    pub reserved3: *mut c_char,
    pub reserved4: [c_char; 8],
    pub reserved5: *mut c_void,
    pub spec: VixDiskLibVStorageObjectSpec,
    pub spec_type: c_int,
}

/// `VixDiskLibGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VixDiskLibGeometry {
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
}

/// `VixDiskLibInfo` (VDDK 7+ layout; see the module comment).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VixDiskLibInfo {
    pub bios_geo: VixDiskLibGeometry,
    pub phys_geo: VixDiskLibGeometry,
    pub capacity: u64,
    pub adapter_type: c_int,
    pub num_links: c_int,
    pub parent_file_name_hint: *mut c_char,
    pub uuid: *mut c_char,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

/// Size of `VixDiskLibInfo` in VDDK 6.x (no sector-size fields).
pub const VIXDISKLIB_INFO_SIZE_V6: usize = 56;

/// `VixDiskLibBlock`: offset and length in sectors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VixDiskLibBlock {
    pub offset: u64,
    pub length: u64,
}

/// `VixDiskLibBlockList`: `num_blocks` entries start at `blocks`.
#[repr(C)]
#[derive(Debug)]
pub struct VixDiskLibBlockList {
    pub num_blocks: u32,
    pub blocks: [VixDiskLibBlock; 1],
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const _: () = {
    assert!(size_of::<VixDiskLibConnectParams>() == 128);
    assert!(offset_of!(VixDiskLibConnectParams, vmx_spec) == 0);
    assert!(offset_of!(VixDiskLibConnectParams, server_name) == 8);
    assert!(offset_of!(VixDiskLibConnectParams, thumb_print) == 16);
    assert!(offset_of!(VixDiskLibConnectParams, reserved1) == 24);
    assert!(offset_of!(VixDiskLibConnectParams, cred_type) == 32);
    assert!(offset_of!(VixDiskLibConnectParams, creds) == 40);
    assert!(size_of::<VixDiskLibCreds>() == 24);
    assert!(offset_of!(VixDiskLibConnectParams, port) == 64);
    assert!(offset_of!(VixDiskLibConnectParams, nfc_host_port) == 68);
    assert!(offset_of!(VixDiskLibConnectParams, reserved3) == 72);
    assert!(offset_of!(VixDiskLibConnectParams, reserved4) == 80);
    assert!(offset_of!(VixDiskLibConnectParams, reserved5) == 88);
    assert!(offset_of!(VixDiskLibConnectParams, spec) == 96);
    assert!(offset_of!(VixDiskLibConnectParams, spec_type) == 120);
    assert!(size_of::<VixDiskLibGeometry>() == 12);
    assert!(size_of::<VixDiskLibInfo>() == 64);
    assert!(offset_of!(VixDiskLibInfo, phys_geo) == 12);
    assert!(offset_of!(VixDiskLibInfo, capacity) == 24);
    assert!(offset_of!(VixDiskLibInfo, adapter_type) == 32);
    assert!(offset_of!(VixDiskLibInfo, num_links) == 36);
    assert!(offset_of!(VixDiskLibInfo, parent_file_name_hint) == 40);
    assert!(offset_of!(VixDiskLibInfo, uuid) == 48);
    assert!(offset_of!(VixDiskLibInfo, logical_sector_size) == VIXDISKLIB_INFO_SIZE_V6);
    assert!(offset_of!(VixDiskLibInfo, physical_sector_size) == 60);
    assert!(size_of::<VixDiskLibBlock>() == 16);
    assert!(offset_of!(VixDiskLibBlockList, blocks) == 8);
    assert!(size_of::<VixDiskLibBlockList>() == 24);
};

impl VixDiskLibConnectParams {
    /// All pointers null, all numbers zero (what `AllocateConnectParams` gives).
    pub fn zeroed() -> Self {
        VixDiskLibConnectParams {
            vmx_spec: std::ptr::null_mut(),
            server_name: std::ptr::null_mut(),
            thumb_print: std::ptr::null_mut(),
            reserved1: 0,
            cred_type: 0,
            creds: VixDiskLibCreds {
                session_id: VixDiskLibSessionIdCreds {
                    cookie: std::ptr::null_mut(),
                    user_name: std::ptr::null_mut(),
                    key: std::ptr::null_mut(),
                },
            },
            port: 0,
            nfc_host_port: 0,
            reserved3: std::ptr::null_mut(),
            reserved4: [0; 8],
            reserved5: std::ptr::null_mut(),
            spec: VixDiskLibVStorageObjectSpec {
                id: std::ptr::null_mut(),
                datastore_moref: std::ptr::null_mut(),
                ss_id: std::ptr::null_mut(),
            },
            spec_type: VIXDISKLIB_SPEC_VMX,
        }
    }
}
