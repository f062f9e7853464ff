//! Repository locks (SPEC.md §13.1): files `locks/<16 hex>` holding one line
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
//!
//! A holder that cannot refresh its lock in time *loses* it: when the next
//! refresh would come at or after the moment others may take the lock as
//! stale (last successful write + the stale time), the refresher stops and
//! [`Lock::check`] / [`LockHandle::check`] return [`Error::LockLost`], so
//! the operation stops before it commits anything unprotected (as restic
//! does). A failed refresh followed by a successful one in time loses
//! nothing. [`LockTimes`] sets both times (tests shorten them).
//!
//! Invariants: writers emit the fields in the order above as compact JSON
//! (what older readers parse); readers accept any JSON object of that
//! shape (whitespace, field order, extra fields). A file that does not
//! parse (torn, garbage, wrong types) is an *unreadable* lock: a live
//! exclusive lock until [`STALE_AFTER`] past its modification time, then
//! stale, so it blocks for a bounded time instead of for ever.
//!
//! Clocks (SPEC.md §11.1): `started` and `refreshed` are the holder's
//! clock, judged by the reader's; an unreadable lock's age is the reader's
//! clock minus the file's last-modified (the storage's). Clocks within a
//! minute of each other move staleness by at most that, well inside the
//! margin between [`REFRESH_EVERY`] and [`STALE_AFTER`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmkeep_format::ObjectId;

use crate::backend::{Backend, Durability};
use crate::host::{hostname, now_unix, pid_alive};
use crate::layout::{Dir, Key};
use crate::{Error, Result};

/// A lock not refreshed for this long is stale (seconds).
pub const STALE_AFTER: i64 = 30 * 60;
/// Live holders rewrite their lock this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// How often a holder refreshes its lock, and after how long without a
/// successful refresh it gives the lock up as lost. Defaults:
/// [`REFRESH_EVERY`] and [`STALE_AFTER`] (what other processes use to call
/// a lock stale, so only tests should change them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockTimes {
    pub refresh_every: Duration,
    pub stale_after: Duration,
}

impl Default for LockTimes {
    fn default() -> Self {
        LockTimes {
            refresh_every: REFRESH_EVERY,
            stale_after: Duration::from_secs(STALE_AFTER as u64),
        }
    }
}

impl LockTimes {
    /// The lost rule: the next try (`refresh_every` from now) would come at
    /// or after the deadline (`stale_after` past the last successful write).
    pub fn lost(&self, since_last_ok: Duration) -> bool {
        since_last_ok + self.refresh_every >= self.stale_after
    }
}

/// What the refresher tells the operation holding the lock.
struct LockState {
    repo: String,
    name: String,
    lost: AtomicBool,
    /// Why the lock was lost (set before `lost`).
    why: Mutex<Option<String>>,
}

/// A cheap, cloneable view of a held lock that pipelines poll with
/// [`LockHandle::check`]; it does not keep the lock alive.
#[derive(Clone)]
pub struct LockHandle {
    state: Arc<LockState>,
}

impl LockHandle {
    /// `Err(Error::LockLost)` once the lock could not be refreshed in time.
    pub fn check(&self) -> Result<()> {
        if !self.state.lost.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(Error::LockLost {
            repo: self.state.repo.clone(),
            lock: Key::Lock(&self.state.name).path(),
            why: self
                .state
                .why
                .lock()
                .expect("poisoned")
                .clone()
                .unwrap_or_default(),
        })
    }

    /// True once the lock is lost.
    pub fn is_lost(&self) -> bool {
        self.state.lost.load(Ordering::Acquire)
    }

    fn lose(&self, why: String) {
        *self.state.why.lock().expect("poisoned") = Some(why);
        self.state.lost.store(true, Ordering::Release);
    }
}

/// What a lock allows others to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Why the file could not be parsed. Then `mode` is exclusive,
    /// `started` and `refreshed` are the file's modification time, and
    /// host, pid and command are placeholders.
    pub unreadable: Option<String>,
}

/// A lock file as stored; field order is the order written.
#[derive(Serialize, Deserialize)]
struct Wire {
    host: String,
    pid: u32,
    command: String,
    mode: Mode,
    started: i64,
    refreshed: i64,
    /// 64 hex digits or null, never absent (`deserialize_with` makes
    /// serde require an `Option` field).
    #[serde(deserialize_with = "Option::deserialize")]
    parent: Option<String>,
}

/// `t` as `YYYY-MM-DD hh:mm:ss UTC` for messages.
fn utc(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .map(|s| format!("{s} UTC"))
        .unwrap_or_else(|| format!("{t} (Unix time)"))
}

