//! `vmkeep backup`: disks (image files, block devices, or a VDDK disk) into
//! a new generation of their lineage, full or incremental. The work is the
//! engine's ([`vmkeep_engine::ops::backup`]); this module parses, starts
//! the read-ahead and the index while the key is derived, and prints.

use std::path::PathBuf;
use std::time::Instant;

use vmkeep_engine::areas::AreaList;
use vmkeep_engine::ops::backup::{self as op, AreaMode, BackupOptions, BackupReport, DiskSpec};
use vmkeep_engine::session::WriteSession;
use vmkeep_engine::source::{DiskSource, Extent, ImageSource};
use vmkeep_format::generation::SourceKind;

use crate::output::{count, name, size};
use crate::{cmd_vddk, context, outln, Global, Threads};

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
#[command(group(clap::ArgGroup::new("source").required(true).args(["image", "vddk_disk"])))]
pub struct BackupArgs {
    /// Disk image file or block device to back up; repeat it to back up
    /// several disks into one generation (each needs its --disk).
    #[arg(long)]
    pub image: Vec<PathBuf>,
    #[command(flatten)]
    pub vddk: cmd_vddk::VddkDiskArgs,
    /// Name of the disk; with one disk also the lineage's (generations of
    /// one disk share it). Repeat it, in the order of --image, for several.
    #[arg(long = "disk", id = "disk_name", required = true)]
    pub disk: Vec<String>,
    /// Name of the lineage when it is not the disk's (required with
    /// several disks): the generation's source, e.g. the VM's name.
    #[arg(long)]
    pub lineage: Option<String>,
    /// Only these areas changed since the parent (lines `offset,length` in
    /// bytes, as QueryChangedDiskAreas answers); every other slot keeps the
    /// parent's entry. The parent is --parent, else the lineage's latest
    /// generation. Read once: a pipe or `/dev/stdin` works.
    #[arg(long, conflicts_with = "allocated_areas")]
    pub changed_areas: Option<PathBuf>,
    /// Only these areas hold data (a first backup from QueryChangedDiskAreas("*")
    /// or QueryAllocatedBlocks); every other slot is zero. A full backup: no parent.
    #[arg(long, conflicts_with = "parent")]
    pub allocated_areas: Option<PathBuf>,
    /// Parent generation: `latest` (this lineage's newest), an id prefix, or
    /// `latest:NAME` (another lineage's newest, named explicitly).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read everything, or skip unallocated ranges.
    #[arg(long, value_enum, default_value_t = ReadMode::Sparse)]
    pub read_mode: ReadMode,
    /// CBT change id to record for the next incremental.
    #[arg(long, default_value = "")]
    pub change_id: String,
    #[command(flatten)]
    pub threads: Threads,
}

/// Starts the image on the first slots to back up while the password is
/// stretched. Asking the kernel to read blocks while it queues the reads,
/// so a thread of its own does it, on a second descriptor. The repository's
/// chunk size is not known before it is opened: the default one is a good
/// guess, and this is only advice.
fn read_ahead(img: &ImageSource, areas: Option<&AreaList>) {
    let Ok(hint) = img.try_clone() else { return };
    let granule = u64::from(vmkeep_format::manifest::DEFAULT_CHUNK_SIZE);
    let capacity = hint.capacity();
    let areas = areas.cloned();
    let _ = std::thread::Builder::new()
        .name("vmkeep-read-ahead".into())
        .spawn(move || match areas {
            Some(a) => hint.read_ahead(a.extents().iter().copied(), granule, PREFETCH_BUDGET),
            None => hint.read_ahead(
                std::iter::once(Extent {
                    offset: 0,
                    length: capacity,
                }),
                granule,
                PREFETCH_BUDGET,
            ),
        });
}

/// Checks how --image, --disk and --lineage go together (what clap
/// cannot say); returns the lineage.
fn check_disks(a: &BackupArgs) -> anyhow::Result<String> {
    let sources = a.image.len().max(1);
    if a.disk.len() != sources {
        return Err(crate::UsageError(format!(
            "{} --disk for {} disk source(s): give one --disk NAME per --image, in the same order",
            a.disk.len(),
            sources
        ))
        .into());
    }
    if sources > 1 && (a.changed_areas.is_some() || a.allocated_areas.is_some()) {
        return Err(crate::UsageError(
            "--changed-areas and --allocated-areas take one disk: back several disks up without them".into(),
        )
        .into());
    }
    match (&a.lineage, sources) {
        (Some(l), _) => Ok(l.clone()),
        (None, 1) => Ok(a.disk[0].clone()),
        (None, _) => Err(crate::UsageError(
            "several disks need --lineage NAME, the name their generations share".into(),
        )
        .into()),
    }
}

