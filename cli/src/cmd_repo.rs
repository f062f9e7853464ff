//! Repository-level commands: `init`, `generations`, `stats`, `key`,
//! `index`. Each builds the options of its engine operation
//! ([`vmkeep_engine::ops`]), calls it, and prints the report (as JSON with
//! `--json`).

use vmkeep_engine::ops::generations::GenerationsOptions;
use vmkeep_engine::ops::index::RebuildOptions;
use vmkeep_engine::ops::init::InitOptions;
use vmkeep_engine::ops::key::{KeyAddOptions, KeyRemoveOptions};
use vmkeep_engine::ops::stats::StatsOptions;
use vmkeep_engine::ops::{self, short};
use vmkeep_format::config::Encryption;
use vmkeep_format::keyfile::KdfParams;

use crate::output::{count, name, print_json, size, time};
use crate::{context, outln, Global, IndexedRepoArgs, RepoArgs};

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("kdf")
        .multiple(true)
        .args(["kdf_memory_kib", "kdf_iterations", "kdf_lanes"])
        .conflicts_with("no_encryption")
))]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Store data unencrypted (ids become plain BLAKE3; anyone with the files can read them).
    #[arg(long)]
    pub no_encryption: bool,
    /// Chunk size for new disks: a power of two from 64K to 16M (suffixes K, M).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    pub chunk_size: u32,
    /// zstd level (0 stores chunks uncompressed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub zstd_level: i32,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Argon2id costs for a new key slot.
#[derive(clap::Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory in KiB.
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    pub kdf_iterations: u32,
    /// Argon2id lanes (computed in parallel, one per core).
    #[arg(
        long,
        default_value_t = KdfParams::default().lanes,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub kdf_lanes: u32,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory_kib,
            iterations: self.kdf_iterations,
            lanes: self.kdf_lanes,
        }
    }
}

/// Parses `1M`, `64K`, `65536`.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let v = n * mul;
    vmkeep_format::manifest::check_chunk_size(
        u32::try_from(v).map_err(|_| "too large".to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(v as u32)
}

pub fn init(g: &Global, a: &InitArgs) -> anyhow::Result<()> {
    let b = context::backend(g)?;
    let (encryption, pw) = if a.no_encryption {
        (Encryption::None, None)
    } else {
        let pw = crate::password::new_repository(g.password_file.as_deref())?;
        (Encryption::Aes256Gcm, Some(pw))
    };
    let o = InitOptions {
        encryption,
        chunk_size: a.chunk_size,
        zstd_level: a.zstd_level,
        kdf: a.kdf.params(),
        label: String::new(),
    };
    let r = ops::init::init(b, pw.as_deref(), &o)?;
    if g.json {
        return print_json(&r);
    }
    outln!(
        "created repository {} at {} ({}, chunk size {})",
        r.id,
        r.repository,
        if r.encrypted {
            "AES-256-GCM"
        } else {
            "unencrypted"
        },
        size(r.chunk_size as u64)
    )
}

#[derive(clap::Args, Debug)]
pub struct GenerationsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only generations of this source (image or VM name).
    #[arg(long)]
    pub source: Option<String>,
}

pub fn generations(g: &Global, a: &GenerationsArgs) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let r = ops::generations::generations(
        &repo,
        &GenerationsOptions {
            source: a.source.clone(),
        },
    )?;
    if g.json {
        return print_json(&r);
    }
    outln!(
        "{:<10} {:<25} {:<20} {:>5} {:>11} {:>11} {:>11}  {:<8} flags",
        "id",
        "time",
        "source",
        "disks",
        "capacity",
        "data",
        "added",
        "parent"
    )?;
    for x in &r.generations {
        let cap: u64 = x.disks.iter().map(|d| d.capacity).sum();
        let data: u64 = x.disks.iter().map(|d| d.data_bytes).sum();
        let added: u64 = x.disks.iter().map(|d| d.new_stored_bytes).sum();
        outln!(
            "{:<10} {:<25} {:<20} {:>5} {:>11} {:>11} {:>11}  {:<8} {}",
            short(&x.id),
            x.time,
            name(&x.source),
            x.disks.len(),
            size(cap),
            size(data),
            size(added),
            x.parent.as_deref().map(short).unwrap_or("-"),
            if x.protected { "protected" } else { "" }
        )?;
    }
    for d in &r.damaged {
        outln!(
            "{:<10} DAMAGED: {} (forget it with `vmkeep forget {}`, or see `vmkeep verify`)",
            short(&d.id),
            d.problem,
            short(&d.id)
        )?;
    }
    let mut total = count(r.generations.len() as u64, "generation");
    if !r.damaged.is_empty() {
        total.push_str(&format!(", {} damaged", r.damaged.len()));
    }
    outln!("{total}")
}

/// `vmkeep stats`: the repository and its index.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub repo: IndexedRepoArgs,
}

