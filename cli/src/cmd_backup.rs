//! `vmkeep backup`: one disk (image file, block device, or VDDK disk) into
//! a new generation, full or incremental from a parent generation with a
//! changed-areas list.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;
use vmkeep_engine::areas::AreaFile;
use vmkeep_engine::backup::{self, DiskJob, GenerationInfo, Parent};
use vmkeep_engine::source::{DiskSource, Extent, ImageSource};
use vmkeep_format::generation::SourceKind;

use crate::output::size;
use crate::{context, vddk_cmd, Global};

/// Bytes of an image read ahead while the repository is being unlocked:
/// the first slots, so the pipeline starts on warm data; the reader's own
/// look-ahead takes over from there. More only slowed the unlock, which
/// keeps both cores busy (Argon2 lanes run in parallel) and reads its own
/// files from the same disk: 16 MiB measured best of 0, 16, 64 and 256.
const PREFETCH_BUDGET: u64 = 16 << 20;

/// How to read the source.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Read every byte.
    Full,
    /// Skip ranges the source reports as unallocated (holes of a sparse file).
    Sparse,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Disk image file or block device to back up.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub vddk: vddk_cmd::VddkDiskArgs,
    /// Name of the disk lineage (generations of one disk share it).
    #[arg(long = "disk", id = "disk_name")]
    pub disk: String,
    /// Only read these areas (lines `offset,length` in bytes). With --parent,
    /// everything else comes from the parent; without, everything else is zero.
    #[arg(long)]
    pub changed_areas: Option<PathBuf>,
    /// Parent generation (id prefix, `latest`, or `latest:NAME`).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read everything, or skip unallocated ranges.
    #[arg(long, value_enum, default_value_t = ReadMode::Sparse)]
    pub read_mode: ReadMode,
    /// CBT change id to record for the next incremental.
    #[arg(long, default_value = "")]
    pub change_id: String,
}

/// Starts the image on the first slots to back up while the password is
/// stretched. Asking the kernel to read blocks while it queues the reads,
/// so a thread of its own does it, on a second descriptor. The repository's
/// chunk size is not known before it is opened: the default one is a good
/// guess, and this is only advice.
fn read_ahead(img: &ImageSource, changed_areas: Option<PathBuf>) {
    let Ok(hint) = img.try_clone() else { return };
    let granule = u64::from(vmkeep_format::manifest::DEFAULT_CHUNK_SIZE);
    let capacity = hint.capacity();
    let _ = std::thread::Builder::new()
        .name("vmkeep-read-ahead".into())
        .spawn(move || {
            let areas = changed_areas
                .as_deref()
                .and_then(|f| AreaFile::open(f, capacity).ok()?.iter().ok());
            match areas {
                Some(it) => hint.read_ahead(it.map_while(|r| r.ok()), granule, PREFETCH_BUDGET),
                None => hint.read_ahead(
                    std::iter::once(Extent {
                        offset: 0,
                        length: capacity,
                    }),
                    granule,
                    PREFETCH_BUDGET,
                ),
            }
        });
}

