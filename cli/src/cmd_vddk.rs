//! `--vddk-disk` for `backup` and `restore`: a disk read or written through
//! VDDK (the library named by `--vddk-libdir`/`VDDK_LIBDIR`).
//!
//! Two forms: a local VMDK path (a hosted disk: VDDK's local connection, no
//! server), or `"[datastore] vm/disk.vmdk"` on a vCenter/ESXi host, which
//! needs `--vcenter`, `--vc-user`, `--vc-password-file`, `--vm-moref` and
//! `--thumbprint` (the server certificate's SHA-1), and optionally
//! `--snapshot-ref` and `--transport`.

use std::path::Path;

use anyhow::{bail, Context};
use vmkeep_engine::ops::restore::RestoreTo;
use vmkeep_engine::source::DiskSource;
use vmkeep_engine::vddk::{ConnectSpec, VddkSource};

use crate::vcargs::VcArgs;

/// Options that select a disk read or written through VDDK. Those that
/// only describe such a disk (and the TLS choice) need `--vddk-disk`,
/// through the group `vddk`: required directly, `--vddk-disk` would count
/// as given whenever the other member of the command's "one of" group is.
/// Those a variable can set do not, so an exported `VDDK_LIBDIR` leaves
/// `--image` alone.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "VDDK disk (instead of a local image)")]
#[command(group(clap::ArgGroup::new("vddk").args(["vddk_disk"])))]
#[command(group(
    clap::ArgGroup::new("vddk_tls")
        .multiple(true)
        .args(["vc_insecure", "vc_fingerprint"])
        .requires("vddk")
))]
pub struct VddkDiskArgs {
    /// Disk to access through VDDK: a local .vmdk path, or "[datastore] vm/disk.vmdk" with --vcenter.
    #[arg(long = "vddk-disk", id = "vddk_disk")]
    pub disk: Option<String>,
    /// Directory holding VMware's VDDK (libvixDiskLib.so.*).
    #[arg(long, env = "VDDK_LIBDIR")]
    pub vddk_libdir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub vc: VcArgs,
    /// Managed object reference of the VM owning the disk (vm-NN).
    #[arg(long = "vm-moref", requires = "vddk")]
    pub vm_moref: Option<String>,
    /// SHA-1 thumbprint of the vCenter/ESXi certificate (AA:BB:...), required by VDDK.
    #[arg(long, requires = "vddk")]
    pub thumbprint: Option<String>,
    /// Read the disk as of this snapshot (snapshot-NN).
    #[arg(long = "snapshot-ref", requires = "vddk")]
    pub snapshot_ref: Option<String>,
    /// VDDK transport modes in order of preference, e.g. nbdssl:nbd, hotadd, san.
    #[arg(long, requires = "vddk")]
    pub transport: Option<String>,
}

/// The host (and port) part of a vCenter URL or a bare host name.
fn server_of(url: &str) -> anyhow::Result<(String, u32)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() {
        bail!("--vcenter {url:?} names no host");
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').context("unclosed [ in --vcenter")?;
        let port = rest.strip_prefix(':').map_or(Ok(0), str::parse)?;
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().context("bad port in --vcenter")?)),
        None => Ok((authority.to_string(), 0)),
    }
}

/// The connection spec and disk path these options describe.
fn spec(a: &VddkDiskArgs, vc: &VcArgs) -> anyhow::Result<(ConnectSpec, String)> {
    let Some(disk) = a.disk.clone() else {
        bail!("--vddk-disk is required");
    };
    if !disk.starts_with('[') {
        if !Path::new(&disk).is_absolute() {
            let abs = std::env::current_dir()?.join(&disk);
            return Ok((ConnectSpec::default(), abs.display().to_string()));
        }
        return Ok((ConnectSpec::default(), disk));
    }
    let url = vc
        .url
        .as_deref()
        .context("a \"[datastore] path\" disk needs --vcenter")?;
    let (server, port) = server_of(url)?;
    let user = vc
        .user
        .clone()
        .context("a remote VDDK disk needs --vc-user")?;
    let password = crate::password::vcenter(vc.password_file.as_deref(), &user)?;
    let spec = ConnectSpec {
        server: Some(server),
        port,
        user: Some(user),
        password: Some(password),
        thumbprint: Some(
            a.thumbprint
                .clone()
                .context("a remote VDDK disk needs --thumbprint")?,
        ),
        vm_moref: Some(
            a.vm_moref
                .clone()
                .context("a remote VDDK disk needs --vm-moref")?,
        ),
        snapshot_ref: a.snapshot_ref.clone(),
        transport: a.transport.clone(),
        read_only: false,
    };
    Ok((spec, disk))
}

fn libdir(libdir: Option<&Path>) -> anyhow::Result<&Path> {
    libdir.context(
        "VDDK access needs --vddk-libdir (or VDDK_LIBDIR): the directory holding libvixDiskLib.so",
    )
}

/// Opens the disk for reading.
pub fn open_source(a: &VddkDiskArgs) -> anyhow::Result<Box<dyn DiskSource>> {
    let dir = libdir(a.vddk_libdir.as_deref())?;
    let (spec, path) = spec(a, &a.vc)?;
    let s = VddkSource::open(dir, &spec, &path)
        .map_err(|source| vmkeep_engine::Error::VddkOpen { path, source })?;
    Ok(Box::new(s))
}

/// The disk to restore to (it must exist and be large enough); the
/// restore opens it once the generation is known.
pub fn restore_to(a: &VddkDiskArgs) -> anyhow::Result<RestoreTo> {
    let libdir = libdir(a.vddk_libdir.as_deref())?.to_path_buf();
    let (spec, path) = spec(a, &a.vc)?;
    Ok(RestoreTo::Vddk { libdir, spec, path })
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn server_of_urls() {
        assert_eq!(
            server_of("https://vc.example.com/sdk").unwrap(),
            ("vc.example.com".into(), 0)
        );
        assert_eq!(
            server_of("https://u@vc:8443/sdk").unwrap(),
            ("vc".into(), 8443)
        );
        assert_eq!(server_of("esx1").unwrap(), ("esx1".into(), 0));
        assert_eq!(
            server_of("https://[::1]:443/sdk").unwrap(),
            ("::1".into(), 443)
        );
        assert!(server_of("https:///sdk").is_err());
    }
}
