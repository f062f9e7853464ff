//! `vmkeep vcenter ...` and `vmkeep vm ...`: what an administrator runs to
//! check a vSphere setup before the first backup.
//!
//! Nouns: [`VcenterCmd`] (`check`), [`VmCmd`] (`list`, `show`, `cbt`), the
//! connection built from [`VcArgs`].
//!
//! Invariants: TLS verification stays on unless `--insecure` or
//! `--fingerprint` says otherwise (both at once is refused); a refused
//! certificate is reported with its fingerprint so it can be pinned; with
//! `--json` stdout carries exactly one JSON document.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use vmkeep_vsphere::{
    parse_fingerprint, sha256_fingerprint, Client, ConnectOptions, Error, SnapshotNode, TlsMode,
    VmInfo, VmSelector,
};

use crate::outln;
use crate::vcargs::VcArgs;

/// `vmkeep vcenter`: the connection and a subcommand.
#[derive(clap::Args, Debug)]
pub struct VcenterArgs {
    #[command(flatten)]
    pub vc: VcArgs,
    #[command(subcommand)]
    pub cmd: VcenterCmd,
}

/// `vmkeep vm`: the connection and a subcommand.
#[derive(clap::Args, Debug)]
pub struct VmArgs {
    #[command(flatten)]
    pub vc: VcArgs,
    #[command(subcommand)]
    pub cmd: VmCmd,
}

/// `vmkeep vcenter` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum VcenterCmd {
    /// Connect, print the server's identity and certificate, and check the login.
    Check,
}

/// `vmkeep vm` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum VmCmd {
    /// List virtual machines with power state, CBT, disk count and size.
    List,
    /// Show a VM's disks (key, file, capacity, thin/thick, changeId) and snapshots.
    Show {
        /// VM: a name, an inventory path (DC/vm/folder/NAME), a moref (vm-N) or a
        /// BIOS or instance UUID; force a kind with name=, path=, moref=, uuid=
        /// (BIOS) or instance-uuid=. Several matches are refused, naming each.
        vm: String,
    },
    /// Enable or disable Changed Block Tracking (takes effect at the next snapshot).
    #[command(group(clap::ArgGroup::new("state").required(true).args(["enable", "disable"])))]
    Cbt {
        /// VM: a name, an inventory path, a moref (vm-N) or a UUID (as for `vm show`).
        vm: String,
        /// Turn CBT on.
        #[arg(long)]
        enable: bool,
        /// Turn CBT off (resets tracking: the next backup reads whole disks).
        #[arg(long)]
        disable: bool,
    },
}

fn tls_mode(vc: &VcArgs) -> anyhow::Result<TlsMode> {
    match (&vc.fingerprint, vc.insecure) {
        (Some(_), true) => bail!("use either --fingerprint or --insecure, not both"),
        (Some(fp), false) => Ok(TlsMode::Pinned(parse_fingerprint(fp)?)),
        (None, true) => Ok(TlsMode::Insecure),
        (None, false) => Ok(TlsMode::Verify),
    }
}

fn options(vc: &VcArgs) -> anyhow::Result<ConnectOptions> {
    let url = vc
        .url
        .as_deref()
        .context("no vCenter given: use --vcenter URL or VMKEEP_VC_URL")?;
    let mut o = ConnectOptions::new(url, tls_mode(vc)?);
    o.timeout = Duration::from_secs(120);
    Ok(o)
}

fn credentials(vc: &VcArgs) -> anyhow::Result<(String, String)> {
    let user = vc
        .user
        .clone()
        .context("no vSphere user given: use --vc-user or VMKEEP_VC_USER")?;
    let password = crate::password::vcenter(vc.password_file.as_deref(), &user)?;
    Ok((user, password))
}

/// Adds a pinning hint when the certificate is not trusted.
fn explain(e: Error, opts: &ConnectOptions) -> anyhow::Error {
    if let Error::Tls { .. } = &e {
        let mut insecure = opts.clone();
        insecure.tls = TlsMode::Insecure;
        if let Some(fp) = Client::connect(&insecure)
            .ok()
            .and_then(|c| c.peer_certificate())
            .map(|d| sha256_fingerprint(&d))
        {
            return anyhow::Error::new(e).context(format!(
                "the server's certificate is not trusted; if its SHA-256 fingerprint {fp} is the one \
                 your vCenter shows, pin it with --fingerprint {fp}"
            ));
        }
    }
    anyhow::Error::new(e)
}

