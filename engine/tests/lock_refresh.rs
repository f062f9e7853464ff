//! A lock that cannot be refreshed in time stops its backup (SPEC.md §13.1).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::backends::Flaky;
use common::*;
use vmkeep_engine::backend::{Backend, LocalBackend};
use vmkeep_engine::index::MemIndex;
use vmkeep_engine::lock::{Lock, LockTimes, Mode};
use vmkeep_engine::ops::backup::{backup_source, AreaMode, BackupOptions, DiskSpec};
use vmkeep_engine::progress::NoProgress;
use vmkeep_engine::repo::Repository;
use vmkeep_engine::session::WriteSession;
use vmkeep_engine::source::{DiskSource, Extent};
use vmkeep_engine::{Error, Result};
use vmkeep_format::generation::SourceKind;

/// Reads slowly; flips `failing` on after its first read.
struct Slow {
    data: Vec<u8>,
    failing: Arc<AtomicBool>,
}

impl DiskSource for Slow {
    fn describe(&self) -> String {
        "slow".into()
    }
    fn capacity(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<()> {
        self.failing.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(40));
        b.copy_from_slice(&self.data[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn allocated(&mut self, _: u64, _: u64) -> Result<Option<Vec<Extent>>> {
        Ok(None)
    }
}

const TIMES: LockTimes = LockTimes {
    refresh_every: Duration::from_millis(50),
    stale_after: Duration::from_millis(200),
};

fn flaky(dir: &std::path::Path) -> (Arc<dyn Backend>, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(false));
    let b: Arc<dyn Backend> = Arc::new(Flaky {
        inner: LocalBackend::new(dir),
        failing: failing.clone(),
    });
    (b, failing)
}

#[test]
fn a_lock_whose_refresh_fails_stops_the_backup_with_no_generation() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_repo(dir.path()));
    let (b, failing) = flaky(dir.path());
    let repo = Repository::open(b, Some(b"pw")).unwrap();
    let before = repo.generation_ids().unwrap();
    let ix = MemIndex::default();
    let data: Vec<u8> = (0..CS as usize * 24).map(|i| (i * 7 % 251) as u8).collect();
    let o = BackupOptions {
        command: "vmkeep backup".into(),
        started: 1_700_000_000,
        lock_times: TIMES,
        ..BackupOptions::new("disk", SourceKind::Image)
    };
    let src = Slow {
        data,
        failing: failing.clone(),
    };
    let disk = DiskSpec {
        name: "disk".into(),
        source: Box::new(src),
        areas: AreaMode::Everything,
        use_allocation: false,
        change_id: String::new(),
    };
    let session = WriteSession::new(&repo, &ix, 1).unwrap();
    let e = backup_source(&session, disk, o, &NoProgress)
        .expect_err("a backup whose lock is lost fails");
    let msg = e.to_string();
    assert!(matches!(e, Error::LockLost { .. }), "{msg}");
    assert!(msg.contains("could not be refreshed"), "{msg}");
    assert!(msg.contains("injected put failure"), "{msg}");
    assert_eq!(repo.generation_ids().unwrap(), before, "no new generation");
}

#[test]
fn one_failed_refresh_then_a_good_one_keeps_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (b, failing) = flaky(dir.path());
    // Wide margins so that a loaded machine cannot turn the one failure
    // into a loss: lost only after 1.9 s without a successful refresh.
    let times = LockTimes {
        refresh_every: Duration::from_millis(100),
        stale_after: Duration::from_secs(2),
    };
    let lock = Lock::acquire_with(b, Mode::Shared, "vmkeep backup", None, times).unwrap();
    let h = lock.handle();
    // At least one refresh fails; later ones succeed, in time.
    std::thread::sleep(Duration::from_millis(50));
    failing.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(250));
    failing.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    lock.check()
        .expect("a failed refresh followed by a good one loses nothing");
    assert!(!h.is_lost());
    // Failing for good: lost once the next try would be too late.
    failing.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(3000));
    assert!(matches!(h.check(), Err(Error::LockLost { .. })));
}

#[test]
fn a_gc_whose_lock_is_lost_stops_before_moving_anything() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let ix = MemIndex::default();
    // Garbage: a generation forgotten, its chunks unreferenced.
    let data: Vec<u8> = (0..CS as usize * 4).map(|i| (i * 13 % 241) as u8).collect();
    let g = backup(&repo, &ix, &data, "vm", "d");
    let garbage = dependencies(&repo, &g);
    repo.forget_generation(&g).unwrap();
    drop(repo);
    let (b, failing) = flaky(dir.path());
    let repo = Repository::open(b.clone(), Some(b"pw")).unwrap();
    let lock = Lock::acquire_with(b, Mode::Gc, "vmkeep gc", None, TIMES).unwrap();
    failing.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lock.check().is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never lost"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = vmkeep_engine::gc::gc_with_margin(&repo, Some(&ix), &lock, 0)
        .expect_err("a gc whose lock is lost stops");
    assert!(matches!(e, Error::LockLost { .. }), "{e}");
    // Nothing was moved to the trash or deleted.
    for p in &garbage {
        assert!(dir.path().join(p).exists(), "{p} was moved");
    }
    assert!(
        !dir.path().join("trash").exists()
            || std::fs::read_dir(dir.path().join("trash"))
                .unwrap()
                .next()
                .is_none()
    );
}
