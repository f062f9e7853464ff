//! [`Library`]: one loaded `libvixDiskLib.so.N` and its entry points.
//!
//! Invariants: the `libloading::Library` lives as long as the struct, so the
//! function pointers copied out of it stay valid; a symbol missing from the
//! file is `None` and its accessor returns [`SysError::MissingSymbol`].
//! `InitEx` is called at most once per process (an atomic guard); the
//! engine keeps one `Arc<Library>` for the whole process.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::SysError;
use crate::types::*;

/// Library versions tried, newest first.
pub const LIBRARY_VERSIONS: [u32; 3] = [8, 7, 6];

static INITIALISED: AtomicBool = AtomicBool::new(false);

macro_rules! vddk_functions {
    ($( $field:ident = $sym:literal : fn($($arg:ty),* $(,)?) $(-> $ret:ty)? ;)*) => {
        struct Fns {
            $( $field: Option<unsafe extern "C" fn($($arg),*) $(-> $ret)?>, )*
        }

        impl Fns {
            fn load(lib: &libloading::Library) -> Fns {
                Fns {
                    $( $field: {
                        // SAFETY: the symbol, when present, is the VDDK entry
                        // point of this name, whose C prototype the header
                        // gives as the type written here.
                        let sym = unsafe {
                            lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                concat!($sym, "\0").as_bytes(),
                            )
                        };
                        sym.ok().map(|s| *s)
                    }, )*
                }
            }
        }

        impl Library {
            $(
                #[doc = concat!("The raw `", $sym, "` entry point, or an error naming it when absent.")]
                pub fn $field(&self) -> Result<unsafe extern "C" fn($($arg),*) $(-> $ret)?, SysError> {
                    self.fns.$field.ok_or(SysError::MissingSymbol($sym))
                }
            )*

            /// Whether this library exports `name` (e.g. "VixDiskLib_QueryAllocatedBlocks").
            pub fn has_symbol(&self, name: &str) -> bool {
                $( if name == $sym { return self.fns.$field.is_some(); } )*
                false
            }
        }
    };
}

vddk_functions! {
    vix_init_ex = "VixDiskLib_InitEx": fn(u32, u32, Option<VixDiskLibGenericLogFunc>,
        Option<VixDiskLibGenericLogFunc>, Option<VixDiskLibGenericLogFunc>,
        *const c_char, *const c_char) -> VixError;
    vix_exit = "VixDiskLib_Exit": fn();
    vix_connect_ex = "VixDiskLib_ConnectEx": fn(*const VixDiskLibConnectParams, c_char,
        *const c_char, *const c_char, *mut VixDiskLibConnection) -> VixError;
    vix_disconnect = "VixDiskLib_Disconnect": fn(VixDiskLibConnection) -> VixError;
    vix_open = "VixDiskLib_Open": fn(VixDiskLibConnection, *const c_char, u32,
        *mut VixDiskLibHandle) -> VixError;
    vix_close = "VixDiskLib_Close": fn(VixDiskLibHandle) -> VixError;
    vix_get_info = "VixDiskLib_GetInfo": fn(VixDiskLibHandle, *mut *mut VixDiskLibInfo) -> VixError;
    vix_free_info = "VixDiskLib_FreeInfo": fn(*mut VixDiskLibInfo);
    vix_read = "VixDiskLib_Read": fn(VixDiskLibHandle, u64, u64, *mut u8) -> VixError;
    vix_write = "VixDiskLib_Write": fn(VixDiskLibHandle, u64, u64, *const u8) -> VixError;
    vix_read_async = "VixDiskLib_ReadAsync": fn(VixDiskLibHandle, u64, u64, *mut u8,
        Option<VixDiskLibCompletionCB>, *mut c_void) -> VixError;
    vix_write_async = "VixDiskLib_WriteAsync": fn(VixDiskLibHandle, u64, u64, *const u8,
        Option<VixDiskLibCompletionCB>, *mut c_void) -> VixError;
    vix_wait = "VixDiskLib_Wait": fn(VixDiskLibHandle) -> VixError;
    vix_flush = "VixDiskLib_Flush": fn(VixDiskLibHandle) -> VixError;
    vix_query_allocated_blocks = "VixDiskLib_QueryAllocatedBlocks": fn(VixDiskLibHandle, u64, u64,
        u64, *mut *mut VixDiskLibBlockList) -> VixError;
    vix_free_block_list = "VixDiskLib_FreeBlockList": fn(*mut VixDiskLibBlockList) -> VixError;
    vix_get_metadata_keys = "VixDiskLib_GetMetadataKeys": fn(VixDiskLibHandle, *mut c_char, usize,
        *mut usize) -> VixError;
    vix_read_metadata = "VixDiskLib_ReadMetadata": fn(VixDiskLibHandle, *const c_char, *mut c_char,
        usize, *mut usize) -> VixError;
    vix_write_metadata = "VixDiskLib_WriteMetadata": fn(VixDiskLibHandle, *const c_char,
        *const c_char) -> VixError;
    vix_prepare_for_access = "VixDiskLib_PrepareForAccess": fn(*const VixDiskLibConnectParams,
        *const c_char) -> VixError;
    vix_end_access = "VixDiskLib_EndAccess": fn(*const VixDiskLibConnectParams,
        *const c_char) -> VixError;
    vix_get_transport_mode = "VixDiskLib_GetTransportMode": fn(VixDiskLibHandle) -> *const c_char;
    vix_get_error_text = "VixDiskLib_GetErrorText": fn(VixError, *const c_char) -> *mut c_char;
    vix_free_error_text = "VixDiskLib_FreeErrorText": fn(*mut c_char);
    vix_cleanup = "VixDiskLib_Cleanup": fn(*const VixDiskLibConnectParams, *mut u32,
        *mut u32) -> VixError;
    vix_allocate_connect_params = "VixDiskLib_AllocateConnectParams": fn()
        -> *mut VixDiskLibConnectParams;
    vix_free_connect_params = "VixDiskLib_FreeConnectParams": fn(*mut VixDiskLibConnectParams);
}

