//! `vmkeep restore GEN`: one disk of a generation to a raw file, a block
//! device, or a disk through VDDK. A failed restore's error says what it
//! left in the target (a file: nothing; a device or disk: partial content).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;
use vmkeep_engine::restore::restore_disk;
use vmkeep_engine::target::{DiskTarget, FileTarget};

use crate::outln;
use crate::output::size;
use crate::{cmd_vddk, context, Global, Threads};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Generation: id prefix (4+ hex digits), `latest`, or `latest:NAME`.
    pub generation: String,
    /// Raw image file or block device to write.
    #[arg(long)]
    pub to: Option<PathBuf>,
    #[command(flatten)]
    pub vddk: cmd_vddk::VddkDiskArgs,
    /// Which disk of the generation (needed when it has several).
    #[arg(long = "disk", id = "disk_name")]
    pub disk: Option<String>,
    /// Overwrite an existing target file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub threads: Threads,
}

pub fn run(g: &Global, a: &RestoreArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let repo = context::open_repo(g)?;
    let _lock = context::lock(&repo, vmkeep_engine::lock::Mode::Shared, None)?;
    let (gid, gen, suspects) = repo.resolve_generation_noting(&a.generation)?;
    for d in &suspects {
        eprintln!(
            "vmkeep: warning: generation {} cannot be read ({}) and may be newer than {}, which {} names",
            d.id.short(),
            d.problem,
            gid.short(),
            a.generation
        );
    }
    let disk = match &a.disk {
        Some(n) => vmkeep_engine::repo::disk_of(&gen, &gid, n)?,
        None if gen.disks.len() == 1 => &gen.disks[0],
        None => bail!(
            "generation {} has {} disks: choose one with --disk ({})",
            gid.short(),
            gen.disks.len(),
            gen.disks
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let manifest = repo.load_manifest(&disk.manifest)?;
    let mut target: Box<dyn DiskTarget> = match (&a.to, &a.vddk.disk) {
        (Some(p), None) => Box::new(FileTarget::create(p, a.force)?),
        (None, Some(_)) => cmd_vddk::open_target(&a.vddk)?,
        _ => bail!("give exactly one of --to PATH or --vddk-disk PATH"),
    };
    let progress = crate::output::progress(g);
    let label = gid.short();
    let st = restore_disk(
        &repo,
        &manifest,
        &label,
        target.as_mut(),
        a.threads.threads,
        progress.as_ref(),
    )
    // The target says what the failure left in it; the engine error stays
    // in the chain for the exit code.
    .with_context(|| format!("restore failed: {}", target.failure_note()))?;
    let secs = t0.elapsed().as_secs_f64();
    if g.json {
        outln!(
            "{}",
            json!({"generation": gid.to_hex(), "disk": disk.name, "target": target.describe(),
                   "capacity": manifest.capacity, "data_bytes": st.data_bytes,
                   "zero_bytes": st.zero_bytes, "chunks": st.chunks, "seconds": secs})
        )?;
    } else {
        outln!(
            "restored generation {} disk {} to {}: {} ({} data, {} zeros) in {:.1}s ({}/s)",
            label,
            disk.name,
            target.describe(),
            size(manifest.capacity),
            size(st.data_bytes),
            size(st.zero_bytes),
            secs,
            size((manifest.capacity as f64 / secs.max(1e-6)) as u64)
        )?;
    }
    Ok(())
}
