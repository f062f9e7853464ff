//! Repository-level commands: `init`, `generations`, `stats`, `key`, `index`.

use anyhow::bail;
use serde_json::json;
use vmkeep_engine::repo::{InitOptions, Repository};
use vmkeep_format::config::Encryption;
use vmkeep_format::keyfile::KdfParams;

use crate::output::{count, name, size, time};
use crate::{context, outln, Global};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
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

fn label() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    format!("{user}@{}", vmkeep_engine::host::hostname())
}

pub fn init(g: &Global, a: &InitArgs) -> anyhow::Result<()> {
    let b = context::backend(g)?;
    let enc = if a.no_encryption {
        Encryption::None
    } else {
        Encryption::Aes256Gcm
    };
    let pw = if a.no_encryption {
        None
    } else {
        match crate::password::repository(g.password_file.as_deref(), true)? {
            Some(p) => Some(p),
            None => bail!(
                "a password is needed to encrypt the repository: use --password-file, VMKEEP_PASSWORD, or a terminal"
            ),
        }
    };
    let o = InitOptions {
        encryption: enc,
        chunk_size: a.chunk_size,
        zstd_level: a.zstd_level,
        kdf: a.kdf.params(),
        label: label(),
    };
    let repo = Repository::init(b, pw.as_deref(), &o)?;
    if g.json {
        outln!(
            "{}",
            json!({"repository": repo.location(), "id": repo.config().id_hex(),
                   "encrypted": !a.no_encryption, "chunk_size": a.chunk_size})
        )?;
    } else {
        outln!(
            "created repository {} at {} ({}, chunk size {})",
            repo.config().id_hex(),
            repo.location(),
            if a.no_encryption {
                "unencrypted"
            } else {
                "AES-256-GCM"
            },
            size(a.chunk_size as u64)
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct GenerationsArgs {
    /// Only generations of this source (image or VM name).
    #[arg(long)]
    pub source: Option<String>,
}

pub fn generations(g: &Global, a: &GenerationsArgs) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let list = repo.list_generations()?;
    let protected = repo.protected_ids()?;
    let gens: Vec<_> = list
        .readable
        .iter()
        .filter(|(_, x)| a.source.as_ref().is_none_or(|s| &x.source == s))
        .collect();
    // A damaged generation's source is unknown: it is listed either way.
    let damaged = &list.damaged;
    if g.json {
        let mut v: Vec<_> = gens
            .iter()
            .map(|(id, x)| {
                json!({
                    "id": id.to_hex(), "source": x.source, "host": x.hostname,
                    "started": x.started, "finished": x.finished,
                    "time": time(x.started, x.utc_offset),
                    "parent": x.parent.map(|p| p.to_hex()),
                    "protected": protected.contains(id),
                    "damaged": false,
                    "disks": x.disks.iter().map(|d| json!({
                        "name": d.name, "manifest": d.manifest.to_hex(), "capacity": d.capacity,
                        "chunk_size": d.chunk_size, "data_bytes": d.data_bytes,
                        "new_stored_bytes": d.new_stored_bytes})).collect::<Vec<_>>(),
                })
            })
            .collect();
        v.extend(damaged.iter().map(|d| {
            json!({"id": d.id.to_hex(), "damaged": true, "problem": d.problem,
                   "protected": protected.contains(&d.id), "modified": d.modified})
        }));
        return outln!("{}", serde_json::Value::Array(v));
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
    for (id, x) in &gens {
        let cap: u64 = x.disks.iter().map(|d| d.capacity).sum();
        let data: u64 = x.disks.iter().map(|d| d.data_bytes).sum();
        let added: u64 = x.disks.iter().map(|d| d.new_stored_bytes).sum();
        outln!(
            "{:<10} {:<25} {:<20} {:>5} {:>11} {:>11} {:>11}  {:<8} {}",
            id.short(),
            time(x.started, x.utc_offset),
            name(&x.source),
            x.disks.len(),
            size(cap),
            size(data),
            size(added),
            x.parent.map(|p| p.short()).unwrap_or_else(|| "-".into()),
            if protected.contains(id) {
                "protected"
            } else {
                ""
            }
        )?;
    }
    for d in damaged {
        outln!(
            "{:<10} DAMAGED: {} (forget it with `vmkeep forget {}`, or see `vmkeep verify`)",
            d.id.short(),
            d.problem,
            d.id.short()
        )?;
    }
    let mut total = count(gens.len() as u64, "generation");
    if !damaged.is_empty() {
        total.push_str(&format!(", {} damaged", damaged.len()));
    }
    outln!("{total}")
}

pub fn stats(g: &Global) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let idx = context::open_index(g, &repo)?;
    let s = vmkeep_engine::stats::repo_stats(&repo, &idx)?;
    // The figures go on without what cannot be read; say so every time.
    for u in &s.damaged_generations {
        eprintln!(
            "vmkeep: warning: generation {} cannot be read ({}): left out of these figures (its chunks count as garbage here, but gc keeps them until it is forgotten)",
            u.id.short(),
            u.reason
        );
    }
    for u in &s.damaged_objects {
        eprintln!(
            "vmkeep: warning: {} {} cannot be read ({}): the chunks it names are left out of these figures",
            u.ty.name(),
            u.id.short(),
            u.reason
        );
    }
    let unreadable = |l: &[vmkeep_engine::gc::Unreadable]| {
        l.iter()
            .map(|u| json!({"type": u.ty.name(), "id": u.id.to_hex(), "reason": u.reason}))
            .collect::<Vec<_>>()
    };
    if g.json {
        outln!(
            "{}",
            json!({
                "generations": s.generations, "logical_bytes": s.logical_bytes,
                "data_bytes": s.data_bytes, "chunks": s.chunks, "unique_bytes": s.unique_bytes,
                "stored_bytes": s.stored_bytes, "page_bytes": s.page_bytes,
                "garbage_chunks": s.garbage_chunks, "garbage_stored_bytes": s.garbage_stored_bytes,
                "garbage_pages": s.garbage_pages, "garbage_page_bytes": s.garbage_page_bytes,
                "unindexed_chunks": s.unindexed_chunks,
                "dedup_ratio": s.dedup_ratio, "compression_ratio": s.compression_ratio,
                "damaged_generation_count": s.damaged_generations.len(),
                "damaged_generations": unreadable(&s.damaged_generations),
                "damaged_objects": unreadable(&s.damaged_objects),
            })
        )?;
    } else {
        outln!("generations:        {}", s.generations)?;
        if !s.damaged_generations.is_empty() {
            outln!(
                "damaged generations: {} (left out of every figure): {}",
                s.damaged_generations.len(),
                s.damaged_generations
                    .iter()
                    .map(|u| u.id.short())
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
        )?;
    }
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a password (a new key slot).
    Add {
        /// File holding the new password (else VMKEEP_NEW_PASSWORD, else a prompt).
        #[arg(long, env = "VMKEEP_NEW_PASSWORD_FILE")]
        new_password_file: Option<std::path::PathBuf>,
        /// What the slot is for, shown by `key list` (default: user@host).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
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
        KeyCmd::Add {
            new_password_file,
            label: slot_label,
            kdf,
        } => {
            let pw = match new_password_file {
                Some(f) => crate::password::from_file(f)?,
                None => match std::env::var("VMKEEP_NEW_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty())
                {
                    Some(p) => p.into_bytes(),
                    None => crate::password::prompt("new password", true)?.ok_or_else(|| {
                        crate::password::PasswordMissing(
                            "no new password: use --new-password-file, VMKEEP_NEW_PASSWORD or a terminal"
                                .into(),
                        )
                    })?,
                },
            };
            let l = match slot_label {
                Some(l) => {
                    vmkeep_engine::ops::backup::check_name("key slot label", l)?;
                    l.clone()
                }
                None => label(),
            };
            let id = repo.key_add(&pw, kdf.params(), l.clone())?;
            if g.json {
                outln!("{}", json!({"added": id, "label": l}))?;
            } else {
                outln!("added key slot {id} ({})", name(&l))?;
            }
        }
        KeyCmd::List => {
            let l = repo.key_list()?;
            if g.json {
                let v: Vec<_> = l
                    .iter()
                    .map(|(id, label, created, cur)| json!({"id": id, "label": label, "created": created, "current": cur}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v))?;
            } else {
                for (id, label, created, cur) in l {
                    outln!(
                        "{} {id}  {}  {}",
                        if cur { "*" } else { " " },
                        time(created, 0),
                        name(&label)
                    )?;
                }
            }
        }
        KeyCmd::Remove { id } => {
            let full = repo.key_remove(id)?;
            if g.json {
                outln!("{}", json!({"removed": full}))?;
            } else {
                outln!("removed key slot {full}")?;
            }
        }
    }
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum IndexCmd {
    /// Recompute the local index from the repository's contents.
    Rebuild,
}

pub fn index(g: &Global, i: &IndexCmd) -> anyhow::Result<()> {
    let IndexCmd::Rebuild = i;
    let repo = context::open_repo(g)?;
    let p = context::index_path(g, &repo)?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A directory damaged beyond opening is moved aside (SPEC.md §10).
    let idx = vmkeep_engine::index::open_at(&p, &std::sync::atomic::AtomicBool::new(false))?;
    let r = vmkeep_engine::index::rebuild(&repo, &idx)?;
    if g.json {
        outln!(
            "{}",
            json!({"chunks": r.chunks, "pages": r.pages, "damaged": r.damaged})
        )?;
    } else {
        outln!(
            "index rebuilt: {}, {}",
            count(r.chunks, "chunk"),
            count(r.pages, "manifest page")
        )?;
        for d in &r.damaged {
            outln!("damaged (left out): {d}")?;
        }
    }
    Ok(())
}