pub fn run(g: &Global, a: &BackupArgs) -> anyhow::Result<()> {
    let started = vmkeep_engine::repo::Repository::now();
    let t0 = Instant::now();
    // Where the time goes (RUST_LOG=debug).
    let phase = |what: &str| log::debug!("backup: {what} at {:.3} s", t0.elapsed().as_secs_f64());
    let lineage = check_disks(a)?;
    for d in &a.disk {
        op::check_name("disk name", d)?;
    }
    let mut images = Vec::new();
    for p in &a.image {
        images.push(ImageSource::open(p, a.read_mode == ReadMode::Sparse)?);
    }
    let image = if images.len() == 1 {
        images.pop()
    } else {
        None
    };
    // Read once, before anything else: a pipe has only one reader.
    let cap = image.as_ref().map(|i| i.capacity());
    let areas = match (&a.changed_areas, &a.allocated_areas) {
        (Some(f), _) => AreaMode::Changed(AreaList::read(f, cap)?),
        (None, Some(f)) => AreaMode::Allocated(AreaList::read(f, cap)?),
        (None, None) => AreaMode::Everything,
    };
    let listed = match &areas {
        AreaMode::Changed(l) | AreaMode::Allocated(l) => Some(l),
        AreaMode::Everything => None,
    };
    // The config and key files first: they are the unlock's critical path,
    // and with a cold cache each costs a disk read that would otherwise
    // queue behind the read-ahead's and RocksDB's. Those two then run while
    // the key is derived.
    let sealed = context::read_repo(g)?;
    if let Some(img) = &image {
        read_ahead(img, listed);
    }
    for img in &images {
        read_ahead(img, None);
    }
    let index = context::start_index(g, &sealed);
    let repo = context::unlock(g, sealed)?;
    phase("unlocked the repository");
    let sources: Vec<Box<dyn DiskSource>> = match image {
        Some(img) => vec![Box::new(img)],
        None if !images.is_empty() => images
            .into_iter()
            .map(|i| Box::new(i) as Box<dyn DiskSource>)
            .collect(),
        None => vec![cmd_vddk::open_source(&a.vddk)?],
    };
    let index = context::finish_index(g, &repo, index)?;
    phase("index ready");
    let progress = crate::output::progress(g);
    let o = BackupOptions {
        parent: a.parent.clone(),
        command: context::command_line(),
        started,
        utc_offset: context::utc_offset(),
        ..BackupOptions::new(&lineage, SourceKind::Image)
    };
    let mut areas = Some(areas);
    let disks = sources
        .into_iter()
        .zip(&a.disk)
        .map(|(source, name)| DiskSpec {
            name: name.clone(),
            source,
            areas: areas.take().unwrap_or(AreaMode::Everything),
            use_allocation: a.read_mode == ReadMode::Sparse,
            change_id: a.change_id.clone(),
        })
        .collect();
    let session = WriteSession::new(&repo, &index, a.threads.threads)?;
    let r = op::backup(&session, disks, o, progress.as_ref())?;
    phase("committed");
    let secs = t0.elapsed().as_secs_f64();
    for w in &r.warnings {
        eprintln!("vmkeep: warning: {w}");
    }
    if g.json {
        let mut v = serde_json::to_value(&r)?;
        v["seconds"] = secs.into();
        outln!("{v}")?;
    } else {
        print_summary(&r, secs)?;
    }
    Ok(())
}

fn print_summary(r: &BackupReport, secs: f64) -> anyhow::Result<()> {
    let c = &r.counts;
    let b = &c.breakdown;
    let what = match r.disks.as_slice() {
        [d] if d.disk == r.source => format!("{} disk", size(c.capacity)),
        ds => format!("{} in {}", size(c.capacity), count(ds.len() as u64, "disk")),
    };
    outln!(
        "generation {} of {}: {what}, read {} in {:.1}s ({}/s)",
        &r.generation[..8],
        name(&r.source),
        size(c.read_bytes),
        secs,
        size((c.capacity as f64 / secs.max(1e-6)) as u64)
    )?;
    if let (Some(p), Some(rule)) = (&r.parent, &r.parent_rule) {
        outln!("  parent: {} ({rule})", &p[..8])?;
    }
    let several = r.disks.len() > 1;
    for d in &r.disks {
        if several {
            outln!(
                "  disk {}: {}, read {}{}",
                name(&d.disk),
                size(d.counts.capacity),
                size(d.counts.read_bytes),
                if d.incremental {
                    ", incremental"
                } else {
                    ", full"
                }
            )?;
        }
        if let Some(a) = &d.areas {
            outln!(
                "  {} areas: {} ({}) from {}",
                a.kind,
                count(a.count, "area"),
                size(a.bytes),
                a.origin
            )?;
        }
    }
    outln!(
        "  {}: {} new ({} stored), {} already stored, {} zero, {} unchanged",
        count(c.slots, "slot"),
        b.new,
        size(c.new_stored_bytes),
        b.already_stored,
        b.zero,
        b.unchanged
    )?;
    if c.reread_slots > 0 {
        outln!(
            "  {} outside the areas read again: the parent's entry could not be reused",
            count(c.reread_slots, "slot")
        )?;
    }
    Ok(())
}
