//! Repository locks (SPEC.md §13): files `locks/<16 hex>` holding one line
//! of JSON: `{"host","pid","command","mode","started","refreshed","parent"}`.
//!
//! Modes: `shared` (backup, restore, verify, forget), `gc` (conflicts only
//! with another gc), `exclusive` (conflicts with everything). To take a
//! lock a process writes its file, then lists the others; if a live
//! conflicting lock exists it removes its own file and fails naming the
//! holder. A lock is *stale* when its host is this host and its process is
//! gone, or when it was not refreshed for [`STALE_AFTER`]; live holders
//! refresh every [`REFRESH_EVERY`]. Stale locks are ignored (and removed
//! by `unlock`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmkeep_format::ObjectId;

use crate::backend::{Backend, Durability};
use crate::repo::now_unix;
use crate::{Error, Result};

/// A lock not refreshed for this long is stale (seconds).
pub const STALE_AFTER: i64 = 30 * 60;
/// Live holders rewrite their lock this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// What a lock allows others to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Gc,
    Exclusive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Shared => "shared",
            Mode::Gc => "gc",
            Mode::Exclusive => "exclusive",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "shared" => Mode::Shared,
            "gc" => Mode::Gc,
            "exclusive" => Mode::Exclusive,
            _ => return None,
        })
    }
    fn conflicts(self, other: Mode) -> bool {
        matches!(
            (self, other),
            (Mode::Exclusive, _) | (_, Mode::Exclusive) | (Mode::Gc, Mode::Gc)
        )
    }
}

/// The content of a lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// File name under `locks/`.
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub mode: Mode,
    pub started: i64,
    pub refreshed: i64,
    /// For a backup: the parent generation it reads entries from.
    pub parent: Option<ObjectId>,
}

fn esc(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => "\\\"".chars().collect::<Vec<_>>(),
            '\\' => "\\\\".chars().collect(),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

impl LockInfo {
    fn encode(&self) -> Vec<u8> {
        let parent = match &self.parent {
            Some(p) => format!("\"{}\"", p.to_hex()),
            None => "null".into(),
        };
        format!(
            "{{\"host\":\"{}\",\"pid\":{},\"command\":\"{}\",\"mode\":\"{}\",\"started\":{},\"refreshed\":{},\"parent\":{}}}\n",
            esc(&self.host),
            self.pid,
            esc(&self.command),
            self.mode.name(),
            self.started,
            self.refreshed,
            parent
        )
        .into_bytes()
    }

    /// Parses a lock file; `None` when it is not one of ours.
    fn decode(name: &str, b: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(b).ok()?;
        let field = |k: &str| -> Option<String> {
            let i = s.find(&format!("\"{k}\":"))? + k.len() + 3;
            let rest = &s[i..];
            if let Some(r) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = r.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => return Some(out),
                        '\\' => out.push(chars.next()?),
                        c => out.push(c),
                    }
                }
                None
            } else {
                Some(rest.split([',', '}']).next()?.trim().to_string())
            }
        };
        Some(LockInfo {
            name: name.to_string(),
            host: field("host")?,
            pid: field("pid")?.parse().ok()?,
            command: field("command")?,
            mode: Mode::parse(&field("mode")?)?,
            started: field("started")?.parse().ok()?,
            refreshed: field("refreshed")?.parse().ok()?,
            parent: field("parent").and_then(|p| ObjectId::from_hex(&p).ok()),
        })
    }

    /// True when the holder is gone or silent for too long.
    pub fn is_stale(&self, now: i64) -> bool {
        if now - self.refreshed > STALE_AFTER {
            return true;
        }
        self.host == crate::backup::hostname()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// One line for error messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock held by `{}` (pid {} on {}, since {} UTC)",
            self.mode.name(),
            self.command,
            self.pid,
            self.host,
            time::OffsetDateTime::from_unix_timestamp(self.started)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| self.started.to_string())
        )
    }
}

