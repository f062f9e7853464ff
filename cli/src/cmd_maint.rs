//! Maintenance commands: `verify`, `forget`, `protect`, `gc`, `unlock`.
//! Each builds the options of its engine operation ([`vmkeep_engine::ops`]),
//! calls it, and prints the report (as JSON with `--json`).

use vmkeep_engine::ops::forget::{ForgetOptions, Selection};
use vmkeep_engine::ops::gc::GcOptions;
use vmkeep_engine::ops::protect::ProtectOptions;
use vmkeep_engine::ops::unlock::UnlockOptions;
use vmkeep_engine::ops::verify::{IndexDrop, VerifyOptions};
use vmkeep_engine::ops::{self, short};
use vmkeep_engine::retention::{self, Policy};
use vmkeep_engine::verify::Subset;

use crate::output::{count, name, print_json, size, time};
use crate::{context, outln, Global, IndexedRepoArgs, RepoArg, RepoArgs};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: IndexedRepoArgs,
    /// Check only a part of the chunks: `N/M` (part N of M) or `P%` (a random share).
    #[arg(long, value_parser = Subset::parse, conflicts_with = "keyless")]
    pub read_data_subset: Option<Subset>,
    /// No password: check every stored object against its checksum (for offsite hosts).
    #[arg(long)]
    pub keyless: bool,
    /// Move damaged objects (generations, manifests, pages, chunks) aside to
    /// quarantine/, so the next backup stores their data again.
    #[arg(long, conflicts_with = "keyless")]
    pub quarantine: bool,
}

pub fn verify(g: &Global, a: &VerifyArgs) -> anyhow::Result<u8> {
    let r = if a.keyless {
        ops::verify::verify_keyless(context::backend(g)?.as_ref())?
    } else {
        let repo = context::open_repo(g)?;
        let o = VerifyOptions {
            subset: a.read_data_subset.unwrap_or(Subset::All),
            quarantine: a.quarantine,
            // No backup of this host deduplicates against damage again.
            index: context::index_path(g, &repo).ok(),
            command: context::command_line(),
        };
        ops::verify::verify(&repo, &o)?
    };
    if g.json {
        print_json(&r)?;
    } else {
        for v in &r.generations {
            let src = if v.source.is_empty() {
                "source unknown".to_string()
            } else {
                name(&v.source)
            };
            if v.damaged_objects.is_empty() {
                outln!("generation {} ({src}): {}", short(&v.id), v.status)?;
            } else {
                outln!(
                    "generation {} ({src}): DAMAGED, {}: {}",
                    short(&v.id),
                    count(v.damaged_objects.len() as u64, "bad object"),
                    v.damaged_objects.join(", ")
                )?;
            }
        }
        for d in &r.damage {
            outln!("damaged: {}: {}", d.path, d.problem)?;
        }
        for q in &r.quarantined {
            outln!("quarantined: {q}")?;
        }
        match r.index {
            Some(IndexDrop::Dropped(n)) if n > 0 => outln!(
                "dropped {} from the local index: the next backup stores that data again",
                count(n as u64, "damaged object")
            )?,
            Some(IndexDrop::Noted(n)) => outln!(
                "the local index is in use: {} will be dropped from it when it is next opened",
                count(n as u64, "damaged object")
            )?,
            _ => {}
        }
        let scope = if r.keyless {
            String::new()
        } else if !r.subset {
            format!(" of {} referenced", r.chunks_referenced)
        } else {
            format!(
                " of {} referenced (a subset: the others were not read)",
                r.chunks_referenced
            )
        };
        outln!(
            "checked {} ({}){scope}; {}",
            count(r.chunks_checked, "chunk"),
            size(r.bytes_checked),
            if r.clean {
                "no damage found".to_string()
            } else {
                count(r.damage.len() as u64, "damaged object")
            }
        )?;
    }
    Ok(if r.clean {
        crate::exit::OK
    } else {
        crate::exit::DAMAGED
    })
}

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .multiple(true)
        .args(["generations", "all", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
               "keep_monthly", "keep_yearly", "keep_within"])
))]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Generations to forget (id prefixes, also of damaged ones, `latest`, `latest:NAME`).
    #[arg(conflicts_with_all = ["all", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
          "keep_monthly", "keep_yearly", "keep_within", "source"])]
    pub generations: Vec<String>,
    /// Forget every generation of the lineage given with --source (protected ones stay).
    #[arg(long, requires = "source", conflicts_with_all = ["keep_last", "keep_hourly",
          "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"])]
    pub all: bool,
    /// Keep the newest N generations.
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Keep the newest generation of each of the last N clock hours that have one.
    #[arg(long)]
    pub keep_hourly: Option<usize>,
    /// Keep the newest generation of each of the last N days that have one.
    #[arg(long)]
    pub keep_daily: Option<usize>,
    /// Keep the newest generation of each of the last N ISO 8601 weeks that have one.
    #[arg(long)]
    pub keep_weekly: Option<usize>,
    /// Keep the newest generation of each of the last N months that have one.
    #[arg(long)]
    pub keep_monthly: Option<usize>,
    /// Keep the newest generation of each of the last N years that have one.
    #[arg(long)]
    pub keep_yearly: Option<usize>,
    /// Keep everything newer than this (e.g. 30d, 12h, 1y6m).
    #[arg(long, value_parser = retention::parse_duration)]
    pub keep_within: Option<i64>,
    /// Only this source (lineage); default: every source, each on its own.
    #[arg(long)]
    pub source: Option<String>,
    /// Periods in this UTC offset, in hours (default: this host's local offset).
    #[arg(long, allow_hyphen_values = true)]
    pub utc_offset_hours: Option<f64>,
    /// Print what would be kept and removed, and why; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn forget(g: &Global, a: &ForgetArgs) -> anyhow::Result<()> {
    let selection = if !a.generations.is_empty() {
        Selection::Named(a.generations.clone())
    } else if a.all {
        Selection::Lineage(a.source.clone().expect("clap requires --source with --all"))
    } else {
        let n = |v: Option<usize>| v.unwrap_or(0);
        Selection::Rules {
            policy: Policy {
                within_secs: a.keep_within,
                last: n(a.keep_last),
                hourly: n(a.keep_hourly),
                daily: n(a.keep_daily),
                weekly: n(a.keep_weekly),
                monthly: n(a.keep_monthly),
                yearly: n(a.keep_yearly),
            },
            source: a.source.clone(),
        }
    };
    let off_secs = match a.utc_offset_hours {
        Some(h) => (h * 3600.0).round() as i32,
        None => context::utc_offset(),
    };
    let repo = context::open_repo(g)?;
    let r = vmkeep_engine::ops::forget::forget(
        &repo,
        &ForgetOptions {
            selection,
            dry_run: a.dry_run,
            utc_offset: off_secs,
            command: context::command_line(),
        },
    )?;
    if g.json {
        return print_json(&r);
    }
    for row in &r.generations {
        let verb = match (row.keep, a.dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        outln!(
            "{verb} {} {} {:<20} {}",
            short(&row.id),
            row.time
                .map(|t| time(t, off_secs))
                .unwrap_or_else(|| "(unreadable)".into()),
            row.source
                .as_deref()
                .map(name)
                .unwrap_or_else(|| "?".into()),
            row.reason
        )?;
    }
    if !a.dry_run && r.removed > 0 {
        outln!(
            "forgot {}; their data stays until `vmkeep gc` removes what nothing references \
             (objects younger than gc's safety margin wait for a later gc)",
            count(r.removed, "generation")
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ProtectArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Generation to protect (id prefix, `latest`, `latest:NAME`).
    pub generation: String,
    /// Remove the protection instead.
    #[arg(long)]
    pub remove: bool,
}

pub fn protect(g: &Global, a: &ProtectArgs) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let o = ProtectOptions {
        generation: a.generation.clone(),
        remove: a.remove,
    };
    let r = ops::protect::protect(&repo, &o)?;
    if g.json {
        return print_json(&r);
    }
    outln!(
        "generation {} is {}",
        short(&r.id),
        if r.protected {
            "protected"
        } else {
            "no longer protected"
        }
    )
}

/// `vmkeep gc`: the repository and its index.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub repo: IndexedRepoArgs,
}

