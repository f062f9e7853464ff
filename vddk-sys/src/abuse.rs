//! Deliberate violations of VDDK's rules, for tests only (feature
//! `rule-breaking`): they let the test suite check that the stand-in
//! library aborts the way the real one would punish such code. Never call
//! these from product code.

use std::sync::Arc;

use crate::types::*;
use crate::{Disk, Library, SysError};

/// A raw handle shared across threads on purpose.
#[derive(Clone, Copy)]
struct Shared(VixDiskLibHandle);
// SAFETY: deliberately unsound use is the point of this module; the
// stand-in aborts the process before any harm.
unsafe impl Send for Shared {}

/// Reads sector 0 from `threads` threads at once on the same handle,
/// `rounds` times each.
pub fn concurrent_reads_on_one_handle(
    disk: &mut Disk,
    lib: &Arc<Library>,
    threads: usize,
    rounds: usize,
) {
    let h = Shared(disk.raw_handle());
    let read = lib.vix_read().expect("VixDiskLib_Read");
    let joins: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let h = h;
                let mut buf = vec![0u8; 512];
                for _ in 0..rounds {
                    // SAFETY: deliberately breaks VDDK's one-thread-per-handle
                    // rule; the stand-in is expected to abort.
                    unsafe { read(h.0, 0, 1, buf.as_mut_ptr()) };
                }
            })
        })
        .collect();
    for j in joins {
        let _ = j.join();
    }
}

/// Calls VixDiskLib_Open from `threads` threads at once, bypassing the
/// Open/Close lock, on a local connection.
pub fn concurrent_opens(lib: &Arc<Library>, path: &str, threads: usize) -> Result<(), SysError> {
    let conn = crate::Connection::connect(lib, &Default::default(), true, None, None)?;
    let open = lib.vix_open()?;
    let raw = Shared(conn.inner.raw);
    let cpath = std::ffi::CString::new(path).expect("no NUL");
    let joins: Vec<_> = (0..threads)
        .map(|_| {
            let cpath = cpath.clone();
            std::thread::spawn(move || {
                let raw = raw;
                let mut h: VixDiskLibHandle = std::ptr::null_mut();
                // SAFETY: deliberately breaks the Open/Close serialisation
                // rule; the stand-in is expected to abort.
                unsafe {
                    open(
                        raw.0,
                        cpath.as_ptr(),
                        VIXDISKLIB_FLAG_OPEN_READ_ONLY,
                        &mut h,
                    )
                };
            })
        })
        .collect();
    for j in joins {
        let _ = j.join();
    }
    Ok(())
}

/// Calls VixDiskLib_ConnectEx without InitEx first.
pub fn connect_before_init(lib: &Arc<Library>) {
    let f = lib.vix_connect_ex().expect("VixDiskLib_ConnectEx");
    let mut conn: VixDiskLibConnection = std::ptr::null_mut();
    // SAFETY: valid arguments (local connection); only the missing InitEx
    // breaks the rules, which the stand-in is expected to punish.
    unsafe {
        f(
            std::ptr::null(),
            1,
            std::ptr::null(),
            std::ptr::null(),
            &mut conn,
        )
    };
}
