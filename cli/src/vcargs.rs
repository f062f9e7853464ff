//! Connection settings for vCenter/ESXi, shared by every command that talks
//! to vSphere (`vcenter`, `vm`, and a VDDK disk of `backup`/`restore`;
//! also read from the environment). Only those commands take them.

use std::path::PathBuf;

/// `--vcenter URL --vc-user U --vc-password-file F --insecure --fingerprint SHA256`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "vCenter connection")]
pub struct VcArgs {
    /// vCenter or ESXi URL, e.g. https://vcenter.example.com/sdk
    #[arg(long = "vcenter", id = "vc_url", env = "VMKEEP_VC_URL", global = true)]
    pub url: Option<String>,
    /// vSphere user name.
    #[arg(
        long = "vc-user",
        id = "vc_user",
        env = "VMKEEP_VC_USER",
        global = true
    )]
    pub user: Option<String>,
    /// File holding the vSphere password.
    #[arg(
        long = "vc-password-file",
        id = "vc_password_file",
        env = "VMKEEP_VC_PASSWORD_FILE",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// Skip TLS certificate verification (not recommended).
    #[arg(
        long,
        id = "vc_insecure",
        global = true,
        conflicts_with = "vc_fingerprint"
    )]
    pub insecure: bool,
    /// Accept only a server certificate with this SHA-256 fingerprint (hex, colons optional).
    #[arg(long, id = "vc_fingerprint", global = true)]
    pub fingerprint: Option<String>,
}