pub fn stats(g: &Global) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let index = context::index_path(g, &repo)?;
    let s = ops::stats::stats(
        &repo,
        &StatsOptions {
            index: index.clone(),
        },
    )?;
    context::report_rebuild(g, &index, s.index_rebuilt.as_ref());
    // The figures go on without what cannot be read; say so every time.
    for u in &s.damaged_generations {
        eprintln!(
            "vmkeep: warning: generation {} cannot be read ({}): left out of these figures (its chunks count as garbage here, but gc keeps them until it is forgotten)",
            short(&u.id),
            u.reason
        );
    }
    for u in &s.damaged_objects {
        eprintln!(
            "vmkeep: warning: {} {} cannot be read ({}): the chunks it names are left out of these figures",
            u.ty,
            short(&u.id),
            u.reason
        );
    }
    if g.json {
        return print_json(&s);
    }
    outln!("generations:        {}", s.generations)?;
    if !s.damaged_generations.is_empty() {
        outln!(
            "damaged generations: {} (left out of every figure): {}",
            s.damaged_generations.len(),
            s.damaged_generations
                .iter()
                .map(|u| short(&u.id))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    outln!(
        "logical size:       {} (disk capacities)",
        size(s.logical_bytes)
    )?;
    outln!("data in generations:{:>1} {}", "", size(s.data_bytes))?;
    outln!(
        "referenced chunks:  {} ({})",
        s.chunks,
        size(s.unique_bytes)
    )?;
    outln!(
        "stored size:        {} (+ {} manifest pages)",
        size(s.stored_bytes),
        size(s.page_bytes)
    )?;
    outln!(
        "garbage:            {} ({} stored) and {} ({}) referenced by no {}",
        count(s.garbage_chunks, "chunk"),
        size(s.garbage_stored_bytes),
        count(s.garbage_pages, "manifest page"),
        size(s.garbage_page_bytes),
        if s.damaged_generations.is_empty() {
            "generation, awaiting `vmkeep gc`"
        } else {
            // gc keeps what any manifest names while a generation is unreadable.
            "readable generation (while a generation is damaged, gc keeps every chunk a manifest names)"
        }
    )?;
    if s.unindexed_chunks > 0 {
        outln!(
            "not in the index:   {} referenced chunks (left out of the sizes; `vmkeep index rebuild` adds them)",
            s.unindexed_chunks
        )?;
    }
    outln!(
        "dedup ratio:        {:.2}x (over referenced chunks)",
        s.dedup_ratio
    )?;
    outln!(
        "compression ratio:  {:.2}x (over referenced chunks)",
        s.compression_ratio
    )
}

/// `vmkeep key`: the repository and a subcommand.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(subcommand)]
    pub cmd: KeyCmd,
}

/// The new key slot of `key add` and `key change`.
#[derive(clap::Args, Debug)]
pub struct NewKeyArgs {
    /// File holding the new password (else VMKEEP_NEW_PASSWORD, else a prompt).
    #[arg(long, env = "VMKEEP_NEW_PASSWORD_FILE")]
    new_password_file: Option<std::path::PathBuf>,
    /// What the slot is for, shown by `key list` (default: user@host).
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    kdf: KdfArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a password (a new key slot).
    Add(NewKeyArgs),
    /// Change the password this command unlocks with: a new key slot for
    /// the new password, then the old slot removed.
    Change(NewKeyArgs),
    /// List key slots.
    List,
    /// Remove a key slot (not the last, not the one in use).
    Remove {
        /// Slot id as shown by `key list`, or a unique prefix of it.
        id: String,
    },
}

pub fn key(g: &Global, k: &KeyCmd) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    match k {
        KeyCmd::Add(NewKeyArgs {
            new_password_file,
            label,
            kdf,
        })
        | KeyCmd::Change(NewKeyArgs {
            new_password_file,
            label,
            kdf,
        }) => {
            let o = KeyAddOptions {
                password: crate::password::new_key(new_password_file.as_deref())?,
                kdf: kdf.params(),
                label: label.clone(),
            };
            if let KeyCmd::Change(_) = k {
                let r = ops::key::change(&repo, &o)?;
                if g.json {
                    return print_json(&r);
                }
                outln!(
                    "added key slot {} ({}), removed key slot {}",
                    r.added,
                    name(&r.label),
                    r.removed
                )?;
            } else {
                let r = ops::key::add(&repo, &o)?;
                if g.json {
                    return print_json(&r);
                }
                outln!("added key slot {} ({})", r.added, name(&r.label))?;
            }
        }
        KeyCmd::List => {
            let r = ops::key::list(&repo)?;
            if g.json {
                return print_json(&r);
            }
            for k in &r.slots {
                outln!(
                    "{} {}  {}  {}",
                    if k.current { "*" } else { " " },
                    k.id,
                    time(k.created, 0),
                    name(&k.label)
                )?;
            }
        }
        KeyCmd::Remove { id } => {
            let r = ops::key::remove(&repo, &KeyRemoveOptions { id: id.clone() })?;
            if g.json {
                return print_json(&r);
            }
            outln!("removed key slot {}", r.removed)?;
        }
    }
    Ok(())
}

/// `vmkeep index`: the repository, its index, and a subcommand.
#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    #[command(flatten)]
    pub repo: IndexedRepoArgs,
    #[command(subcommand)]
    pub cmd: IndexCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum IndexCmd {
    /// Recompute the local index from the repository's contents.
    Rebuild,
}

pub fn index(g: &Global, i: &IndexCmd) -> anyhow::Result<()> {
    let IndexCmd::Rebuild = i;
    let repo = context::open_repo(g)?;
    let index = context::index_path(g, &repo)?;
    let r = ops::index::rebuild(&repo, &RebuildOptions { index })?;
    if g.json {
        return print_json(&r);
    }
    outln!(
        "index rebuilt: {}, {}",
        count(r.chunks, "chunk"),
        count(r.pages, "manifest page")
    )?;
    for d in &r.damaged {
        outln!("damaged (left out): {d}")?;
    }
    Ok(())
}
