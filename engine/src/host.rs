//! Facts about the machine vmkeep runs on: its name (recorded in
//! generations and locks), the wall clock in Unix seconds, and whether a
//! process id names a running process (how a lock of this host is judged
//! stale).
//!
//! Invariant: nothing here touches a repository, so every module may use
//! it without an import cycle.

/// This host's name, for generation documents and lock files.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The current time, Unix seconds (0 when the clock is before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// True when a process with `pid` runs on this host (`/proc/<pid>`
/// exists). Without a `/proc` it cannot tell and says alive, so a lock is
/// never taken for stale on a guess.
pub fn pid_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_pid_past_the_limit_is_not() {
        assert!(pid_alive(std::process::id()));
        // Linux pids stay below 2^22 (pid_max's ceiling).
        assert!(!pid_alive(u32::MAX));
    }
}
