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
mod cmd_vddk;
mod cmd_vsphere;
mod context;
mod output;
mod password;
mod vcargs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Back up VMware vSphere VMs and disk images; restore any generation.
#[derive(Parser, Debug)]
#[command(name = "vmkeep", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed: options every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or notes.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// `--repo`, for the commands that work on a repository. (`global` makes
/// it valid after a subcommand of the command that takes it, as `key list
/// --repo R`; no other command accepts it.)
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArg {
    /// Repository location (a local directory).
    #[arg(long, short = 'r', env = "VMKEEP_REPOSITORY", global = true)]
    pub repo: Option<String>,
}

/// `--password-file`, for the commands that unlock the repository.
#[derive(clap::Args, Debug, Clone)]
pub struct PasswordArg {
    /// File holding the repository password (else VMKEEP_PASSWORD, else a prompt).
    #[arg(long, env = "VMKEEP_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
}

/// `--cache-dir`, for the commands that use the local chunk index.
#[derive(clap::Args, Debug, Clone)]
pub struct CacheArg {
    /// Where the chunk index (a cache) lives; default $XDG_CACHE_HOME/vmkeep or ~/.cache/vmkeep.
    #[arg(long, env = "VMKEEP_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
}

/// `--repo` and `--password-file`: an unlocked repository.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub password: PasswordArg,
}

/// An unlocked repository and its local index.
#[derive(clap::Args, Debug, Clone)]
pub struct IndexedRepoArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub cache: CacheArg,
}

/// What the commands' helpers ([`context`], [`output`]) read: the options
/// of the command line that one command took (the others stay `None`).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub repo: Option<String>,
    pub password_file: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    pub cache_dir: Option<PathBuf>,
}

impl Global {
    fn of(o: &OutputArgs) -> Self {
        Global {
            json: o.json,
            quiet: o.quiet,
            ..Default::default()
        }
    }
    fn location(mut self, r: &RepoArg) -> Self {
        self.repo = r.repo.clone();
        self
    }
    fn repo(self, r: &RepoArgs) -> Self {
        let mut g = self.location(&r.repo);
        g.password_file = r.password.password_file.clone();
        g
    }
    fn indexed(self, r: &IndexedRepoArgs) -> Self {
        let mut g = self.repo(&r.repo);
        g.cache_dir = r.cache.cache_dir.clone();
        g
    }
}

/// `--threads`, for the commands that hash, compress or decode.
#[derive(clap::Args, Debug, Clone)]
pub struct Threads {
    /// Worker threads for hashing, compression and encryption (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `vmkeep backup`: the repository, its index, and what to back up.
#[derive(clap::Args, Debug)]
pub struct BackupCmd {
    #[command(flatten)]
    pub repo: IndexedRepoArgs,
    #[command(flatten)]
    pub args: cmd_backup::BackupArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init(cmd_repo::InitArgs),
    /// Back up a disk image, a block device, or a disk through VDDK.
    Backup(BackupCmd),
    /// List generations.
    #[command(alias = "list")]
    Generations(cmd_repo::GenerationsArgs),
    /// Restore one disk of a generation to a file, a block device, or a disk through VDDK.
    Restore(cmd_restore::RestoreArgs),
    /// Repository statistics: sizes, dedup and compression ratios.
    Stats(cmd_repo::StatsArgs),
    /// Check that every generation restores intact (exit code 5 when anything is damaged).
    Verify(cmd_maint::VerifyArgs),
    /// Remove generations: by retention rules, by id, or a whole lineage (their data goes at the next gc).
    Forget(cmd_maint::ForgetArgs),
    /// Protect a generation from `forget` (or --remove the protection).
    Protect(cmd_maint::ProtectArgs),
    /// Delete chunks no generation references (safe while backups run).
    Gc(cmd_maint::GcArgs),
    /// Remove stale locks (or --all locks).
    Unlock(cmd_maint::UnlockArgs),
    /// Manage the passwords (key slots) that open the repository.
    Key(cmd_repo::KeyArgs),
    /// Manage the local chunk index.
    Index(cmd_repo::IndexArgs),
    /// Check a vCenter/ESXi connection.
    Vcenter(cmd_vsphere::VcenterArgs),
    /// Inspect virtual machines and their Changed Block Tracking.
    Vm(cmd_vsphere::VmArgs),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = Global::of(&cli.output);
    let done = |r: anyhow::Result<()>| r.map(|()| exit::OK);
    match &cli.command {
        Command::Verify(a) => cmd_maint::verify(&g.indexed(&a.repo), a),
        Command::Forget(a) => done(cmd_maint::forget(&g.repo(&a.repo), a)),
        Command::Protect(a) => done(cmd_maint::protect(&g.repo(&a.repo), a)),
        Command::Gc(a) => done(cmd_maint::gc(&g.indexed(&a.repo))),
        Command::Unlock(a) => done(cmd_maint::unlock(&g.location(&a.repo), a)),
        Command::Init(a) => done(cmd_repo::init(&g.repo(&a.repo), a)),
        Command::Backup(a) => done(cmd_backup::run(&g.indexed(&a.repo), &a.args)),
        Command::Generations(a) => done(cmd_repo::generations(&g.repo(&a.repo), a)),
        Command::Restore(a) => done(cmd_restore::run(&g.repo(&a.repo), a)),
        Command::Stats(a) => done(cmd_repo::stats(&g.indexed(&a.repo))),
        Command::Key(k) => done(cmd_repo::key(&g.repo(&k.repo), &k.cmd)),
        Command::Index(i) => done(cmd_repo::index(&g.indexed(&i.repo), &i.cmd)),
        Command::Vcenter(c) => done(cmd_vsphere::run_vcenter(&c.cmd, &c.vc, g.json)),
        Command::Vm(c) => done(cmd_vsphere::run_vm(&c.cmd, &c.vc, g.json)),
    }
}

/// Exit codes (README "Exit codes"), in one place.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PASSWORD: u8 = 3;
    pub const NO_REPOSITORY: u8 = 4;
    pub const DAMAGED: u8 = 5;
    pub const LOCKED: u8 = 6;
    pub const NO_SPACE: u8 = 7;
}

