//! The machine's ceiling for a backup: read an image in 1 MiB slots, skip
//! all-zero slots, and hash (keyed BLAKE3), compress (zstd 1) and encrypt
//! (AES-256-GCM) the rest on N threads, storing nothing. A backup cannot be
//! faster than this; `scripts/bench.sh` reports vmkeep as a share of it.
//!
//! Usage: `ceiling IMAGE [THREADS]`; prints `ceiling BYTES SECONDS MB/s`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use vmkeep_format::blob::{BlobType, Codec};
use vmkeep_format::MasterKey;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: ceiling IMAGE [THREADS]");
    let threads: u64 = args
        .next()
        .map(|t| t.parse().expect("THREADS"))
        .unwrap_or(2);
    let f = File::open(&path).expect("open image");
    let size = f.metadata().expect("stat").len();
    let slots = size.div_ceil(1 << 20);
    let codec = Codec::encrypted(&MasterKey::generate(), 1);
    let next = AtomicU64::new(0);
    let stored = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= slots {
                        break;
                    }
                    let off = i << 20;
                    let n = ((size - off) as usize).min(buf.len());
                    f.read_exact_at(&mut buf[..n], off).expect("read");
                    let b = &buf[..n];
                    if vmkeep_engine::pipeline::is_zero(b) {
                        continue;
                    }
                    let id = codec.id(b);
                    let blob = codec.encode(BlobType::Chunk, &id, b);
                    stored.fetch_add(blob.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "ceiling {size} {secs:.3} {:.1}MB/s (stored {} bytes)",
        size as f64 / secs / 1e6,
        stored.load(Ordering::Relaxed)
    );
}
