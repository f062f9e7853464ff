//! Settings read from the environment: the datastore map, expected
//! credentials and thumbprint, fault injection and an access log. Read at
//! each use (cheap next to disk I/O), except the fault counters.

use std::io::Write;
use std::path::PathBuf;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn num(name: &str) -> Option<u64> {
    var(name).and_then(|v| v.trim().parse().ok())
}

/// The directory of datastore `ds` from `VDDK_SIM_DATASTORES="A=/dir;B=/dir2"`.
pub fn datastore_dir(ds: &str) -> Option<PathBuf> {
    var("VDDK_SIM_DATASTORES")?
        .split(';')
        .filter_map(|e| e.split_once('='))
        .find(|(name, _)| name.trim() == ds)
        .map(|(_, dir)| PathBuf::from(dir.trim()))
}

/// `VDDK_SIM_CREDENTIALS="user:password"`, when set.
pub fn credentials() -> Option<(String, String)> {
    var("VDDK_SIM_CREDENTIALS").and_then(|v| {
        v.split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))
    })
}

/// `VDDK_SIM_THUMBPRINT="AA:BB:..."`, when set.
pub fn thumbprint() -> Option<String> {
    var("VDDK_SIM_THUMBPRINT")
}

/// Milliseconds Open and Close take (`VDDK_SIM_OPEN_DELAY_MS`).
pub fn open_delay_ms() -> u64 {
    num("VDDK_SIM_OPEN_DELAY_MS").unwrap_or(0)
}

/// Milliseconds each Read takes (`VDDK_SIM_SLOW_READ_MS`).
pub fn slow_read_ms() -> u64 {
    num("VDDK_SIM_SLOW_READ_MS").unwrap_or(0)
}

/// The 1-based number of the Read call that fails (`VDDK_SIM_FAIL_READ_AT`).
pub fn fail_read_at() -> Option<u64> {
    num("VDDK_SIM_FAIL_READ_AT")
}

/// The error the failing Read returns (`VDDK_SIM_FAIL_READ_CODE`, default
/// 14011 VIX_E_HOST_TCP_CONN_LOST).
pub fn fail_read_code() -> u64 {
    num("VDDK_SIM_FAIL_READ_CODE").unwrap_or(crate::abi::VIX_E_HOST_TCP_CONN_LOST)
}

/// The 1-based number of the Read call that returns short data
/// (`VDDK_SIM_SHORT_READ_AT`).
pub fn short_read_at() -> Option<u64> {
    num("VDDK_SIM_SHORT_READ_AT")
}

/// Appends one line to `VDDK_SIM_ACCESS_LOG`, when set. The line and its
/// newline go out in one `write` on an O_APPEND file, so lines written by
/// concurrent threads or processes never interleave.
pub fn access_log(line: &str) {
    if let Some(path) = var("VDDK_SIM_ACCESS_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}
