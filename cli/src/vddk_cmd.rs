//! `--vddk-disk` for `backup` and `restore` (filled by the VDDK issue).

use std::path::Path;

use vmkeep_engine::source::DiskSource;
use vmkeep_engine::target::DiskTarget;

use crate::vcargs::VcArgs;

/// Options that select a disk read or written through VDDK.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VddkDiskArgs {
    /// Disk to access through VDDK: a local .vmdk path, or "[datastore] vm/disk.vmdk" with --vcenter.
    #[arg(long = "vddk-disk")]
    pub disk: Option<String>,
}

pub fn open_source(
    _a: &VddkDiskArgs,
    _vc: &VcArgs,
    _libdir: Option<&Path>,
) -> anyhow::Result<Box<dyn DiskSource>> {
    anyhow::bail!("VDDK access is not built yet")
}

pub fn open_target(
    _a: &VddkDiskArgs,
    _vc: &VcArgs,
    _libdir: Option<&Path>,
) -> anyhow::Result<Box<dyn DiskTarget>> {
    anyhow::bail!("VDDK access is not built yet")
}