/// A duration in seconds, for "written … ago".
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

impl LockInfo {
    /// One compact JSON line (SPEC.md §13.1).
    fn encode(&self) -> Vec<u8> {
        let w = Wire {
            host: self.host.clone(),
            pid: self.pid,
            command: self.command.clone(),
            mode: self.mode,
            started: self.started,
            refreshed: self.refreshed,
            parent: self.parent.map(|p| p.to_hex()),
        };
        let mut out = serde_json::to_vec(&w).expect("a lock always serializes");
        out.push(b'\n');
        out
    }

    /// Parses a lock file; the error says why it is not one.
    fn decode(name: &str, b: &[u8]) -> std::result::Result<Self, String> {
        let w: Wire = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        let parent = match w.parent {
            None => None,
            Some(p) => Some(
                ObjectId::from_hex(&p).map_err(|_| format!("parent {p:?} is not an object id"))?,
            ),
        };
        Ok(LockInfo {
            name: name.to_string(),
            host: w.host,
            pid: w.pid,
            command: w.command,
            mode: w.mode,
            started: w.started,
            refreshed: w.refreshed,
            parent,
            unreadable: None,
        })
    }

    /// The stand-in for a file that does not parse, last written at
    /// `modified`: exclusive, and as old as the file.
    fn unreadable(name: String, reason: String, modified: i64) -> Self {
        LockInfo {
            name,
            host: "?".into(),
            pid: 0,
            command: "?".into(),
            mode: Mode::Exclusive,
            started: modified,
            refreshed: modified,
            parent: None,
            unreadable: Some(reason),
        }
    }

    /// True when the holder is gone or silent for too long (for an
    /// unreadable lock: when the file is older than [`STALE_AFTER`]).
    pub fn is_stale(&self, now: i64) -> bool {
        if now - self.refreshed > STALE_AFTER {
            return true;
        }
        self.unreadable.is_none() && self.host == hostname() && !pid_alive(self.pid)
    }

    /// One line for messages; names the file.
    pub fn describe(&self) -> String {
        match &self.unreadable {
            Some(reason) => format!(
                "unreadable lock file {} ({reason}), written {} ago at {}",
                Key::Lock(&self.name),
                age(now_unix() - self.refreshed),
                utc(self.refreshed)
            ),
            None => format!(
                "{} lock {} held by `{}` (pid {} on {}, since {})",
                self.mode.name(),
                Key::Lock(&self.name),
                self.command,
                self.pid,
                self.host,
                utc(self.started)
            ),
        }
    }

    /// What to do about this lock when it blocks a command.
    fn advice(&self) -> String {
        match self.unreadable {
            Some(_) => format!(
                "it counts as a live exclusive lock until {} ({} min after it was written), \
                 then as stale; if no vmkeep runs on this repository, `vmkeep unlock --all` \
                 removes it now",
                utc(self.refreshed + STALE_AFTER),
                STALE_AFTER / 60
            ),
            None => "if that process is gone, run `vmkeep unlock`".into(),
        }
    }
}

/// Every lock file in the repository; files that do not parse are
/// [`LockInfo::unreadable`] locks, so they block (for a while) rather than
/// vanish. Files removed while listing are skipped.
pub fn list(b: &dyn Backend) -> Result<Vec<LockInfo>> {
    let mut out = Vec::new();
    for (path, name, raw) in crate::backend::read_all(b, &Dir::Locks.path())? {
        match LockInfo::decode(&name, &raw) {
            Ok(l) => out.push(l),
            Err(reason) => {
                if let Some(st) = b.stat(&path)? {
                    out.push(LockInfo::unreadable(name, reason, st.modified));
                }
            }
        }
    }
    Ok(out)
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
    handle: LockHandle,
}

impl Lock {
    /// Takes a lock or fails naming the holder of a conflicting one.
    pub fn acquire(
        backend: Arc<dyn Backend>,
        mode: Mode,
        command: &str,
        parent: Option<ObjectId>,
    ) -> Result<Lock> {
        Self::acquire_with(backend, mode, command, parent, LockTimes::default())
    }

