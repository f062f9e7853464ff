//! [`VddkError`]: one typed error per kind of VDDK failure, each carrying a
//! [`VixFailure`] (function, object, code, library text) when the library
//! returned a code. [`VddkError::retryable`] says whether trying again can
//! help (network and host errors, busy objects), never for wrong input.

use std::path::PathBuf;

use thiserror::Error;
use vddk_sys::types as t;
use vddk_sys::SysError;

/// What the library said about a failed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VixFailure {
    /// The VDDK function ("VixDiskLib_Open").
    pub func: &'static str,
    /// What it was called on ("[LocalDS_0] vm/disk1.vmdk", "vcenter.example").
    pub object: String,
    /// `VixError & 0xFFFF`.
    pub code: u16,
    /// The library's text for the error.
    pub text: String,
}

impl std::fmt::Display for VixFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} failed: {} (VDDK error {})",
            self.object, self.func, self.text, self.code
        )
    }
}

/// A VDDK failure.
#[derive(Debug, Error)]
pub enum VddkError {
    #[error("no VDDK library in {dir} (tried {tried}); point --vddk-libdir at VDDK's directory")]
    LibraryNotFound { dir: PathBuf, tried: String },
    #[error("cannot load VDDK library {path}: {msg}")]
    LibraryLoad { path: PathBuf, msg: String },
    #[error("VDDK was initialised from {have} in this process; cannot switch to {want}")]
    InitConflict { have: PathBuf, want: PathBuf },
    #[error("this VDDK library has no {0} (it needs a newer VDDK)")]
    MissingFunction(&'static str),
    #[error("not found: {0}")]
    NotFound(VixFailure),
    #[error("authentication failed: {0}")]
    AuthenticationFailed(VixFailure),
    #[error("beyond the end of the disk: {0}")]
    OutOfRange(VixFailure),
    #[error("read-only: {0}")]
    ReadOnly(VixFailure),
    #[error("metadata key not found: {0}")]
    KeyNotFound(VixFailure),
    #[error("connection to the host failed or was lost: {0}")]
    Connection(VixFailure),
    #[error("{0}")]
    Failed(VixFailure),
    #[error("{object}: {msg}")]
    Misaligned { object: String, msg: String },
    #[error("{object}: {msg}")]
    Invalid { object: String, msg: String },
}

/// Codes for which a retry (often after reconnecting) can help.
fn code_retryable(code: u16) -> bool {
    matches!(
        code,
        t::VIX_E_OBJECT_IS_BUSY
            | t::VIX_E_FILE_ALREADY_LOCKED
            | t::VIX_E_HOST_NOT_CONNECTED
            | t::VIX_E_VM_HOST_DISCONNECTED
            | t::VIX_E_HOST_CONNECTION_LOST
            | t::VIX_E_CANNOT_CONNECT_TO_HOST
    ) || (14000..15000).contains(&code)
        || (30000..31000).contains(&code)
}

impl VddkError {
    /// Types a `vddk-sys` error about `object`.
    pub fn from_sys(e: SysError, object: &str) -> VddkError {
        match e {
            SysError::NotFound { dir, tried } => VddkError::LibraryNotFound { dir, tried },
            SysError::Load { path, msg } => VddkError::LibraryLoad { path, msg },
            SysError::MissingSymbol(f) => VddkError::MissingFunction(f),
            SysError::Invalid { func, msg } => VddkError::Invalid {
                object: object.to_string(),
                msg: format!("{func}: {msg}"),
            },
            SysError::Vix { func, error, text } => {
                let code = vddk_sys::vix_error_code(error);
                let f = VixFailure {
                    func,
                    object: object.to_string(),
                    code,
                    text,
                };
                match code {
                    t::VIX_E_FILE_NOT_FOUND | t::VIX_E_OBJECT_NOT_FOUND => VddkError::NotFound(f),
                    t::VIX_E_AUTHENTICATION_FAIL => VddkError::AuthenticationFailed(f),
                    t::VIX_E_DISK_OUTOFRANGE => VddkError::OutOfRange(f),
                    t::VIX_E_FILE_READ_ONLY => VddkError::ReadOnly(f),
                    t::VIX_E_DISK_KEY_NOTFOUND => VddkError::KeyNotFound(f),
                    c if code_retryable(c) => VddkError::Connection(f),
                    _ => VddkError::Failed(f),
                }
            }
        }
    }

    /// The failure the library reported, if it reported one.
    pub fn failure(&self) -> Option<&VixFailure> {
        match self {
            VddkError::NotFound(f)
            | VddkError::AuthenticationFailed(f)
            | VddkError::OutOfRange(f)
            | VddkError::ReadOnly(f)
            | VddkError::KeyNotFound(f)
            | VddkError::Connection(f)
            | VddkError::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// The VDDK error code, when the library returned one.
    pub fn code(&self) -> Option<u16> {
        self.failure().map(|f| f.code)
    }

    /// The VDDK function that failed, when known.
    pub fn function(&self) -> Option<&'static str> {
        match self {
            VddkError::MissingFunction(f) => Some(f),
            _ => self.failure().map(|f| f.func),
        }
    }

    /// Whether trying again (possibly after reconnecting) can help.
    pub fn retryable(&self) -> bool {
        self.code().is_some_and(code_retryable)
    }
}
