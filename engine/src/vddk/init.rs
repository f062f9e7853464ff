//! The process-wide VDDK library: loaded from one libdir and initialised
//! with `InitEx` exactly once, before any connection (VDDK wants InitEx
//! before the threads that use it exist; callers open connections only
//! after [`library`] returns). Log, warning and panic messages go to the
//! `log` crate (target `vddk`).
//!
//! Invariant: one libdir per process; asking for another is an error, not
//! a silent switch. The library is never unloaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vddk_sys::Library;

use super::VddkError;

static LIBRARY: Mutex<Option<(PathBuf, Arc<Library>)>> = Mutex::new(None);

/// The library from `libdir`, loaded and initialised on first use.
pub fn library(libdir: &Path) -> Result<Arc<Library>, VddkError> {
    let want = libdir
        .canonicalize()
        .unwrap_or_else(|_| libdir.to_path_buf());
    let mut slot = LIBRARY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((have, lib)) = slot.as_ref() {
        if *have != want {
            return Err(VddkError::InitConflict {
                have: have.clone(),
                want,
            });
        }
        return Ok(lib.clone());
    }
    let object = want.display().to_string();
    let lib = Library::load(&want).map_err(|e| VddkError::from_sys(e, &object))?;
    let major = lib.version();
    lib.init_ex(major, 0, Some(&want), None)
        .map_err(|e| VddkError::from_sys(e, &object))?;
    log::debug!(target: "vddk", "loaded {} (VDDK {major})", lib.path().display());
    let lib = Arc::new(lib);
    *slot = Some((want, lib.clone()));
    Ok(lib)
}
