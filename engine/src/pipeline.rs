//! Pipeline plumbing shared by backup and restore: the first-error slot
//! that stops every stage, the in-flight window that bounds memory, and
//! the all-zero test.
//!
//! Shape: one reader thread → bounded channel → N rayon workers → bounded
//! channel → one writer (the calling thread), which re-orders results by
//! sequence number. The reader takes one credit per item and the writer
//! returns it once the item is written in order, so at most `window`
//! items (each at most one chunk) are alive at any time, whatever the size
//! of the disk.

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
