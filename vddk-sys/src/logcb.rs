//! VDDK's log, warning and panic callbacks. Each receives a printf format
//! and a `va_list`; on x86-64 Linux a `va_list` parameter is passed as a
//! pointer, so the callbacks take `*mut c_void` and hand it, unchanged and
//! exactly once, to the C library's `vsnprintf`. Messages go to the `log`
//! crate under target `vddk` (log → info, warn → warn, panic → error).

use std::ffi::{c_char, c_int, c_void, CStr};

extern "C" {
    fn vsnprintf(buf: *mut c_char, n: usize, fmt: *const c_char, ap: *mut c_void) -> c_int;
}

/// Formats `fmt`/`args` (truncated to 4 KiB) without the trailing newline.
///
/// # Safety
/// `fmt` must be a valid C format string and `args` the `va_list` VDDK
/// passed with it, not yet consumed.
unsafe fn format(fmt: *const c_char, args: *mut c_void) -> String {
    if fmt.is_null() {
        return String::new();
    }
    let mut buf = [0 as c_char; 4096];
    // SAFETY: buf is writable for buf.len() bytes and vsnprintf always
    // NUL-terminates within n; fmt/args are valid per this fn's contract.
    let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, args) };
    if n < 0 {
        // SAFETY: fmt is a valid NUL-terminated string (contract).
        return unsafe { CStr::from_ptr(fmt) }
            .to_string_lossy()
            .into_owned();
    }
    // SAFETY: vsnprintf NUL-terminated buf.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    s.trim_end_matches(['\n', '\r']).to_string()
}

/// The `log` callback given to InitEx.
///
/// # Safety
/// Called by VDDK with a format string and its `va_list`.
pub unsafe extern "C" fn log_info(fmt: *const c_char, args: *mut c_void) {
    // SAFETY: forwarded unchanged from VDDK (see fn contract).
    let msg = unsafe { format(fmt, args) };
    log::info!(target: "vddk", "{msg}");
}

/// The `warn` callback given to InitEx.
///
/// # Safety
/// Called by VDDK with a format string and its `va_list`.
pub unsafe extern "C" fn log_warn(fmt: *const c_char, args: *mut c_void) {
    // SAFETY: forwarded unchanged from VDDK (see fn contract).
    let msg = unsafe { format(fmt, args) };
    log::warn!(target: "vddk", "{msg}");
}

/// The `panic` callback given to InitEx.
///
/// # Safety
/// Called by VDDK with a format string and its `va_list`.
pub unsafe extern "C" fn log_panic(fmt: *const c_char, args: *mut c_void) {
    // SAFETY: forwarded unchanged from VDDK (see fn contract).
    let msg = unsafe { format(fmt, args) };
    log::error!(target: "vddk", "VDDK panic: {msg}");
}
