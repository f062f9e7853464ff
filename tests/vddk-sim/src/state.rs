//! Process-wide state of the stand-in: whether InitEx ran (and its log
//! callback), the Open/Close "in progress" flag, the registry of live
//! connections and handles, and the Read call counter for fault injection.
//!
//! Invariant: every exported call except InitEx and the pure helpers
//! (error text, connect-param allocation) passes [`require_init`]; every
//! handle or connection pointer is checked against the registry before use.

use std::collections::HashSet;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::abi::LogFunc;
use crate::die;

static INIT: AtomicBool = AtomicBool::new(false);
static LOG: Mutex<Option<LogFunc>> = Mutex::new(None);
static OPEN_CLOSE_BUSY: AtomicBool = AtomicBool::new(false);
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
pub static READ_CALLS: AtomicU64 = AtomicU64::new(0);

pub fn set_init(on: bool, log: Option<LogFunc>) {
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = log;
    INIT.store(on, Ordering::SeqCst);
}

/// Aborts unless InitEx has run (and Exit has not).
pub fn require_init(func: &str) {
    if !INIT.load(Ordering::SeqCst) {
        die(&format!("{func} called before VixDiskLib_InitEx"));
    }
}

/// Marks Open/Close as running for the guard's lifetime; aborts when
/// another thread is already inside Open or Close.
pub struct OpenCloseGuard;

impl OpenCloseGuard {
    pub fn enter(func: &str) -> OpenCloseGuard {
        if OPEN_CLOSE_BUSY.swap(true, Ordering::SeqCst) {
            die(&format!(
                "{func} called while another thread is inside VixDiskLib_Open/Close"
            ));
        }
        let ms = crate::config::open_delay_ms();
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        OpenCloseGuard
    }
}

impl Drop for OpenCloseGuard {
    fn drop(&mut self) {
        OPEN_CLOSE_BUSY.store(false, Ordering::SeqCst);
    }
}

/// Records a live connection or handle pointer.
pub fn register(p: *const c_void) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(p as usize);
}

/// Forgets a pointer; aborts when it was not live.
pub fn unregister(p: *const c_void, func: &str) {
    let removed = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .remove(&(p as usize));
    if !removed {
        die(&format!("{func}: unknown or already closed handle {p:?}"));
    }
}

/// Aborts unless `p` is live.
pub fn check_live(p: *const c_void, func: &str) {
    let live = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .contains(&(p as usize));
    if !live {
        die(&format!("{func}: unknown or already closed handle {p:?}"));
    }
}

/// Sends `msg` to the log callback given to InitEx, through a real
/// `va_list` (x86-64 System V layout: all arguments in the overflow area).
pub fn log(msg: &str) {
    let Some(cb) = *LOG.lock().unwrap_or_else(|e| e.into_inner()) else {
        return;
    };
    let Ok(text) = CString::new(msg) else { return };
    #[cfg(target_arch = "x86_64")]
    {
        #[repr(C)]
        struct VaListTag {
            gp_offset: u32,
            fp_offset: u32,
            overflow_arg_area: *mut c_void,
            reg_save_area: *mut c_void,
        }
        let fmt = c"vddk-sim: %s\n";
        let mut args: [u64; 1] = [text.as_ptr() as u64];
        // gp_offset 48 and fp_offset 176 mean "registers exhausted": va_arg
        // then takes every argument from overflow_arg_area, 8 bytes each.
        let mut tag = VaListTag {
            gp_offset: 48,
            fp_offset: 176,
            overflow_arg_area: args.as_mut_ptr().cast(),
            reg_save_area: std::ptr::null_mut(),
        };
        // SAFETY: cb is the caller's VixDiskLibGenericLogFunc; fmt has one
        // %s whose argument is a valid C string; the va_list tag follows the
        // x86-64 ABI and lives until the call returns.
        unsafe {
            cb(
                fmt.as_ptr() as *const c_char,
                (&mut tag as *mut VaListTag).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cb, text);
}
