//! The backend conformance suite (SPEC.md §11): one function per property
//! of [`Backend`], each run on a fresh, empty backend from a factory.
//! [`backend_conformance!`] turns a factory into one named test per
//! property, so a new backend (S3) runs the whole suite with one line:
//! `backend_conformance!(s3, || Subject { ... });`.
//!
//! [`Knobs`] say what a remote store may do that the local one does not:
//! show a write in listings only after a delay (listings are retried until
//! it passes), keep coarse modification times, and run its clock apart
//! from this host's (times are compared with that tolerance).

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmkeep_engine::backend::{Backend, Durability};

/// How far a backend may stray from the local one's behaviour.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// Longest time after a put or delete before listings show it.
    pub list_after_write_delay: Duration,
    /// Resolution of last-modified times, seconds.
    pub mtime_granularity_secs: u64,
    /// The storage's clock minus this host's, seconds (expected offset).
    pub clock_skew_secs: i64,
}

impl Knobs {
    /// A local file system: immediate listings, 1 s times, the host clock.
    pub const LOCAL: Knobs = Knobs {
        list_after_write_delay: Duration::ZERO,
        mtime_granularity_secs: 1,
        clock_skew_secs: 0,
    };

    /// How far a stored time may be from the host's now, plus skew.
    fn tolerance(&self) -> i64 {
        self.mtime_granularity_secs as i64 + 2
    }
}

/// A backend under test.
pub struct Subject {
    pub backend: Arc<dyn Backend>,
    /// A second client of the same storage (what another process sees).
    pub reopen: Box<dyn Fn() -> Arc<dyn Backend>>,
    pub knobs: Knobs,
    /// Whatever must outlive the test (a temporary directory).
    pub keep: Box<dyn Any>,
}

/// One `#[test]` per property of the suite, in module `$name`, each on a
/// fresh [`Subject`] from `$factory` (a `Fn() -> Subject`).
macro_rules! backend_conformance {
    ($name:ident, $factory:expr) => {
        backend_conformance!(@tests $name, $factory;
            location_names_the_storage,
            put_then_get_round_trips,
            put_replaces_atomically,
            concurrent_puts_never_tear,
            missing_objects_are_absent_everywhere,
            list_is_recursive_sorted_and_limited_to_its_prefix,
            list_shows_puts_and_deletes,
            list_stops_at_a_callback_error,
            delete_is_idempotent,
            stat_tells_size_and_last_modified,
            touch_refreshes_last_modified,
            copy_makes_an_independent_object,
            copy_onto_itself_refreshes_last_modified,
            move_object_moves_and_replaces,
            immediate_writes_are_seen_by_a_new_client,
            sync_makes_deferred_writes_seen_by_a_new_client,
            get_into_replaces_the_buffer,
            prefetch_is_harmless
        );
    };
    (@tests $name:ident, $factory:expr; $($t:ident),*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $t() {
                    let s: $crate::backend_suite::Subject = ($factory)();
                    $crate::backend_suite::$t(&s);
                }
            )*
        }
    };
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn listing(b: &dyn Backend, dir: &str) -> Vec<String> {
    let mut seen = Vec::new();
    b.list(dir, &mut |k| {
        seen.push(k.to_string());
        Ok(())
    })
    .unwrap();
    seen
}