pub fn gc(g: &Global) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let index = context::index_path(g, &repo)?;
    let o = GcOptions {
        index: Some(index.clone()),
        command: context::command_line(),
    };
    let r = ops::gc::gc(&repo, &o)?;
    context::report_rebuild(g, &index, r.index_rebuilt.as_ref());
    // Damage does not stop gc, but what it keeps must not go unnoticed.
    for u in &r.unreadable {
        eprintln!("vmkeep: warning: {}", u.message);
    }
    if g.json {
        return print_json(&r);
    }
    outln!(
        "{} reference {}; moved {} ({}) to the trash; deleted {} ({} freed); put back {}",
        count(r.generations, "generation"),
        count(r.referenced_chunks, "chunk"),
        count(r.trashed, "unreferenced object"),
        size(r.trashed_bytes),
        r.deleted,
        size(r.freed_bytes),
        r.restored
    )?;
    if let Some(m) = &r.kept_recent_message {
        outln!("{m}")?;
    }
    if !r.pending_batches.is_empty() {
        outln!(
            "{} for running backups to finish; the next gc empties them",
            match r.pending_batches.len() {
                1 => "1 trash batch waits".to_string(),
                n => format!("{n} trash batches wait"),
            }
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Remove every lock, also live ones (only when you know their holders are gone).
    #[arg(long)]
    pub all: bool,
}

pub fn unlock(g: &Global, a: &UnlockArgs) -> anyhow::Result<()> {
    let b = context::backend(g)?;
    if a.all {
        eprintln!(
            "vmkeep: warning: removing every lock; a running backup or gc loses its protection"
        );
    }
    let r = ops::unlock::unlock(b.as_ref(), &UnlockOptions { all: a.all })?;
    if g.json {
        return print_json(&r);
    }
    for d in &r.removed {
        outln!("removed {d}")?;
    }
    let n = r.live.len();
    if n > 0 {
        // Live locks stay: say which, so nobody thinks `unlock` failed.
        let (lock, remain) = if n == 1 {
            ("lock", "remains")
        } else {
            ("locks", "remain")
        };
        let none = if r.removed.is_empty() {
            "no stale locks; "
        } else {
            ""
        };
        outln!("{none}{n} live {lock} {remain}:")?;
        for d in &r.live {
            outln!("  {d}")?;
        }
    } else if r.removed.is_empty() {
        outln!("no stale locks")?;
    }
    Ok(())
}
