//! [`ConnectSpec`] (where and how to connect), [`VddkConnection`] and
//! [`AccessGuard`].
//!
//! A spec without a server is a *local* connection: hosted VMDK files on
//! this machine, opened by absolute path. With a server it is *remote*:
//! user and password, the VM's moref ("vm-NN", sent as vmxSpec
//! "moref=vm-NN"), and the server certificate's SHA-1 thumbprint
//! ("AA:BB:…", 20 bytes) are all required, checked here before VDDK sees
//! them. Invariant: an [`AccessGuard`] calls EndAccess exactly once, on
//! [`AccessGuard::end`] or on drop (errors, panics, early returns).

use std::path::Path;
use std::sync::Arc;

use vddk_sys::types::VIXDISKLIB_FLAG_OPEN_READ_ONLY;
use vddk_sys::{ConnectParams, Connection, Library};

use super::{init, VddkDisk, VddkError};

/// Where and how to connect.
#[derive(Clone, Debug, Default)]
pub struct ConnectSpec {
    /// vCenter/ESXi host name; `None` for a local connection.
    pub server: Option<String>,
    /// 0 for the default port.
    pub port: u32,
    pub user: Option<String>,
    pub password: Option<String>,
    /// SHA-1 thumbprint of the server certificate, "AA:BB:..." (colons optional).
    pub thumbprint: Option<String>,
    /// The VM's managed object reference, "vm-NN".
    pub vm_moref: Option<String>,
    /// The snapshot whose disks are read, "snapshot-NN".
    pub snapshot_ref: Option<String>,
    /// Transport modes in order of preference, "nbdssl:nbd".
    pub transport: Option<String>,
    pub read_only: bool,
}

/// Normalises a SHA-1 thumbprint to "AA:BB:...:TT".
pub fn normalize_thumbprint(t: &str) -> Option<String> {
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

impl ConnectSpec {
    /// Names the connection in errors.
    pub fn describe(&self) -> String {
        match &self.server {
            Some(s) => s.clone(),
            None => "local VDDK connection".into(),
        }
    }

    fn invalid(&self, msg: impl Into<String>) -> VddkError {
        VddkError::Invalid {
            object: self.describe(),
            msg: msg.into(),
        }
    }

    /// Checks the spec and builds VDDK's connect parameters.
    pub fn params(&self) -> Result<ConnectParams, VddkError> {
        let Some(server) = &self.server else {
            return Ok(ConnectParams::default());
        };
        let tp = self.thumbprint.as_deref().ok_or_else(|| {
            self.invalid("a remote VDDK connection needs the server's SHA-1 thumbprint")
        })?;
        let tp = normalize_thumbprint(tp).ok_or_else(|| {
            self.invalid(format!(
                "{tp:?} is not a SHA-1 thumbprint (20 hex bytes, AA:BB:...)"
            ))
        })?;
        let moref = self
            .vm_moref
            .as_deref()
            .ok_or_else(|| self.invalid("a remote VDDK connection needs the VM's moref (vm-NN)"))?;
        if moref.is_empty() || moref.contains(['=', ' ']) {
            return Err(self.invalid(format!("{moref:?} is not a VM moref")));
        }
        let (Some(user), Some(password)) = (&self.user, &self.password) else {
            return Err(self.invalid("a remote VDDK connection needs a user and a password"));
        };
        Ok(ConnectParams {
            vmx_spec: Some(format!("moref={moref}")),
            server_name: Some(server.clone()),
            thumbprint: Some(tp),
            user_name: Some(user.clone()),
            password: Some(password.clone()),
            port: self.port,
            nfc_host_port: 0,
        })
    }
}

/// An open VDDK connection.
pub struct VddkConnection {
    conn: Connection,
    spec: ConnectSpec,
}

impl VddkConnection {
    /// Initialises VDDK from `libdir` if needed, then ConnectEx.
    pub fn connect(libdir: &Path, spec: ConnectSpec) -> Result<VddkConnection, VddkError> {
        let lib = init::library(libdir)?;
        Self::connect_with(&lib, spec)
    }

    /// ConnectEx on an initialised library.
    pub fn connect_with(
        lib: &Arc<Library>,
        spec: ConnectSpec,
    ) -> Result<VddkConnection, VddkError> {
        let params = spec.params()?;
        let snapshot = spec.server.as_ref().and(spec.snapshot_ref.as_deref());
        let transport = spec.server.as_ref().and(spec.transport.as_deref());
        let conn = Connection::connect(lib, &params, spec.read_only, snapshot, transport)
            .map_err(|e| VddkError::from_sys(e, &spec.describe()))?;
        Ok(VddkConnection { conn, spec })
    }

    /// The spec it was made from.
    pub fn spec(&self) -> &ConnectSpec {
        &self.spec
    }

    /// Opens `path` ("[ds] vm/disk.vmdk" remotely, an absolute path locally).
    pub fn open(&self, path: &str, read_only: bool) -> Result<VddkDisk, VddkError> {
        let flags = if read_only || self.spec.read_only {
            VIXDISKLIB_FLAG_OPEN_READ_ONLY
        } else {
            0
        };
        let disk = self
            .conn
            .open(path, flags)
            .map_err(|e| VddkError::from_sys(e, path))?;
        VddkDisk::new(disk, path, flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY != 0)
    }
}

/// PrepareForAccess now, EndAccess when ended or dropped (remote only).
pub struct AccessGuard {
    lib: Arc<Library>,
    params: ConnectParams,
    identity: String,
    active: bool,
}

impl AccessGuard {
    /// Tells the host that `identity` ("vmkeep") is about to access the
    /// VM's disks (storage vMotion is held off until EndAccess). A local
    /// spec gives an inactive guard.
    pub fn prepare(
        lib: &Arc<Library>,
        spec: &ConnectSpec,
        identity: &str,
    ) -> Result<AccessGuard, VddkError> {
        let params = spec.params()?;
        let active = spec.server.is_some();
        if active {
            lib.prepare_for_access(&params, identity)
                .map_err(|e| VddkError::from_sys(e, &spec.describe()))?;
        }
        Ok(AccessGuard {
            lib: lib.clone(),
            params,
            identity: identity.to_string(),
            active,
        })
    }

    /// Calls EndAccess now and reports its result.
    pub fn end(mut self) -> Result<(), VddkError> {
        self.end_inner()
    }

    fn end_inner(&mut self) -> Result<(), VddkError> {
        if !std::mem::replace(&mut self.active, false) {
            return Ok(());
        }
        let object = self.params.server_name.clone().unwrap_or_default();
        self.lib
            .end_access(&self.params, &self.identity)
            .map_err(|e| VddkError::from_sys(e, &object))
    }
}

impl Drop for AccessGuard {
    fn drop(&mut self) {
        if let Err(e) = self.end_inner() {
            log::warn!(target: "vddk", "EndAccess: {e}");
        }
    }
}
