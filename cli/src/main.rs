//! `vmkeep`: back up VMware VMs and disk images into a deduplicating,
//! compressed, encrypted repository, and restore any generation.
//!
//! This file holds the command-line grammar and the exit-code mapping
//! (README "Exit codes"); each command lives in its own `cmd_*` module.

#![forbid(unsafe_code)]

/// jemalloc with transparent huge pages and one arena (`thp:always,narenas:1`,
/// compiled in from .cargo/config.toml): glibc's malloc hands out fresh
/// 4 KiB pages for Argon2id's 64 MiB and for the pipeline's in-flight slots,
/// and an incremental backup took 43,000 page faults (16,400 of them
/// Argon2's), 3,400 with this; unlocking is 25 ms shorter and an incremental
/// of the benchmark 50-90 ms. The price is memory: gc holds 41 instead of 32
/// bytes per chunk at its peak (README "Performance").
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cmd_backup;
mod cmd_maint;
mod cmd_repo;
mod cmd_restore;
mod context;
mod output;
mod password;
mod vcargs;
mod vddk_cmd;
mod vsphere_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Back up VMware vSphere VMs and disk images; restore any generation.
#[derive(Parser, Debug)]
#[command(name = "vmkeep", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Repository location (a local directory).
    #[arg(long, short = 'r', env = "VMKEEP_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// File holding the repository password (else VMKEEP_PASSWORD, else a prompt).
    #[arg(long, env = "VMKEEP_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Where the chunk index (a cache) lives; default $XDG_CACHE_HOME/vmkeep or ~/.cache/vmkeep.
    #[arg(long, env = "VMKEEP_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Directory holding VMware's VDDK (libvixDiskLib.so.*).
    #[arg(long, env = "VDDK_LIBDIR", global = true)]
    pub vddk_libdir: Option<PathBuf>,
    /// Worker threads for hashing, compression and encryption (default: one per core).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub vc: vcargs::VcArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(cmd_repo::InitArgs),
    /// Back up a disk image, a block device, or a disk through VDDK.
    Backup(cmd_backup::BackupArgs),
    /// List generations.
    #[command(alias = "list")]
    Generations(cmd_repo::GenerationsArgs),
    /// Restore one disk of a generation to a file, a block device, or a disk through VDDK.
    Restore(cmd_restore::RestoreArgs),
    /// Repository statistics: sizes, dedup and compression ratios.
    Stats,
    /// Check that every generation restores intact (exit code 5 when anything is damaged).
    Verify(cmd_maint::VerifyArgs),
    /// Remove generations by retention rules (their data goes at the next gc).
    Forget(cmd_maint::ForgetArgs),
    /// Protect a generation from `forget` (or --remove the protection).
    Protect(cmd_maint::ProtectArgs),
    /// Delete chunks no generation references (safe while backups run).
    Gc,
    /// Remove stale locks (or --all locks).
    Unlock(cmd_maint::UnlockArgs),
    /// Manage the passwords (key slots) that open the repository.
    #[command(subcommand)]
    Key(cmd_repo::KeyCmd),
    /// Manage the local chunk index.
    #[command(subcommand)]
    Index(cmd_repo::IndexCmd),
    /// Check a vCenter/ESXi connection.
    #[command(subcommand)]
    Vcenter(vsphere_cmd::VcenterCmd),
    /// Inspect virtual machines and their Changed Block Tracking.
    #[command(subcommand)]
    Vm(vsphere_cmd::VmCmd),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    let done = |r: anyhow::Result<()>| r.map(|()| 0u8);
    match &cli.command {
        Command::Verify(a) => cmd_maint::verify(g, a),
        Command::Forget(a) => done(cmd_maint::forget(g, a)),
        Command::Protect(a) => done(cmd_maint::protect(g, a)),
        Command::Gc => done(cmd_maint::gc(g)),
        Command::Unlock(a) => done(cmd_maint::unlock(g, a)),
        Command::Init(a) => done(cmd_repo::init(g, a)),
        Command::Backup(a) => done(cmd_backup::run(g, a)),
        Command::Generations(a) => done(cmd_repo::generations(g, a)),
        Command::Restore(a) => done(cmd_restore::run(g, a)),
        Command::Stats => done(cmd_repo::stats(g)),
        Command::Key(k) => done(cmd_repo::key(g, k)),
        Command::Index(i) => done(cmd_repo::index(g, i)),
        Command::Vcenter(c) => done(vsphere_cmd::run_vcenter(c, &g.vc, g.json)),
        Command::Vm(c) => done(vsphere_cmd::run_vm(c, &g.vc, g.json)),
    }
}

/// Exit codes (documented in the README).
fn exit_code(e: &anyhow::Error) -> u8 {
    use vmkeep_engine::Error as E;
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<E>() {
            return match err {
                E::WrongPassword(_) | E::PasswordRequired(_) => 3,
                E::RepoMissing(_) | E::NotARepo(_) | E::RepoFormat { .. } => 4,
                E::ChunkBad { .. } | E::Object { .. } | E::ObjectMissing { .. } => 5,
                E::StorageFull { .. } => 7,
                E::TargetWrite { error, .. } if error.kind() == std::io::ErrorKind::StorageFull => {
                    7
                }
                E::Locked { .. } => 6,
                _ => 1,
            };
        }
    }
    1
}

fn main() -> ExitCode {
    output::init_logging();
    // Read the local UTC offset while the process is single-threaded.
    context::init_utc_offset();
    let cli = Cli::parse();
    let json = cli.global.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json {
                let v =
                    serde_json::json!({ "error": format!("{e:#}"), "exit_code": exit_code(&e) });
                println!("{v}");
            }
            eprintln!("vmkeep: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_grammar_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