fn login(vc: &VcArgs) -> anyhow::Result<Client> {
    let opts = options(vc)?;
    let (user, password) = credentials(vc)?;
    let c = Client::connect(&opts).map_err(|e| explain(e, &opts))?;
    c.login_with(&user, &password)
        .with_context(|| format!("logging in to {} as {user}", c.url()))?;
    Ok(c)
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// Human-readable size (binary units).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run_vcenter(cmd: &VcenterCmd, vc: &VcArgs, json: bool) -> anyhow::Result<()> {
    match cmd {
        VcenterCmd::Check => check(vc, json),
    }
}

fn check(vc: &VcArgs, json: bool) -> anyhow::Result<()> {
    let opts = options(vc)?;
    let c = Client::connect(&opts).map_err(|e| explain(e, &opts))?;
    let about = c.about().clone();
    let sha256 = c.certificate_sha256();
    let sha1 = c.certificate_thumbprint();
    let login = credentials(vc).and_then(|(user, password)| {
        c.login_with(&user, &password)
            .map(|s| (user, s))
            .map_err(anyhow::Error::new)
    });
    let (login_ok, login_user, login_error) = match &login {
        Ok((user, s)) => (
            true,
            Some(if s.user_name.is_empty() {
                user.clone()
            } else {
                s.user_name.clone()
            }),
            None,
        ),
        Err(e) => (false, None, Some(format!("{e:#}"))),
    };
    if json {
        print_json(&json!({
            "url": c.url(),
            "product": about.name,
            "full_name": about.full_name,
            "version": about.version,
            "build": about.build,
            "api_type": about.api_type,
            "api_version": about.api_version,
            "instance_uuid": about.instance_uuid,
            "certificate_sha256": sha256,
            "certificate_sha1_thumbprint": sha1,
            "login_ok": login_ok,
            "login_user": login_user,
            "login_error": login_error,
        }))?;
    } else {
        outln!("server:        {}", c.url())?;
        outln!("product:       {} ({})", about.full_name, about.api_type)?;
        outln!("version:       {} build {}", about.version, about.build)?;
        outln!("API version:   {}", about.api_version)?;
        match (&sha256, &sha1) {
            (Some(a), Some(b)) => {
                outln!("cert SHA-256:  {a}")?;
                outln!("cert SHA-1:    {b}  (VDDK thumbprint)")?;
            }
            _ => outln!("certificate:   none (plain http)")?,
        }
        match (&login_user, &login_error) {
            (Some(u), _) => outln!("login:         ok as {u}")?,
            (_, Some(e)) => outln!("login:         FAILED: {e}")?,
            _ => {}
        }
    }
    match login {
        Ok(_) => Ok(()),
        Err(e) => Err(e.context("the login check failed")),
    }
}

