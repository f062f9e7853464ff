//! The restore pipeline for one disk of a generation.
//!
//! An ordered pipeline ([`crate::pipeline::ordered`]): the reader walks
//! the manifest's pages in order (each page verified against the
//! manifest), emits chunk slots and merges runs of zero slots; the workers
//! fetch, verify (checksum, tag, and the chunk id recomputed from the
//! plaintext) and decode chunks in parallel; the writer (calling thread)
//! writes them to the target in slot order. A bad chunk stops the restore
//! with the generation, disk, slot and chunk named.
//!
//! Read buffers and zstd contexts are pooled, one per busy worker; chunks are decoded
//! into aligned buffers (so a file target can write them with direct I/O),
//! and written buffers go back to the workers through a bounded recycling
//! channel, so a restore allocates about `window` buffers in all. The
//! reader asks the backend to prefetch chunks [`PREFETCH_LEAD`] slots ahead
//! of the one it queues, so reads are in flight well before a worker needs
//! them and one worker per core is enough (more only adds switching on a
//! CPU-bound decode).

use std::sync::Mutex;

use crossbeam_channel::bounded;
use vmkeep_format::blob::BlobType;
use vmkeep_format::manifest::Manifest;
use vmkeep_format::ObjectId;

use crate::buf::AlignedBuf;
use crate::layout::object_path;
use crate::pipeline::{ordered, Emit};
use crate::progress::Progress;
use crate::repo::{ReadBuffers, Repository};
use crate::target::DiskTarget;
use crate::{Error, Result};

/// Counters of a finished restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub data_bytes: u64,
    pub zero_bytes: u64,
    pub chunks: u64,
}

enum Work {
    Chunk { slot: u64, id: ObjectId },
    Zeros { offset: u64, len: u64 },
}

enum Done {
    Data { offset: u64, data: AlignedBuf },
    Zeros { offset: u64, len: u64 },
}

/// Restores the disk described by `manifest` (of generation `gen_label`)
/// onto `target`.
pub fn restore_disk(
    repo: &Repository,
    manifest: &Manifest,
    gen_label: &str,
    target: &mut dyn DiskTarget,
    threads: usize,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let pool = crate::pipeline::pool(threads, "vmkeep-restore")?;
    let window = pool.current_num_threads() * 4 + 4;
    let (spare_tx, spare_rx) = bounded::<AlignedBuf>(window);
    let chunk_size = manifest.chunk_size as usize;
    target.prepare(manifest.capacity)?;
    progress.start(&target.describe(), manifest.capacity);
    let bad = |slot: u64, id: &ObjectId, msg: String| Error::ChunkBad {
        generation: gen_label.to_string(),
        disk: manifest.disk_name.clone(),
        slot,
        chunk: id.to_hex(),
        msg,
    };
    // Read buffers and zstd contexts, one per worker at a time.
    let buffers: Mutex<Vec<ReadBuffers>> = Mutex::new(Vec::new());
    let work = |w: Work| -> Result<Done> {
        Ok(match w {
            Work::Zeros { offset, len } => Done::Zeros { offset, len },
            Work::Chunk { slot, id } => {
                let mut data = spare_rx
                    .try_recv()
                    .unwrap_or_else(|_| AlignedBuf::new(chunk_size));
                let mut bufs = buffers.lock().expect("poisoned").pop().unwrap_or_default();
                let got = repo.get_object_into_slice(BlobType::Chunk, &id, &mut bufs, data.space());
                buffers.lock().expect("poisoned").push(bufs);
                let n = got.map_err(|e| bad(slot, &id, e.to_string()))?;
                data.set_len(n);
                let want = manifest.slot_len(slot);
                if n as u64 != want {
                    return Err(bad(
                        slot,
                        &id,
                        format!("holds {n} bytes, the slot needs {want}"),
                    ));
                }
                Done::Data {
                    offset: slot * manifest.chunk_size as u64,
                    data,
                }
            }
        })
    };
    let mut stats = RestoreStats::default();
    let result = ordered(
        &pool,
        window,
        |emit| read_stage(repo, manifest, gen_label, emit),
        &work,
        |d| {
            match d {
                Done::Data { offset, data } => {
                    let bytes = data.as_slice();
                    target.write_at(offset, bytes)?;
                    stats.data_bytes += bytes.len() as u64;
                    stats.chunks += 1;
                    progress.advance(bytes.len() as u64);
                    let _ = spare_tx.try_send(data);
                }
                Done::Zeros { offset, len } => {
                    target.write_zeros(offset, len)?;
                    stats.zero_bytes += len;
                    progress.advance(len);
                }
            }
            Ok(())
        },
    );
    progress.finish();
    result?;
    if stats.data_bytes + stats.zero_bytes != manifest.capacity {
        return Err(Error::Invalid(format!(
            "internal error: restored {} of {} bytes",
            stats.data_bytes + stats.zero_bytes,
            manifest.capacity
        )));
    }
    target.finish()?;
    Ok(stats)
}

/// How many slots ahead of the one being queued the reader asks the
/// backend to prefetch (page cache only: costs no memory of ours).
const PREFETCH_LEAD: usize = 16;

fn read_stage(
    repo: &Repository,
    m: &Manifest,
    gen_label: &str,
    emit: &mut Emit<'_, '_, Work, Done>,
) -> Result<()> {
    let cs = m.chunk_size as u64;
    let mut zero_run: Option<(u64, u64)> = None; // (offset, len)
    let mut send = |w: Work| emit.emit(w);
    for (p, pid) in m.pages.iter().enumerate() {
        // Loaded and checked against the manifest (§7.2).
        let page = repo.load_page_of(m, p).map_err(|e| Error::PageBad {
            generation: gen_label.to_string(),
            disk: m.disk_name.clone(),
            slot: p as u64 * m.entries_per_page as u64,
            page: p,
            id: pid.to_hex(),
            msg: e.to_string(),
        })?;
        let prefetch = |i: usize| {
            if let Some(id) = page.entries.get(i).filter(|id| !id.is_zero()) {
                repo.backend().prefetch(&object_path(BlobType::Chunk, id));
            }
        };
        (0..PREFETCH_LEAD).for_each(prefetch);
        for (i, id) in page.entries.iter().enumerate() {
            prefetch(i + PREFETCH_LEAD);
            let slot = p as u64 * m.entries_per_page as u64 + i as u64;
            let len = m.slot_len(slot);
            if id.is_zero() {
                zero_run = match zero_run {
                    Some((o, l)) if l < 1024 * cs => Some((o, l + len)),
                    Some((o, l)) => {
                        if !send(Work::Zeros { offset: o, len: l }) {
                            return Ok(());
                        }
                        Some((slot * cs, len))
                    }
                    None => Some((slot * cs, len)),
                };
                continue;
            }
            if let Some((o, l)) = zero_run.take() {
                if !send(Work::Zeros { offset: o, len: l }) {
                    return Ok(());
                }
            }
            if !send(Work::Chunk { slot, id: *id }) {
                return Ok(());
            }
        }
    }
    if let Some((o, l)) = zero_run.take() {
        send(Work::Zeros { offset: o, len: l });
    }
    Ok(())
}
