//! [`SysError`]: why a VDDK call failed — the library could not be found or
//! loaded, a symbol is missing from this VDDK version, the library returned
//! a `VixError` (kept with its text and the function that returned it), or
//! the caller passed something the wrapper refuses before calling C.

use std::path::PathBuf;

use thiserror::Error;

use crate::types::{vix_error_code, VixError};

/// A failure of a VDDK call or of loading the library.
#[derive(Debug, Error)]
pub enum SysError {
    #[error("no VDDK library in {dir}: tried {tried}")]
    NotFound { dir: PathBuf, tried: String },
    #[error("cannot load VDDK library {path}: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("this VDDK library has no {0} (too old?)")]
    MissingSymbol(&'static str),
    #[error("{func}: {text} (VDDK error {code})", code = vix_error_code(*.error))]
    Vix {
        func: &'static str,
        error: VixError,
        text: String,
    },
    #[error("{func}: {msg}")]
    Invalid { func: &'static str, msg: String },
}

impl SysError {
    /// The VDDK error code (`error & 0xFFFF`) when the library returned one.
    pub fn code(&self) -> Option<u16> {
        match self {
            SysError::Vix { error, .. } => Some(vix_error_code(*error)),
            _ => None,
        }
    }

    /// The VDDK function that failed, when there is one.
    pub fn function(&self) -> Option<&'static str> {
        match self {
            SysError::Vix { func, .. } | SysError::Invalid { func, .. } => Some(func),
            SysError::MissingSymbol(f) => Some(f),
            _ => None,
        }
    }
}
