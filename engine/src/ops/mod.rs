//! Operations as library calls: each takes an options struct and returns
//! a report that derives `serde::Serialize`, so the CLI, a job runner and
//! the tests call them alike. The CLI only parses arguments and prints.
//!
//! Invariants: an operation takes the repository lock its work needs
//! (SPEC.md's lock matrix) and holds it until it returns; a report holds
//! everything its caller prints, so the JSON output is the report itself.

pub mod backup;
pub mod forget;
pub mod gc;
pub mod generations;
pub mod index;
pub mod init;
pub mod key;
pub mod protect;
pub mod restore;
pub mod stats;
pub mod unlock;
pub mod verify;

/// A Unix time as RFC 3339 in UTC shifted by `offset` seconds (the time
/// as printed; the number itself when it cannot be shown).
pub fn rfc3339(t: i64, offset: i32) -> String {
    let off = time::UtcOffset::from_whole_seconds(offset).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| d.to_offset(off))
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The label of a key slot made without one: `user@host`.
pub fn default_label() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    format!("{user}@{}", crate::host::hostname())
}

/// The short form (8 hex digits) of an id in hex, as [`vmkeep_format::ObjectId::short`].
pub fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// Bytes in binary units (`512 B`, `1.50 MiB`), as messages print them.
pub fn size(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}