/// Lists `dir` until it shows `want` or the knob's delay has passed.
fn assert_lists(s: &Subject, dir: &str, want: &[&str]) {
    let deadline = Instant::now() + s.knobs.list_after_write_delay;
    loop {
        let seen = listing(s.backend.as_ref(), dir);
        if seen == want || Instant::now() >= deadline {
            assert_eq!(seen, want, "listing {dir:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts a stored time is the storage's now (host now plus skew).
fn assert_recent(s: &Subject, t: i64, what: &str) {
    let want = now() + s.knobs.clock_skew_secs;
    assert!(
        (t - want).abs() <= s.knobs.tolerance(),
        "{what}: last-modified {t} is not the storage's now ({want})"
    );
}

/// Waits until a new write gets a later last-modified than `t`.
fn wait_past(s: &Subject) {
    std::thread::sleep(Duration::from_millis(
        s.knobs.mtime_granularity_secs * 1000 + 100,
    ));
}

fn get(b: &dyn Backend, k: &str) -> Option<Vec<u8>> {
    b.get(k).unwrap()
}

pub fn location_names_the_storage(s: &Subject) {
    assert!(!s.backend.location().is_empty());
}

pub fn put_then_get_round_trips(s: &Subject) {
    let b = s.backend.as_ref();
    // Both durabilities; parent directories need not exist.
    b.put("chunks/aa/one", b"first", Durability::Deferred)
        .unwrap();
    b.put("manifests/two", b"second", Durability::Immediate)
        .unwrap();
    assert_eq!(get(b, "chunks/aa/one").as_deref(), Some(&b"first"[..]));
    assert_eq!(get(b, "manifests/two").as_deref(), Some(&b"second"[..]));
    // Empty objects are objects.
    b.put("keys/empty", b"", Durability::Immediate).unwrap();
    assert_eq!(get(b, "keys/empty").as_deref(), Some(&b""[..]));
    assert!(b.exists("keys/empty").unwrap());
    assert_eq!(b.size("keys/empty").unwrap(), Some(0));
    // Large objects, every byte value.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    b.put("chunks/ff/big", &big, Durability::Deferred).unwrap();
    assert_eq!(get(b, "chunks/ff/big").unwrap(), big);
    assert_eq!(b.size("chunks/ff/big").unwrap(), Some(big.len() as u64));
    let all: Vec<u8> = (0..=255u8).collect();
    b.put("config", &all, Durability::Immediate).unwrap();
    assert_eq!(get(b, "config").unwrap(), all);
}

pub fn put_replaces_atomically(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("chunks/aa/one", b"first", Durability::Immediate)
        .unwrap();
    b.put("chunks/aa/one", b"replaced", Durability::Deferred)
        .unwrap();
    assert_eq!(get(b, "chunks/aa/one").as_deref(), Some(&b"replaced"[..]));
    b.put("chunks/aa/one", b"x", Durability::Immediate).unwrap();
    assert_eq!(get(b, "chunks/aa/one").as_deref(), Some(&b"x"[..]));
    assert_eq!(b.size("chunks/aa/one").unwrap(), Some(1));
    assert_lists(s, "chunks", &["chunks/aa/one"]);
}

pub fn concurrent_puts_never_tear(s: &Subject) {
    std::thread::scope(|sc| {
        for t in 0..4u8 {
            let b = s.backend.clone();
            sc.spawn(move || {
                for i in 0..50u8 {
                    // Everyone writes the same keys: the last write wins,
                    // a reader never sees a mix.
                    let k = format!("chunks/00/{i}");
                    b.put(&k, &[i ^ t; 4096], Durability::Deferred).unwrap();
                    let got = b.get(&k).unwrap().unwrap();
                    assert_eq!(got.len(), 4096, "thread {t}");
                    assert!(got.iter().all(|x| *x == got[0]), "thread {t}: torn");
                    assert_eq!(got[0] & !3, i & !3, "thread {t}");
                }
            });
        }
    });
}

pub fn missing_objects_are_absent_everywhere(s: &Subject) {
    let b = s.backend.as_ref();
    let k = "chunks/aa/missing";
    assert_eq!(b.get(k).unwrap(), None);
    assert!(!b.exists(k).unwrap());
    assert_eq!(b.stat(k).unwrap(), None);
    assert_eq!(b.size(k).unwrap(), None);
    assert_eq!(b.modified(k).unwrap(), None);
    let mut buf = b"stale".to_vec();
    assert!(!b.get_into(k, &mut buf).unwrap());
    assert!(
        buf.is_empty(),
        "get_into clears the buffer of a missing object"
    );
    assert!(!b.touch(k).unwrap(), "touch must not create an object");
    assert!(!b.copy(k, "chunks/aa/copy", Durability::Immediate).unwrap());
    assert!(!b
        .move_object(k, "trash/1/chunks/aa/missing", Durability::Immediate)
        .unwrap());
    b.delete(k).unwrap();
    for gone in [k, "chunks/aa/copy", "trash/1/chunks/aa/missing"] {
        assert!(!b.exists(gone).unwrap(), "{gone} was created");
    }
    assert_lists(s, "", &[]);
}

pub fn list_is_recursive_sorted_and_limited_to_its_prefix(s: &Subject) {
    let b = s.backend.as_ref();
    for k in [
        "chunks/ab/three",
        "chunks/aa/one",
        "chunks/aa/two",
        "chunksx/not-chunks",
        "manifests/m",
        "trash/1/chunks/aa/one",
    ] {
        b.put(k, k.as_bytes(), Durability::Deferred).unwrap();
    }
    assert_lists(
        s,
        "chunks",
        &["chunks/aa/one", "chunks/aa/two", "chunks/ab/three"],
    );
    // A trailing slash means the same directory.
    assert_lists(s, "chunks/aa/", &["chunks/aa/one", "chunks/aa/two"]);
    assert_lists(s, "trash", &["trash/1/chunks/aa/one"]);
    assert_lists(s, "nothing-here", &[]);
    assert_lists(s, "chunks/a", &[]);
    assert_lists(
        s,
        "",
        &[
            "chunks/aa/one",
            "chunks/aa/two",
            "chunks/ab/three",
            "chunksx/not-chunks",
            "manifests/m",
            "trash/1/chunks/aa/one",
        ],
    );
}

pub fn list_shows_puts_and_deletes(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("locks/a", b"1", Durability::Immediate).unwrap();
    b.put("locks/b", b"2", Durability::Immediate).unwrap();
    assert_lists(s, "locks", &["locks/a", "locks/b"]);
    b.delete("locks/a").unwrap();
    assert_lists(s, "locks", &["locks/b"]);
    b.delete("locks/b").unwrap();
    assert_lists(s, "locks", &[]);
}

pub fn list_stops_at_a_callback_error(s: &Subject) {
    let b = s.backend.as_ref();
    for i in 0..3 {
        b.put(&format!("chunks/aa/{i}"), b"x", Durability::Immediate)
            .unwrap();
    }
    assert_lists(s, "chunks", &["chunks/aa/0", "chunks/aa/1", "chunks/aa/2"]);
    let mut calls = 0;
    let r = b.list("chunks", &mut |_| {
        calls += 1;
        Err(vmkeep_engine::Error::Interrupted)
    });
    assert!(matches!(r, Err(vmkeep_engine::Error::Interrupted)), "{r:?}");
    assert_eq!(calls, 1);
}

pub fn delete_is_idempotent(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("generations/g", b"g", Durability::Immediate).unwrap();
    b.delete("generations/g").unwrap();
    assert!(!b.exists("generations/g").unwrap());
    b.delete("generations/g").unwrap();
    b.delete("never/was").unwrap();
    assert_lists(s, "generations", &[]);
}

pub fn stat_tells_size_and_last_modified(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("manifests/two", b"second", Durability::Immediate)
        .unwrap();
    let st = b.stat("manifests/two").unwrap().expect("stat of an object");
    assert_eq!(st.size, 6);
    assert_recent(s, st.modified, "a new object");
    assert_eq!(b.size("manifests/two").unwrap(), Some(st.size));
    assert_eq!(b.modified("manifests/two").unwrap(), Some(st.modified));
    assert!(b.exists("manifests/two").unwrap());
}

pub fn touch_refreshes_last_modified(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("chunks/aa/t", b"content", Durability::Deferred)
        .unwrap();
    let before = b.modified("chunks/aa/t").unwrap().unwrap();
    wait_past(s);
    assert!(b.touch("chunks/aa/t").unwrap());
    let after = b.modified("chunks/aa/t").unwrap().unwrap();
    assert!(after > before, "touch left last-modified at {before}");
    assert_recent(s, after, "a touched object");
    assert_eq!(get(b, "chunks/aa/t").as_deref(), Some(&b"content"[..]));
    assert_lists(s, "chunks", &["chunks/aa/t"]);
}

pub fn copy_makes_an_independent_object(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("manifests/a", b"original", Durability::Immediate)
        .unwrap();
    b.put("trash/7/manifests/a", b"older copy", Durability::Immediate)
        .unwrap();
    // Into a new directory, and over an existing object.
    assert!(b
        .copy(
            "manifests/a",
            "quarantine/manifests/a",
            Durability::Immediate
        )
        .unwrap());
    assert!(b
        .copy("manifests/a", "trash/7/manifests/a", Durability::Deferred)
        .unwrap());
    for k in ["quarantine/manifests/a", "trash/7/manifests/a"] {
        assert_eq!(get(b, k).as_deref(), Some(&b"original"[..]), "{k}");
        assert_recent(s, b.modified(k).unwrap().unwrap(), k);
    }
    // Independent: changing or deleting the source leaves the copies.
    b.put("manifests/a", b"changed", Durability::Immediate)
        .unwrap();
    b.delete("manifests/a").unwrap();
    assert_eq!(
        get(b, "quarantine/manifests/a").as_deref(),
        Some(&b"original"[..])
    );
    assert_lists(s, "", &["quarantine/manifests/a", "trash/7/manifests/a"]);
}

pub fn copy_onto_itself_refreshes_last_modified(s: &Subject) {
    // How an object store touches (SPEC.md §11).
    let b = s.backend.as_ref();
    b.put("pages/ab/p", b"page", Durability::Immediate).unwrap();
    let before = b.modified("pages/ab/p").unwrap().unwrap();
    wait_past(s);
    assert!(b
        .copy("pages/ab/p", "pages/ab/p", Durability::Deferred)
        .unwrap());
    let after = b.modified("pages/ab/p").unwrap().unwrap();
    assert!(after > before, "a self-copy left last-modified at {before}");
    assert_eq!(get(b, "pages/ab/p").as_deref(), Some(&b"page"[..]));
    assert_lists(s, "pages", &["pages/ab/p"]);
}

pub fn move_object_moves_and_replaces(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("chunks/aa/m", b"moved", Durability::Deferred)
        .unwrap();
    b.put("trash/1/chunks/aa/m", b"old", Durability::Deferred)
        .unwrap();
    assert!(b
        .move_object("chunks/aa/m", "trash/1/chunks/aa/m", Durability::Deferred)
        .unwrap());
    assert!(!b.exists("chunks/aa/m").unwrap());
    assert_eq!(
        get(b, "trash/1/chunks/aa/m").as_deref(),
        Some(&b"moved"[..])
    );
    assert!(b
        .move_object("trash/1/chunks/aa/m", "chunks/aa/m", Durability::Immediate)
        .unwrap());
    assert_eq!(get(b, "chunks/aa/m").as_deref(), Some(&b"moved"[..]));
    assert!(!b.exists("trash/1/chunks/aa/m").unwrap());
    b.sync().unwrap();
    assert_lists(s, "", &["chunks/aa/m"]);
}

pub fn immediate_writes_are_seen_by_a_new_client(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("locks/l", b"lock", Durability::Immediate).unwrap();
    b.put("config", b"cfg", Durability::Immediate).unwrap();
    assert!(b
        .copy("config", "quarantine/config", Durability::Immediate)
        .unwrap());
    let other = (s.reopen)();
    assert_eq!(
        get(other.as_ref(), "locks/l").as_deref(),
        Some(&b"lock"[..])
    );
    assert_eq!(
        get(other.as_ref(), "quarantine/config").as_deref(),
        Some(&b"cfg"[..])
    );
    assert_eq!(other.size("config").unwrap(), Some(3));
}

pub fn sync_makes_deferred_writes_seen_by_a_new_client(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("chunks/aa/d", b"deferred", Durability::Deferred)
        .unwrap();
    b.put("chunks/aa/gone", b"x", Durability::Deferred).unwrap();
    assert!(b
        .copy("chunks/aa/d", "chunks/ab/d", Durability::Deferred)
        .unwrap());
    b.delete("chunks/aa/gone").unwrap();
    b.sync().unwrap();
    // Nothing pending: sync still succeeds.
    b.sync().unwrap();
    let other = (s.reopen)();
    assert_eq!(
        get(other.as_ref(), "chunks/aa/d").as_deref(),
        Some(&b"deferred"[..])
    );
    assert_eq!(
        get(other.as_ref(), "chunks/ab/d").as_deref(),
        Some(&b"deferred"[..])
    );
    assert!(!other.exists("chunks/aa/gone").unwrap());
}

pub fn get_into_replaces_the_buffer(s: &Subject) {
    let b = s.backend.as_ref();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    b.put("chunks/ff/big", &big, Durability::Deferred).unwrap();
    b.put("chunks/ab/three", b"3", Durability::Deferred)
        .unwrap();
    let mut buf = b"stale contents".to_vec();
    assert!(b.get_into("chunks/ff/big", &mut buf).unwrap());
    assert_eq!(buf, big);
    // A smaller object after a bigger one: no stale tail.
    assert!(b.get_into("chunks/ab/three", &mut buf).unwrap());
    assert_eq!(buf, b"3");
    assert!(!b.get_into("chunks/ab/missing", &mut buf).unwrap());
    assert!(buf.is_empty());
}

pub fn prefetch_is_harmless(s: &Subject) {
    let b = s.backend.as_ref();
    b.put("chunks/aa/p", b"prefetched", Durability::Deferred)
        .unwrap();
    b.prefetch("chunks/aa/p");
    b.prefetch("chunks/aa/missing");
    b.prefetch("chunks");
    assert_eq!(get(b, "chunks/aa/p").as_deref(), Some(&b"prefetched"[..]));
    assert!(!b.exists("chunks/aa/missing").unwrap());
    assert_lists(s, "chunks", &["chunks/aa/p"]);
}
