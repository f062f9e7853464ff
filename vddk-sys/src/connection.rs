//! [`ConnectParams`] (owned strings behind a `VixDiskLibConnectParams`) and
//! [`Connection`] (a `VixDiskLibConnection`), plus the calls that take
//! connect parameters: PrepareForAccess, EndAccess, Cleanup.
//!
//! Invariants: the C struct handed to VDDK points into the `CString`s of the
//! `ConnectParams` it was built from, which outlive the call; a connection
//! is disconnected exactly once, after the last [`crate::Disk`] opened
//! through it is closed (disks hold an `Arc` of it).

use std::ffi::{c_char, CString};
use std::sync::Arc;

use crate::error::SysError;
use crate::library::{cstring, opt_ptr, Library};
use crate::types::*;

/// What ConnectEx needs. `Default` (all `None`) is a local connection:
/// hosted disks on this machine, no server.
#[derive(Clone, Debug, Default)]
pub struct ConnectParams {
    /// "moref=vm-NN" for a managed VM.
    pub vmx_spec: Option<String>,
    /// vCenter/ESXi host name or address.
    pub server_name: Option<String>,
    /// SHA-1 thumbprint "AA:BB:..." of the server's certificate.
    pub thumbprint: Option<String>,
    pub user_name: Option<String>,
    pub password: Option<String>,
    /// 0 for the default port.
    pub port: u32,
    pub nfc_host_port: u32,
}

/// C strings kept alive while VDDK reads the struct that points at them.
pub(crate) struct CParams {
    _strings: Vec<CString>,
    pub(crate) raw: VixDiskLibConnectParams,
}

impl ConnectParams {
    /// Whether these parameters name a server (a remote connection).
    pub fn is_remote(&self) -> bool {
        self.server_name.is_some()
    }

    pub(crate) fn to_c(&self, func: &'static str) -> Result<CParams, SysError> {
        let mut strings = Vec::new();
        let mut ptr = |s: &Option<String>| -> Result<*mut c_char, SysError> {
            Ok(match s {
                None => std::ptr::null_mut(),
                Some(s) => {
                    let c = cstring(func, s)?;
                    let p = c.as_ptr() as *mut c_char;
                    strings.push(c); // moving a CString keeps its heap buffer
                    p
                }
            })
        };
        let mut raw = VixDiskLibConnectParams::zeroed();
        raw.vmx_spec = ptr(&self.vmx_spec)?;
        raw.server_name = ptr(&self.server_name)?;
        raw.thumb_print = ptr(&self.thumbprint)?;
        if self.user_name.is_some() || self.password.is_some() {
            raw.cred_type = VIXDISKLIB_CRED_UID;
            raw.creds.uid = VixDiskLibUidPasswdCreds {
                user_name: ptr(&self.user_name)?,
                password: ptr(&self.password)?,
            };
        }
        raw.port = self.port;
        raw.nfc_host_port = self.nfc_host_port;
        raw.spec_type = VIXDISKLIB_SPEC_VMX;
        Ok(CParams {
            _strings: strings,
            raw,
        })
    }
}

pub(crate) struct ConnInner {
    pub(crate) lib: Arc<Library>,
    pub(crate) raw: VixDiskLibConnection,
    pub(crate) read_only: bool,
}

// SAFETY: a VixDiskLibConnection may be used from any thread; VDDK only
// restricts disk handles (one thread each) and Open/Close (serialised by
// crate::disk's global lock).
unsafe impl Send for ConnInner {}
// SAFETY: as above; the connection itself is only passed to Open, which is
// serialised.
unsafe impl Sync for ConnInner {}

impl Drop for ConnInner {
    fn drop(&mut self) {
        if let Ok(f) = self.lib.vix_disconnect() {
            // SAFETY: raw came from ConnectEx and every disk opened through
            // it has been closed (each held an Arc of this struct).
            let err = unsafe { f(self.raw) };
            if err != VIX_OK {
                log::warn!(target: "vddk", "{}", self.lib.error("VixDiskLib_Disconnect", err));
            }
        }
    }
}

