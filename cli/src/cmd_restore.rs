//! `vmkeep restore GEN`: one disk of a generation to a raw file, a block
//! device, or a disk through VDDK ([`vmkeep_engine::ops::restore`]). A
//! failed restore's error says what it left in the target (a file:
//! nothing; a device or disk: partial content).

use std::path::PathBuf;

use vmkeep_engine::ops::restore::{self as op, RestoreOptions, RestoreTo};
use vmkeep_engine::ops::short;

use crate::output::{print_json, size};
use crate::{cmd_vddk, context, outln, Global, RepoArgs, Threads};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "vddk_disk"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
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
    #[arg(long, conflicts_with = "vddk_disk")]
    pub force: bool,
    #[command(flatten)]
    pub threads: Threads,
}

pub fn run(g: &Global, a: &RestoreArgs) -> anyhow::Result<()> {
    let to = match &a.to {
        Some(p) => RestoreTo::File {
            path: p.clone(),
            overwrite: a.force,
        },
        None => cmd_vddk::restore_to(&a.vddk)?,
    };
    let repo = context::open_repo(g)?;
    let o = RestoreOptions {
        generation: a.generation.clone(),
        disk: a.disk.clone(),
        threads: a.threads.threads,
        command: context::command_line(),
    };
    let progress = crate::output::progress(g);
    let r = op::restore(&repo, &o, to, progress.as_ref())?;
    for w in &r.warnings {
        eprintln!("vmkeep: warning: {w}");
    }
    if g.json {
        return print_json(&r);
    }
    outln!(
        "restored generation {} disk {} to {}: {} ({} data, {} zeros) in {:.1}s ({}/s)",
        short(&r.generation),
        r.disk,
        r.target,
        size(r.capacity),
        size(r.data_bytes),
        size(r.zero_bytes),
        r.seconds,
        size((r.capacity as f64 / r.seconds.max(1e-6)) as u64)
    )
}
