//! Maintenance commands: `verify`, `forget`, `protect`, `gc`, `unlock`.

use serde_json::json;
use vmkeep_engine::index::Dropped;
use vmkeep_engine::ops::forget::{ForgetOptions, Selection};
use vmkeep_engine::retention::{self, Policy};
use vmkeep_engine::verify::{self, Subset};

use crate::output::{count, name, size, time};
use crate::{context, outln, Global};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Check only a part of the chunks: `N/M` (part N of M) or `P%` (a random share).
    #[arg(long, value_parser = Subset::parse)]
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
    let subset = a.read_data_subset.unwrap_or(Subset::All);
    let mut dropped = None;
    let report = if a.keyless {
        let b = context::backend(g)?;
        vmkeep_engine::repo::Repository::read_config(b.as_ref())?;
        verify::verify_keyless(b.as_ref())?
    } else {
        let repo = context::open_repo(g)?;
        let _lock = context::lock(&repo, vmkeep_engine::lock::Mode::Shared, None)?;
        let r = verify::verify(&repo, None, subset, a.quarantine)?;
        if !r.bad.is_empty() {
            // No backup of this host deduplicates against them again.
            let p = context::index_path(g, &repo)?;
            dropped = Some(vmkeep_engine::index::drop_damaged(&p, &r.bad)?);
        }
        r
    };
    if g.json {
        outln!(
            "{}",
            json!({
                "clean": report.clean(),
                "subset": a.read_data_subset.is_some(),
                "chunks_referenced": report.chunks_referenced,
                "chunks_checked": report.chunks_checked,
                "bytes_checked": report.bytes_checked,
                "damage": report.damage.iter().map(|d| json!({"path": d.path, "problem": d.problem})).collect::<Vec<_>>(),
                "quarantined": report.quarantined,
                "generations": report.generations.iter().map(|v| json!({
                    "id": v.id.to_hex(), "source": v.source,
                    "status": v.status(subset),
                    "intact": v.damaged.is_empty() && subset == Subset::All,
                    "damaged_objects": v.damaged,
                })).collect::<Vec<_>>(),
            })
        )?;
    } else {
        for v in &report.generations {
            let src = if v.source.is_empty() {
                "source unknown".to_string()
            } else {
                name(&v.source)
            };
            if v.damaged.is_empty() {
                outln!("generation {} ({src}): {}", v.id.short(), v.status(subset))?;
            } else {
                outln!(
                    "generation {} ({src}): DAMAGED, {}: {}",
                    v.id.short(),
                    count(v.damaged.len() as u64, "bad object"),
                    v.damaged.join(", ")
                )?;
            }
        }
        for d in &report.damage {
            outln!("damaged: {}: {}", d.path, d.problem)?;
        }
        for q in &report.quarantined {
            outln!("quarantined: {q}")?;
        }
        match dropped {
            Some(Dropped::Now(n)) if n > 0 => outln!(
                "dropped {} from the local index: the next backup stores that data again",
                count(n as u64, "damaged object")
            )?,
            Some(Dropped::Noted(n)) => outln!(
                "the local index is in use: {} will be dropped from it when it is next opened",
                count(n as u64, "damaged object")
            )?,
            _ => {}
        }
        let scope = if a.keyless {
            String::new()
        } else if subset == Subset::All {
            format!(" of {} referenced", report.chunks_referenced)
        } else {
            format!(
                " of {} referenced (a subset: the others were not read)",
                report.chunks_referenced
            )
        };
        outln!(
            "checked {} ({}){scope}; {}",
            count(report.chunks_checked, "chunk"),
            size(report.bytes_checked),
            if report.clean() {
                "no damage found".to_string()
            } else {
                count(report.damage.len() as u64, "damaged object")
            }
        )?;
    }
    Ok(if report.clean() {
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
        return outln!("{}", serde_json::to_value(&r)?);
    }
    for row in &r.generations {
        let verb = match (row.keep, a.dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        outln!(
            "{verb} {} {} {:<20} {}",
            &row.id[..8],
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
    /// Generation to protect (id prefix, `latest`, `latest:NAME`).
    pub generation: String,
    /// Remove the protection instead.
    #[arg(long)]
    pub remove: bool,
}

pub fn protect(g: &Global, a: &ProtectArgs) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let (id, _) = repo.resolve_generation(&a.generation)?;
    repo.set_protected(&id, !a.remove)?;
    if g.json {
        outln!("{}", json!({"id": id.to_hex(), "protected": !a.remove}))?;
    } else {
        outln!(
            "generation {} is {}",
            id.short(),
            if a.remove {
                "no longer protected"
            } else {
                "protected"
            }
        )?;
    }
    Ok(())
}

pub fn gc(g: &Global) -> anyhow::Result<()> {
    let repo = context::open_repo(g)?;
    let lock = context::lock(&repo, vmkeep_engine::lock::Mode::Gc, None)?;
    let idx = context::open_index(g, &repo)?;
    let r = vmkeep_engine::gc::gc(&repo, Some(&idx), &lock.name())?;
    // Damage does not stop gc, but what it keeps must not go unnoticed.
    for u in &r.unreadable {
        eprintln!("vmkeep: warning: {u}");
    }
    let recent = (r.kept_recent > 0).then(|| {
        format!(
            "{} unreferenced objects ({}) are newer than the cut-off {} ({}) and stay until a later gc",
            r.kept_recent,
            size(r.kept_recent_bytes),
            time(r.cutoff, 0),
            r.cutoff_reason()
        )
    });
    if g.json {
        outln!(
            "{}",
            json!({"generations": r.generations, "referenced_chunks": r.referenced_chunks,
                   "trashed": r.trashed, "trashed_bytes": r.trashed_bytes, "deleted": r.deleted,
                   "freed_bytes": r.deleted_bytes, "restored": r.restored, "pending_batches": r.pending_batches,
                   "unreadable": r.unreadable.iter().map(|u| json!({
                       "type": u.ty.name(), "id": u.id.to_hex(), "reason": u.reason, "message": u.to_string(),
                   })).collect::<Vec<_>>(),
                   "kept_recent": r.kept_recent, "kept_recent_bytes": r.kept_recent_bytes,
                   "cutoff": r.cutoff, "cutoff_time": time(r.cutoff, 0), "clock_margin": r.margin,
                   "cutoff_reason": r.cutoff_reason(),
                   "cutoff_lock": r.cutoff_lock.as_ref().map(|l| l.describe()),
                   "kept_recent_message": recent})
        )?;
    } else {
        outln!(
            "{} reference {}; moved {} ({}) to the trash; deleted {} ({} freed); put back {}",
            count(r.generations, "generation"),
            count(r.referenced_chunks, "chunk"),
            count(r.trashed, "unreferenced object"),
            size(r.trashed_bytes),
            r.deleted,
            size(r.deleted_bytes),
            r.restored
        )?;
        if let Some(m) = &recent {
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
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, also live ones (only when you know their holders are gone).
    #[arg(long)]
    pub all: bool,
}

pub fn unlock(g: &Global, a: &UnlockArgs) -> anyhow::Result<()> {
    let b = context::backend(g)?;
    vmkeep_engine::repo::Repository::read_config(b.as_ref())?;
    if a.all {
        eprintln!(
            "vmkeep: warning: removing every lock; a running backup or gc loses its protection"
        );
    }
    let done = vmkeep_engine::lock::unlock(b.as_ref(), a.all)?;
    let describe = |ls: &[vmkeep_engine::lock::LockInfo]| -> Vec<String> {
        ls.iter().map(|l| l.describe()).collect()
    };
    if g.json {
        outln!(
            "{}",
            json!({"removed": describe(&done.removed), "live": describe(&done.live)})
        )?;
        return Ok(());
    }
    for d in describe(&done.removed) {
        outln!("removed {d}")?;
    }
    let n = done.live.len();
    if n > 0 {
        // Live locks stay: say which, so nobody thinks `unlock` failed.
        let (lock, remain) = if n == 1 {
            ("lock", "remains")
        } else {
            ("locks", "remain")
        };
        let none = if done.removed.is_empty() {
            "no stale locks; "
        } else {
            ""
        };
        outln!("{none}{n} live {lock} {remain}:")?;
        for d in describe(&done.live) {
            outln!("  {d}")?;
        }
    } else if done.removed.is_empty() {
        outln!("no stale locks")?;
    }
    Ok(())
}