    /// [`Lock::acquire`] with other refresh and stale times.
    pub fn acquire_with(
        backend: Arc<dyn Backend>,
        mode: Mode,
        command: &str,
        parent: Option<ObjectId>,
        times: LockTimes,
    ) -> Result<Lock> {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).expect("operating system random source failed");
        let now = now_unix();
        let info = LockInfo {
            name: hex::encode(r),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            mode,
            started: now,
            refreshed: now,
            parent,
            unreadable: None,
        };
        let path = Key::Lock(&info.name).path();
        backend.put(&path, &info.encode(), Durability::Immediate)?;
        let others = live_others(backend.as_ref(), Some(&info.name))?;
        if let Some(c) = others.iter().find(|o| mode.conflicts(o.mode)) {
            let _ = backend.delete(&path);
            return Err(Error::Locked {
                repo: backend.location(),
                holder: c.describe(),
                advice: c.advice(),
            });
        }
        let handle = LockHandle {
            state: Arc::new(LockState {
                repo: backend.location(),
                name: info.name.clone(),
                lost: AtomicBool::new(false),
                why: Mutex::new(None),
            }),
        };
        let info = Arc::new(Mutex::new(info));
        // Dropping the sender wakes the refresher at once (no polling).
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let (b, i, h) = (backend.clone(), info.clone(), handle.clone());
            std::thread::Builder::new()
                .name("vmkeep-lock".into())
                .spawn(move || {
                    let mut last_ok = Instant::now();
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(times.refresh_every)
                    {
                        let mut li = i.lock().expect("poisoned");
                        li.refreshed = now_unix();
                        let path = Key::Lock(&li.name).path();
                        match b.put(&path, &li.encode(), Durability::Immediate) {
                            Ok(()) => last_ok = Instant::now(),
                            Err(e) => {
                                let waited = last_ok.elapsed();
                                if times.lost(waited) {
                                    log::error!("lost lock {}: cannot refresh it: {e}", li.name);
                                    h.lose(format!(
                                        "not refreshed for {} s, the last try failed: {e}",
                                        waited.as_secs()
                                    ));
                                    return;
                                }
                                log::warn!("cannot refresh lock {} (will retry): {e}", li.name);
                            }
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
            handle,
        })
    }

    /// `Err(Error::LockLost)` once the lock could not be refreshed before
    /// it would have become stale; operations call it before committing.
    pub fn check(&self) -> Result<()> {
        self.handle.check()
    }

    /// A handle for pipelines to [`LockHandle::check`].
    pub fn handle(&self) -> LockHandle {
        self.handle.clone()
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
        if let Err(e) = self.backend.delete(&Key::Lock(&name).path()) {
            log::warn!("cannot remove lock {name}: {e}");
        }
    }
}

/// What [`unlock`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unlocked {
    /// The locks it removed.
    pub removed: Vec<LockInfo>,
    /// The live locks it left in place.
    pub live: Vec<LockInfo>,
}