/// An open VDDK connection (local or to a vCenter/ESXi host).
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

impl Connection {
    /// `VixDiskLib_ConnectEx`. `snapshot_ref` ("snapshot-NN") selects the
    /// snapshot whose disks are opened; `transport_modes` is e.g. "nbdssl:nbd".
    pub fn connect(
        lib: &Arc<Library>,
        params: &ConnectParams,
        read_only: bool,
        snapshot_ref: Option<&str>,
        transport_modes: Option<&str>,
    ) -> Result<Connection, SysError> {
        const F: &str = "VixDiskLib_ConnectEx";
        let f = lib.vix_connect_ex()?;
        let cp = params.to_c(F)?;
        let snap = snapshot_ref.map(|s| cstring(F, s)).transpose()?;
        let modes = transport_modes.map(|s| cstring(F, s)).transpose()?;
        let mut conn: VixDiskLibConnection = std::ptr::null_mut();
        // SAFETY: cp.raw points at strings owned by cp; snap/modes are NULL
        // or NUL-terminated; conn is a valid out-pointer. A local connection
        // passes NULL parameters, as the header asks.
        let err = unsafe {
            f(
                if params.is_remote() {
                    &cp.raw
                } else {
                    std::ptr::null()
                },
                read_only as c_char,
                opt_ptr(&snap),
                opt_ptr(&modes),
                &mut conn,
            )
        };
        lib.check(F, err)?;
        if conn.is_null() {
            return Err(SysError::Invalid {
                func: F,
                msg: "returned no connection".into(),
            });
        }
        Ok(Connection {
            inner: Arc::new(ConnInner {
                lib: lib.clone(),
                raw: conn,
                read_only,
            }),
        })
    }

    /// The library this connection belongs to.
    pub fn library(&self) -> &Arc<Library> {
        &self.inner.lib
    }

    /// Whether the connection was made read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }
}

impl Library {
    /// `VixDiskLib_PrepareForAccess(params, identity)`.
    pub fn prepare_for_access(
        &self,
        params: &ConnectParams,
        identity: &str,
    ) -> Result<(), SysError> {
        self.access_call("VixDiskLib_PrepareForAccess", params, identity, true)
    }

    /// `VixDiskLib_EndAccess(params, identity)`.
    pub fn end_access(&self, params: &ConnectParams, identity: &str) -> Result<(), SysError> {
        self.access_call("VixDiskLib_EndAccess", params, identity, false)
    }

    fn access_call(
        &self,
        func: &'static str,
        params: &ConnectParams,
        identity: &str,
        prepare: bool,
    ) -> Result<(), SysError> {
        let f = if prepare {
            self.vix_prepare_for_access()?
        } else {
            self.vix_end_access()?
        };
        let cp = params.to_c(func)?;
        let id = cstring(func, identity)?;
        // SAFETY: cp.raw and id are valid for the duration of the call.
        let err = unsafe { f(&cp.raw, id.as_ptr()) };
        self.check(func, err)
    }

    /// `VixDiskLib_Cleanup(params)`: (VMs cleaned up, VMs still needing it).
    pub fn cleanup(&self, params: &ConnectParams) -> Result<(u32, u32), SysError> {
        const F: &str = "VixDiskLib_Cleanup";
        let f = self.vix_cleanup()?;
        let mut cp = params.to_c(F)?;
        cp.raw.vmx_spec = std::ptr::null_mut(); // the header asks for NULL here
        let (mut done, mut left) = (0u32, 0u32);
        // SAFETY: cp.raw is valid; done/left are valid out-pointers.
        let err = unsafe { f(&cp.raw, &mut done, &mut left) };
        self.check(F, err)?;
        Ok((done, left))
    }
}