pub fn run(g: &Global, a: &BackupArgs) -> anyhow::Result<()> {
    let started = vmkeep_engine::repo::Repository::now();
    let t0 = Instant::now();
    // Where the time goes (RUST_LOG=debug).
    let phase = |what: &str| log::debug!("backup: {what} at {:.3} s", t0.elapsed().as_secs_f64());
    if a.image.is_some() == a.vddk.disk.is_some() {
        bail!("give exactly one of --image PATH or --vddk-disk PATH");
    }
    let image = match &a.image {
        Some(p) => Some(ImageSource::open(p, a.read_mode == ReadMode::Sparse)?),
        None => None,
    };
    // The config and key files first: they are the unlock's critical path,
    // and with a cold cache each costs a disk read that would otherwise
    // queue behind the read-ahead's and RocksDB's. Those two then run while
    // the key is derived.
    let sealed = context::read_repo(g)?;
    if let Some(img) = &image {
        read_ahead(img, a.changed_areas.clone());
    }
    let index = context::start_index(g, &sealed);
    let repo = context::unlock(g, sealed)?;
    phase("unlocked the repository");
    let source: Box<dyn DiskSource> = match image {
        Some(img) => Box::new(img),
        None => vddk_cmd::open_source(&a.vddk, &g.vc, g.vddk_libdir.as_deref())?,
    };
    let capacity = source.capacity();
    let parent_spec = match &a.parent {
        Some(spec) => Some(
            repo.resolve_generation(spec)
                .map_err(|e| anyhow::anyhow!("parent generation {spec}: {e}"))?
                .0,
        ),
        None => None,
    };
    let _lock = context::lock(&repo, vmkeep_engine::lock::Mode::Shared, parent_spec)?;
    phase("locked");
    // Loaded again under the lock: a forget that ran in between would have
    // removed it (the lock names the parent, so none can from now on).
    let parent = match parent_spec {
        None => None,
        Some(pid) => {
            let pg = repo
                .load_generation(&pid)
                .map_err(|e| anyhow::anyhow!("parent generation {}: {e}", pid.short()))?;
            let d = pg
                .disks
                .iter()
                .find(|d| d.name == a.disk)
                .with_context(|| {
                    format!(
                        "parent generation {}: it has no disk named {:?} (it has: {})",
                        pid.short(),
                        a.disk,
                        pg.disks
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            if d.capacity != capacity {
                bail!(
                    "parent generation {}: disk {:?} had {} bytes, {} has {capacity}: the disk changed size, take a full backup (no --parent)",
                    pid.short(),
                    a.disk,
                    d.capacity,
                    source.describe()
                );
            }
            let manifest = repo.load_manifest(&d.manifest)?;
            Some((
                pid,
                Parent {
                    label: pid.short(),
                    manifest,
                },
            ))
        }
    };
    let areas = match &a.changed_areas {
        Some(f) => Some(AreaFile::open(f, capacity)?.iter()?),
        None => None,
    };
    let index = context::finish_index(g, &repo, index)?;
    phase("index ready");
    let progress = crate::output::progress(g);
    let parent_id = parent.as_ref().map(|(id, _)| *id);
    let job = DiskJob {
        disk_name: a.disk.clone(),
        source,
        use_allocation: a.read_mode == ReadMode::Sparse,
        areas,
        parent: parent.map(|(_, p)| p),
        chunk_size: repo.config().chunk_size,
        change_id: a.change_id.clone(),
        threads: g.threads,
    };
    let disk = backup::backup_disk(&repo, &index, job, progress.as_ref())?;
    phase("disk read and stored");
    let info = GenerationInfo {
        source_kind: SourceKind::Image,
        source: a.disk.clone(),
        parent: parent_id,
        started,
        utc_offset: context::utc_offset(),
        metadata: vec![],
    };
    let (gid, _) = backup::commit_generation(&repo, info, std::slice::from_ref(&disk))?;
    phase("committed");
    let secs = t0.elapsed().as_secs_f64();
    let s = &disk.manifest.stats;
    if g.json {
        println!(
            "{}",
            json!({
                "generation": gid.to_hex(), "source": a.disk, "disk": a.disk,
                "manifest": disk.manifest_id.to_hex(), "capacity": capacity,
                "chunk_size": disk.manifest.chunk_size, "parent": parent_id.map(|p| p.to_hex()),
                "data_slots": s.data_slots, "zero_slots": s.zero_slots, "reused_slots": s.reused_slots,
                "read_bytes": s.read_bytes, "new_chunks": s.new_chunks, "new_plain_bytes": s.new_plain_bytes,
                "new_stored_bytes": s.new_stored_bytes, "dedup_chunks": s.dedup_chunks,
                "seconds": secs,
            })
        );
    } else {
        println!(
            "generation {} of {}: {} disk, read {}, {} new chunks ({} stored), {} already stored, {} zero and {} unchanged slots, {:.1}s ({}/s)",
            gid.short(),
            a.disk,
            size(capacity),
            size(s.read_bytes),
            s.new_chunks,
            size(s.new_stored_bytes),
            s.dedup_chunks,
            s.zero_slots,
            s.reused_slots,
            secs,
            size((capacity as f64 / secs.max(1e-6)) as u64)
        );
    }
    Ok(())
}