/// Every lock file in the repository (unparseable ones are reported as
/// exclusive locks of an unknown holder, so they block rather than vanish).
pub fn list(b: &dyn Backend) -> Result<Vec<LockInfo>> {
    Ok(crate::backend::read_all(b, "locks")?
        .into_iter()
        .map(|(_, name, raw)| {
            LockInfo::decode(&name, &raw).unwrap_or(LockInfo {
                name,
                host: "?".into(),
                pid: 0,
                command: "unreadable lock file".into(),
                mode: Mode::Exclusive,
                started: 0,
                refreshed: now_unix(),
                parent: None,
            })
        })
        .collect())
}

/// Live locks other than `own`.
pub fn live_others(b: &dyn Backend, own: Option<&str>) -> Result<Vec<LockInfo>> {
    let now = now_unix();
    Ok(list(b)?
        .into_iter()
        .filter(|l| Some(l.name.as_str()) != own && !l.is_stale(now))
        .collect())
}

/// A held lock; released on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    info: Arc<Mutex<LockInfo>>,
    /// Dropped to stop the refresher.
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    /// Takes a lock or fails naming the holder of a conflicting one.
    pub fn acquire(
        backend: Arc<dyn Backend>,
        mode: Mode,
        command: &str,
        parent: Option<ObjectId>,
    ) -> Result<Lock> {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).expect("operating system random source failed");
        let now = now_unix();
        let info = LockInfo {
            name: hex::encode(r),
            host: crate::backup::hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            mode,
            started: now,
            refreshed: now,
            parent,
        };
        let path = format!("locks/{}", info.name);
        backend.put(&path, &info.encode(), Durability::Immediate)?;
        let others = live_others(backend.as_ref(), Some(&info.name))?;
        if let Some(c) = others.iter().find(|o| mode.conflicts(o.mode)) {
            let _ = backend.delete(&path);
            return Err(Error::Locked {
                repo: backend.location(),
                holder: c.describe(),
            });
        }
        let info = Arc::new(Mutex::new(info));
        // Dropping the sender wakes the refresher at once (no polling).
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let (b, i) = (backend.clone(), info.clone());
            std::thread::Builder::new()
                .name("vmkeep-lock".into())
                .spawn(move || {
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(REFRESH_EVERY)
                    {
                        let mut li = i.lock().expect("poisoned");
                        li.refreshed = now_unix();
                        if let Err(e) = b.put(
                            &format!("locks/{}", li.name),
                            &li.encode(),
                            Durability::Immediate,
                        ) {
                            log::warn!("cannot refresh lock {}: {e}", li.name);
                        }
                    }
                })
                .ok()
        };
        Ok(Lock {
            backend,
            info,
            stop: Some(stop),
            refresher,
        })
    }

    /// The lock's file name.
    pub fn name(&self) -> String {
        self.info.lock().expect("poisoned").name.clone()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let name = self.name();
        if let Err(e) = self.backend.delete(&format!("locks/{name}")) {
            log::warn!("cannot remove lock {name}: {e}");
        }
    }
}

/// Removes stale locks (or every lock with `all`); returns what it removed.
pub fn unlock(b: &dyn Backend, all: bool) -> Result<Vec<LockInfo>> {
    let now = now_unix();
    let mut removed = Vec::new();
    for l in list(b)? {
        if all || l.is_stale(now) {
            b.delete(&format!("locks/{}", l.name))?;
            removed.push(l);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_round_trip_with_awkward_strings() {
        let l = LockInfo {
            name: "abc".into(),
            host: "h\"o\\st".into(),
            pid: 42,
            command: "vmkeep backup --disk \"x\"".into(),
            mode: Mode::Gc,
            started: 1700000000,
            refreshed: 1700000100,
            parent: Some(ObjectId([7; 32])),
        };
        assert_eq!(LockInfo::decode("abc", &l.encode()), Some(l));
    }

    #[test]
    fn conflict_matrix() {
        use Mode::*;
        assert!(!Shared.conflicts(Shared));
        assert!(!Shared.conflicts(Gc));
        assert!(Gc.conflicts(Gc));
        assert!(Exclusive.conflicts(Shared));
        assert!(Shared.conflicts(Exclusive));
    }
}