/// A loaded VDDK library.
pub struct Library {
    fns: Fns,
    path: PathBuf,
    version: u32,
    _lib: libloading::Library,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish()
    }
}

impl Library {
    /// Finds and loads `libvixDiskLib.so.{8,7,6}` in `libdir` or `libdir/lib64`.
    pub fn load(libdir: &Path) -> Result<Library, SysError> {
        let mut tried = Vec::new();
        for version in LIBRARY_VERSIONS {
            for dir in [libdir.to_path_buf(), libdir.join("lib64")] {
                let path = dir.join(format!("libvixDiskLib.so.{version}"));
                if path.exists() {
                    return Self::load_file(&path, version);
                }
                tried.push(path.display().to_string());
            }
        }
        Err(SysError::NotFound {
            dir: libdir.to_path_buf(),
            tried: tried.join(", "),
        })
    }

    /// Loads one library file, known to be VDDK major `version`.
    pub fn load_file(path: &Path, version: u32) -> Result<Library, SysError> {
        // SAFETY: loading runs the library's initialisers; a VDDK library
        // (real or the stand-in) has none that break Rust's invariants.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| SysError::Load {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(Library {
            fns: Fns::load(&lib),
            path: path.to_path_buf(),
            version,
            _lib: lib,
        })
    }

    /// The file loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// VDDK major version, from the file name (8 for `.so.8`).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Builds an error for `func` that returned `error`, with the library's text.
    pub fn error(&self, func: &'static str, error: VixError) -> SysError {
        SysError::Vix {
            func,
            error,
            text: self.error_text(error),
        }
    }

    /// `Ok(())` for VIX_OK, else [`Library::error`].
    pub fn check(&self, func: &'static str, error: VixError) -> Result<(), SysError> {
        if error == VIX_OK {
            Ok(())
        } else {
            Err(self.error(func, error))
        }
    }

    /// The library's text for `error` (GetErrorText + FreeErrorText).
    pub fn error_text(&self, error: VixError) -> String {
        let (Ok(get), Ok(free)) = (self.vix_get_error_text(), self.vix_free_error_text()) else {
            return format!("VDDK error {}", vix_error_code(error));
        };
        // SAFETY: GetErrorText takes any error value and a NULL locale and
        // returns a library-allocated string or NULL.
        let p = unsafe { get(error, std::ptr::null()) };
        if p.is_null() {
            return format!("VDDK error {}", vix_error_code(error));
        }
        // SAFETY: p is a NUL-terminated string owned by the library until
        // FreeErrorText, which is called exactly once after copying.
        let text = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: p came from GetErrorText and is freed once.
        unsafe { free(p) };
        text
    }

    /// `VixDiskLib_InitEx(major, minor, log, warn, panic, libDir, configFile)`
    /// with the callbacks of [`crate::logcb`]. A second call in the same
    /// process is refused.
    pub fn init_ex(
        &self,
        major: u32,
        minor: u32,
        lib_dir: Option<&Path>,
        config_file: Option<&Path>,
    ) -> Result<(), SysError> {
        let f = self.vix_init_ex()?;
        let cpath = |p: Option<&Path>| -> Result<Option<CString>, SysError> {
            p.map(|p| cstring("VixDiskLib_InitEx", &p.display().to_string()))
                .transpose()
        };
        let dir = cpath(lib_dir)?;
        let cfg = cpath(config_file)?;
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(SysError::Invalid {
                func: "VixDiskLib_InitEx",
                msg: "already called in this process".into(),
            });
        }
        // SAFETY: the callbacks match VixDiskLibGenericLogFunc; the strings
        // are NUL-terminated and outlive the call (VDDK copies them).
        let err = unsafe {
            f(
                major,
                minor,
                Some(crate::logcb::log_info),
                Some(crate::logcb::log_warn),
                Some(crate::logcb::log_panic),
                opt_ptr(&dir),
                opt_ptr(&cfg),
            )
        };
        if err != VIX_OK {
            INITIALISED.store(false, Ordering::SeqCst);
        }
        self.check("VixDiskLib_InitEx", err)
    }

    /// `VixDiskLib_Exit`. Every connection and disk must be gone.
    pub fn exit_library(&self) -> Result<(), SysError> {
        let f = self.vix_exit()?;
        // SAFETY: Exit takes no arguments; callers have dropped all handles.
        unsafe { f() };
        INITIALISED.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// A C string, refusing interior NULs.
pub(crate) fn cstring(func: &'static str, s: &str) -> Result<CString, SysError> {
    CString::new(s).map_err(|_| SysError::Invalid {
        func,
        msg: format!("string contains a NUL byte: {s:?}"),
    })
}

/// The pointer of an optional C string, or NULL.
pub(crate) fn opt_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}