pub fn run_vm(cmd: &VmCmd, vc: &VcArgs, json: bool) -> anyhow::Result<()> {
    let c = login(vc)?;
    match cmd {
        VmCmd::List => list(&c, json),
        VmCmd::Show { vm } => show(&c, vm, json),
        VmCmd::Cbt {
            vm,
            enable,
            disable,
        } => {
            let on = *enable && !*disable;
            let moref = c.find_vm(&VmSelector::parse(vm))?;
            c.set_change_tracking(&moref, on).with_context(|| {
                format!("turning CBT {} on {vm}", if on { "on" } else { "off" })
            })?;
            let info = c.vm_info(&moref)?;
            if info.change_tracking != on {
                bail!(
                    "the server accepted the change but {vm} reports CBT {}",
                    onoff(info.change_tracking)
                );
            }
            if json {
                print_json(&json!({"vm": info.name, "moref": moref.value, "cbt": on}))?;
            } else {
                outln!(
                    "{}: CBT {} (takes effect at the next snapshot{})",
                    info.name,
                    onoff(on),
                    if on {
                        ""
                    } else {
                        "; the next backup reads whole disks"
                    }
                )?;
            }
            Ok(())
        }
    }
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn list(c: &Client, json: bool) -> anyhow::Result<()> {
    let vms = c.list_vms()?;
    if json {
        let rows: Vec<Value> = vms
            .iter()
            .map(|v| {
                json!({
                    "name": v.name,
                    "moref": v.moref.value,
                    "power_state": v.power_state,
                    "cbt": v.change_tracking,
                    "disks": v.disk_count,
                    "total_bytes": v.total_bytes,
                })
            })
            .collect();
        return print_json(&Value::Array(rows));
    }
    let w = vms.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    outln!(
        "{:<w$}  {:<10}  {:<10}  {:<4}  {:>5}  {:>10}",
        "NAME",
        "MOREF",
        "POWER",
        "CBT",
        "DISKS",
        "SIZE"
    )?;
    for v in &vms {
        outln!(
            "{:<w$}  {:<10}  {:<10}  {:<4}  {:>5}  {:>10}",
            v.name,
            v.moref.value,
            v.power_state,
            onoff(v.change_tracking),
            v.disk_count,
            size(v.total_bytes)
        )?;
    }
    Ok(())
}

fn snapshot_json(n: &SnapshotNode) -> Value {
    json!({
        "moref": n.snapshot.value,
        "name": n.name,
        "description": n.description,
        "created": n.create_time,
        "quiesced": n.quiesced,
        "children": n.children.iter().map(snapshot_json).collect::<Vec<_>>(),
    })
}

fn print_tree(nodes: &[SnapshotNode], depth: usize, current: Option<&str>) -> anyhow::Result<()> {
    for n in nodes {
        let mark = if Some(n.snapshot.value.as_str()) == current {
            "  (current)"
        } else {
            ""
        };
        outln!(
            "  {:indent$}{} [{}] {}{}",
            "",
            n.name,
            n.snapshot.value,
            n.create_time,
            mark,
            indent = depth * 2
        )?;
        print_tree(&n.children, depth + 1, current)?;
    }
    Ok(())
}

fn show(c: &Client, sel: &str, json: bool) -> anyhow::Result<()> {
    let moref = c.find_vm(&VmSelector::parse(sel))?;
    let info: VmInfo = c.vm_info(&moref)?;
    if json {
        return print_json(&json!({
            "name": info.name,
            "moref": info.moref.value,
            "power_state": info.power_state,
            "hardware_version": info.hardware_version,
            "cbt": info.change_tracking,
            "bios_uuid": info.bios_uuid,
            "instance_uuid": info.instance_uuid,
            "guest_id": info.guest_id,
            "disks": info.disks.iter().map(|d| json!({
                "key": d.key,
                "label": d.label,
                "controller_key": d.controller_key,
                "unit_number": d.unit_number,
                "file": d.file_name,
                "datastore": d.datastore_name,
                "capacity_bytes": d.capacity_bytes,
                "thin": d.thin,
                "disk_mode": d.disk_mode,
                "change_id": d.change_id,
            })).collect::<Vec<_>>(),
            "current_snapshot": info.current_snapshot.as_ref().map(|s| s.value.clone()),
            "snapshots": info.snapshots.iter().map(snapshot_json).collect::<Vec<_>>(),
        }));
    }
    outln!("name:              {}", info.name)?;
    outln!("moref:             {}", info.moref.value)?;
    outln!("power state:       {}", info.power_state)?;
    outln!("hardware version:  {}", info.hardware_version)?;
    outln!("CBT:               {}", onoff(info.change_tracking))?;
    outln!("BIOS UUID:         {}", info.bios_uuid)?;
    outln!("instance UUID:     {}", info.instance_uuid)?;
    outln!("disks:")?;
    for d in &info.disks {
        outln!(
            "  key {}  {}  {}  {}  {}  changeId {}",
            d.key,
            d.file_name,
            size(d.capacity_bytes),
            if d.thin { "thin" } else { "thick" },
            d.disk_mode,
            d.change_id.as_deref().unwrap_or("-")
        )?;
    }
    if info.snapshots.is_empty() {
        outln!("snapshots:         none")?;
    } else {
        outln!("snapshots:")?;
        print_tree(
            &info.snapshots,
            0,
            info.current_snapshot.as_ref().map(|s| s.value.as_str()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1 << 20), "1.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn tls_flags_pick_a_mode() {
        let mut vc = VcArgs::default();
        assert_eq!(tls_mode(&vc).unwrap(), TlsMode::Verify);
        vc.insecure = true;
        assert_eq!(tls_mode(&vc).unwrap(), TlsMode::Insecure);
        vc.fingerprint = Some("00".repeat(32));
        assert!(tls_mode(&vc).is_err());
        vc.insecure = false;
        assert_eq!(tls_mode(&vc).unwrap(), TlsMode::Pinned(vec![0; 32]));
    }
}
