//! Pipeline plumbing shared by backup and restore: the ordered pipeline
//! ([`ordered`]), the first-error slot that stops every stage, the
//! in-flight window that bounds memory, and the all-zero test.
//!
//! Shape: one producer thread emits items in order → each item becomes a
//! task on a rayon pool (which several pipelines may share: the tasks of
//! two disks interleave on the same workers) → results go back to one
//! consumer (the calling thread), which re-orders them by sequence number.
//! The producer takes one credit per item and the consumer returns it once
//! the item is consumed in order, so at most `window` items (each at most
//! one chunk) are alive at any time, whatever the size of the disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::{Error, Result};

/// Collects the first error; later ones are kept as text.
#[derive(Default)]
pub struct Failure {
    first: Mutex<Option<Error>>,
    others: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Failure {
    /// Records an error and asks every stage to stop.
    pub fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::SeqCst);
        let mut f = self.first.lock().expect("poisoned");
        if f.is_none() {
            *f = Some(e);
        } else {
            self.others.lock().expect("poisoned").push(e.to_string());
        }
    }

    /// True once any stage failed.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The first error, if any; later errors are logged.
    pub fn take(&self) -> Option<Error> {
        for o in self.others.lock().expect("poisoned").iter() {
            log::warn!("also failed: {o}");
        }
        self.first.lock().expect("poisoned").take()
    }

    /// Runs `f`, recording its error.
    pub fn guard(&self, f: impl FnOnce() -> Result<()>) {
        if let Err(e) = f() {
            self.fail(e);
        }
    }
}

/// The credit window: `acquire` blocks while `size` items are in flight.
pub struct Window {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Window {
    pub fn new(size: usize) -> Self {
        let (tx, rx) = bounded(size);
        for _ in 0..size {
            tx.send(()).expect("fresh channel has room");
        }
        Window { tx, rx }
    }
    /// Takes a credit; `false` once the writer is gone.
    pub fn acquire(&self, failure: &Failure) -> bool {
        loop {
            if failure.stopped() {
                return false;
            }
            match self.rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(()) => return true,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(_) => return false,
            }
        }
    }
    /// Returns a credit.
    pub fn release(&self) {
        let _ = self.tx.try_send(());
    }
}

/// What the producer of an [`ordered`] pipeline emits into.
pub struct Emit<'a, 's, W, D> {
    scope: &'a rayon::Scope<'s>,
    window: &'a Window,
    failure: &'s Failure,
    tx: Sender<(u64, D)>,
    work: &'s (dyn Fn(W) -> Result<D> + Sync),
    seq: u64,
}

impl<'s, W: Send + 's, D: Send + 's> Emit<'_, 's, W, D> {
    /// Queues the next item (blocking while the window is full); `false`
    /// once the pipeline stops (a stage failed or the consumer is gone):
    /// the producer should then return.
    pub fn emit(&mut self, item: W) -> bool {
        if !self.window.acquire(self.failure) {
            return false;
        }
        let (seq, tx, work, failure) = (self.seq, self.tx.clone(), self.work, self.failure);
        self.seq += 1;
        self.scope.spawn(move |_| {
            if failure.stopped() {
                return;
            }
            match work(item) {
                // The channel holds a whole window: a send never blocks,
                // and fails only once the consumer has gone.
                Ok(d) => {
                    let _ = tx.send((seq, d));
                }
                Err(e) => failure.fail(e),
            }
        });
        true
    }
}

/// Runs an ordered pipeline on `pool`: `produce` (on a thread of its own)
/// emits items in order, `work` turns each into a result on the pool, and
/// `consume` (on the calling thread) gets the results in emission order.
/// At most `window` items are alive at once. The first error of any stage
/// stops the others and is returned.
pub fn ordered<W, D>(
    pool: &rayon::ThreadPool,
    window: usize,
    produce: impl FnOnce(&mut Emit<'_, '_, W, D>) -> Result<()> + Send,
    work: &(dyn Fn(W) -> Result<D> + Sync),
    mut consume: impl FnMut(D) -> Result<()>,
) -> Result<()>
where
    W: Send,
    D: Send,
{
    let failure = Failure::default();
    let credits = Window::new(window);
    let (tx, rx) = bounded::<(u64, D)>(window);
    pool.in_place_scope(|scope| {
        std::thread::scope(|ts| {
            let (failure, credits) = (&failure, &credits);
            ts.spawn(move || {
                let mut emit = Emit {
                    scope,
                    window: credits,
                    failure,
                    tx,
                    work,
                    seq: 0,
                };
                failure.guard(|| produce(&mut emit));
            });
            failure.guard(|| {
                let mut held = BTreeMap::new();
                let mut next = 0u64;
                for (seq, d) in rx {
                    held.insert(seq, d);
                    while let Some(d) = held.remove(&next) {
                        consume(d)?;
                        credits.release();
                        next += 1;
                    }
                    if failure.stopped() {
                        return Ok(());
                    }
                }
                Ok(())
            });
            // The consumer is done (or failed): the receiver is dropped
            // here, so no task waits on it.
        });
    });
    match failure.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A rayon pool of `threads` workers (0: one per core) named `name-N`.
pub fn pool(threads: usize, name: &'static str) -> Result<rayon::ThreadPool> {
    let threads = if threads == 0 {
        default_threads()
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start worker threads: {e}")))
}

/// Number of worker threads: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// True when every byte of `b` is zero.
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 1000];
        assert!(is_zero(&v));
        v[999] = 1;
        assert!(!is_zero(&v));
        v[999] = 0;
        v[3] = 0x80;
        assert!(!is_zero(&v));
        assert!(is_zero(&[]));
    }

    /// Results come out in emission order whatever order the workers
    /// finish in, and never more than the window are alive at once.
    #[test]
    fn ordered_keeps_emission_order_within_the_window() {
        use std::sync::atomic::AtomicUsize;
        let pool = pool(4, "test").unwrap();
        let alive = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let work = |i: u64| -> Result<u64> {
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_micros((7 - i % 8) * 300));
            Ok(i * 2)
        };
        let mut got = Vec::new();
        ordered(
            &pool,
            6,
            |emit| {
                for i in 0..200 {
                    if !emit.emit(i) {
                        break;
                    }
                }
                Ok(())
            },
            &work,
            |d| {
                got.push(d);
                alive.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 6, "{peak:?}");
    }

    /// A worker's error stops the producer and is the one returned.
    #[test]
    fn ordered_stops_at_the_first_error() {
        let pool = pool(2, "test").unwrap();
        let emitted = std::sync::atomic::AtomicU64::new(0);
        let work = |i: u64| -> Result<u64> {
            if i == 50 {
                return Err(Error::Invalid("item 50".into()));
            }
            Ok(i)
        };
        let e = ordered(
            &pool,
            4,
            |emit| {
                for i in 0..1_000_000 {
                    if !emit.emit(i) {
                        break;
                    }
                    emitted.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            },
            &work,
            |d| {
                assert!(d < 50);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "item 50");
        assert!(emitted.load(Ordering::SeqCst) < 1000);
    }

    #[test]
    fn failure_keeps_the_first_error() {
        let f = Failure::default();
        assert!(!f.stopped());
        f.fail(Error::Invalid("first".into()));
        f.fail(Error::Invalid("second".into()));
        assert!(f.stopped());
        assert_eq!(f.take().unwrap().to_string(), "first");
    }
}