/// A command line clap accepts but the command cannot use (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code of a failure: that of the first engine error in its chain
/// (an error that only names the disk it happened to is looked through).
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<password::PasswordMissing>().is_some() {
            return exit::PASSWORD;
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if let Some(err) = cause.downcast_ref::<vmkeep_engine::Error>() {
            return engine_code(err);
        }
    }
    exit::FAILURE
}

/// The exit code of an engine error.
fn engine_code(err: &vmkeep_engine::Error) -> u8 {
    use vmkeep_engine::Error as E;
    match err {
        // A failed restore's code, or a disk's, is that of what stopped it.
        E::Disk { source, .. } | E::RestoreFailed { source, .. } => engine_code(source),
        E::WrongPassword { .. } | E::PasswordRequired(_) | E::NoKeySlots { .. } => exit::PASSWORD,
        E::RepoMissing(_) | E::NotARepo { .. } | E::RepoFormat { .. } => exit::NO_REPOSITORY,
        E::ChunkBad { .. }
        | E::Object { .. }
        | E::ObjectMissing { .. }
        | E::GenerationDamaged { .. } => exit::DAMAGED,
        E::StorageFull { .. } => exit::NO_SPACE,
        E::TargetWrite { error, .. } if error.kind() == std::io::ErrorKind::StorageFull => {
            exit::NO_SPACE
        }
        E::Locked { .. } | E::IndexBusy { .. } | E::LockLost { .. } => exit::LOCKED,
        _ => exit::FAILURE,
    }
}

/// The error and its causes on one line, each cause once: many errors
/// already carry their source's text, which the chain would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if t.is_empty() || out.contains(&t) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&t);
    }
    out
}

fn main() -> ExitCode {
    output::init_logging();
    // Read the local UTC offset while the process is single-threaded.
    context::init_utc_offset();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // Help and version go to stdout with 0; a usage error to stderr.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let json = cli.output.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // A reader that went away (`vmkeep generations | head`): end
        // quietly, as `ls` does.
        Err(e) if e.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::from(exit::OK),
        Err(e) => {
            let text = error_text(&e);
            let code = exit_code(&e);
            if json {
                let v = serde_json::json!({ "error": text, "exit_code": code });
                let _ = output::write_line(format_args!("{v}"));
            }
            eprintln!("vmkeep: error: {text}");
            ExitCode::from(code)
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

    /// A cause whose text the error already carries is not repeated.
    #[test]
    fn error_text_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(20);
        let e = vmkeep_engine::Error::storage("/r/config", io);
        let text = super::error_text(&anyhow::Error::new(e));
        assert_eq!(text.matches("Not a directory").count(), 1, "{text}");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_text(&e), "outer: inner");
    }
}