/// Removes stale locks, unreadable ones included (or every lock with
/// `all`); says what it removed and which live locks remain.
pub fn unlock(b: &dyn Backend, all: bool) -> Result<Unlocked> {
    let now = now_unix();
    let mut done = Unlocked::default();
    for l in list(b)? {
        if all || l.is_stale(now) {
            b.delete(&Key::Lock(&l.name).path())?;
            done.removed.push(l);
        } else {
            done.live.push(l);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::backend::LocalBackend;

    fn sample() -> LockInfo {
        LockInfo {
            name: "abc".into(),
            host: "h".into(),
            pid: 42,
            command: "vmkeep backup".into(),
            mode: Mode::Shared,
            started: 1700000000,
            refreshed: 1700000100,
            parent: None,
            unreadable: None,
        }
    }

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
            unreadable: None,
        };
        assert_eq!(LockInfo::decode("abc", &l.encode()), Ok(l));
    }

    #[test]
    fn control_characters_and_unicode_round_trip() {
        let l = LockInfo {
            host: "tab\there\u{1}".into(),
            command: "vmkeep backup --disk \"é\nü\" \\u0041".into(),
            ..sample()
        };
        assert_eq!(LockInfo::decode("abc", &l.encode()), Ok(l));
    }

    #[test]
    fn writes_one_compact_line_in_spec_order() {
        // What older readers parse (SPEC.md §13.1).
        let want = "{\"host\":\"h\",\"pid\":42,\"command\":\"vmkeep backup\",\"mode\":\"shared\",\
                    \"started\":1700000000,\"refreshed\":1700000100,\"parent\":null}\n";
        assert_eq!(String::from_utf8(sample().encode()).unwrap(), want);
    }

    #[test]
    fn reads_any_json_of_the_lock_shape() {
        let want = LockInfo {
            parent: Some(ObjectId([0xab; 32])),
            ..sample()
        };
        let p = "ab".repeat(32);
        let spaced = format!(
            "{{\"host\": \"h\", \"pid\": 42, \"command\": \"vmkeep backup\", \"mode\": \"shared\", \
             \"started\": 1700000000, \"refreshed\": 1700000100, \"parent\": \"{p}\"}}"
        );
        let pretty = format!(
            "{{\n  \"host\" : \"h\",\n  \"pid\" : 42,\n  \"command\" : \"vmkeep backup\",\n  \
             \"mode\" : \"shared\",\n  \"started\" : 1700000000,\n  \"refreshed\" : 1700000100,\n  \
             \"parent\" : \"{p}\"\n}}\n\n"
        );
        let reordered = format!(
            "{{\"parent\":\"{p}\",\"refreshed\":1700000100,\"mode\":\"shared\",\"started\":1700000000,\
             \"command\":\"vmkeep backup\",\"pid\":42,\"host\":\"h\"}}"
        );
        let extra = format!(
            "{{\"host\":\"h\",\"pid\":42,\"command\":\"vmkeep backup\",\"mode\":\"shared\",\
             \"started\":1700000000,\"refreshed\":1700000100,\"parent\":\"{p}\",\
             \"future\":{{\"nested\":[1,{{\"pid\":2}}]}},\"pid_of_parent\":7}}"
        );
        for (what, text) in [
            ("spaces", spaced),
            ("pretty", pretty),
            ("reordered", reordered),
            ("extra", extra),
        ] {
            assert_eq!(
                LockInfo::decode("abc", text.as_bytes()),
                Ok(want.clone()),
                "{what}: {text}"
            );
        }
    }

    #[test]
    fn torn_garbage_and_mistyped_files_are_unreadable() {
        let line = sample().encode();
        let torn = &line[..line.len() / 2];
        let mistyped = String::from_utf8(line.clone())
            .unwrap()
            .replace("\"pid\":42", "\"pid\":\"42\"");
        let bad_mode = String::from_utf8(line.clone())
            .unwrap()
            .replace("shared", "sharde");
        let bad_parent = String::from_utf8(line.clone())
            .unwrap()
            .replace("null", "\"abc\"");
        let no_parent = String::from_utf8(line.clone())
            .unwrap()
            .replace(",\"parent\":null", "");
        for (what, b) in [
            ("torn", torn),
            ("empty", &b""[..]),
            ("garbage", &b"\x00\xff not json"[..]),
            ("mistyped", mistyped.as_bytes()),
            ("bad mode", bad_mode.as_bytes()),
            ("bad parent", bad_parent.as_bytes()),
            ("no parent", no_parent.as_bytes()),
        ] {
            assert!(LockInfo::decode("abc", b).is_err(), "{what} parsed");
        }
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

    #[test]
    fn an_unreadable_lock_blocks_for_stale_after_then_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let b: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        let line = sample().encode();
        b.put(
            "locks/0123456789abcdef",
            &line[..line.len() / 2],
            Durability::Immediate,
        )
        .unwrap();

        // Young: it blocks, and the error names the file.
        let e = Lock::acquire(b.clone(), Mode::Shared, "vmkeep backup", None)
            .err()
            .expect("a young unreadable lock blocks");
        let msg = e.to_string();
        assert!(matches!(e, Error::Locked { .. }), "{msg}");
        for n in [
            "locks/0123456789abcdef",
            "unreadable",
            "ago",
            "unlock --all",
        ] {
            assert!(msg.contains(n), "{n:?} not in {msg}");
        }
        let done = unlock(b.as_ref(), false).unwrap();
        assert!(done.removed.is_empty(), "{done:?}");
        assert_eq!(done.live.len(), 1, "{done:?}");
        assert!(b.exists("locks/0123456789abcdef").unwrap());

        // 31 minutes old: stale.
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("locks/0123456789abcdef"))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(31 * 60))
            .unwrap();
        drop(f);
        let held = Lock::acquire(b.clone(), Mode::Shared, "vmkeep backup", None)
            .expect("a stale unreadable lock does not block");
        let done = unlock(b.as_ref(), false).unwrap();
        assert_eq!(done.removed.len(), 1, "{done:?}");
        assert_eq!(done.removed[0].name, "0123456789abcdef");
        assert!(done.removed[0].unreadable.is_some());
        // The holder of `held` is this process: live, kept.
        assert_eq!(done.live.len(), 1, "{done:?}");
        assert_eq!(done.live[0].name, held.name());
        assert!(!b.exists("locks/0123456789abcdef").unwrap());
    }
}
