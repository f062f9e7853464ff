//! Maintenance commands: `verify`, `forget`, `protect`.

use anyhow::bail;
use serde_json::json;
use vmkeep_engine::retention::{self, Item, Policy, Verdict};
use vmkeep_engine::verify::{self, Subset};

use crate::output::{size, time};
use crate::{context, Global};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Check only a part of the chunks: `N/M` (part N of M) or `P%` (a random share).
    #[arg(long, value_parser = Subset::parse)]
    pub read_data_subset: Option<Subset>,
    /// No password: check every stored object against its checksum (for offsite hosts).
    #[arg(long)]
    pub keyless: bool,
    /// Move damaged chunks aside (quarantine/) so the next backup stores them again.
    #[arg(long)]
    pub quarantine: bool,
}

/// Exit code when verify finds damage.
pub const DAMAGED: u8 = 5;

pub fn verify(g: &Global, a: &VerifyArgs) -> anyhow::Result<u8> {
    let report = if a.keyless {
        let b = context::backend(g)?;
        vmkeep_engine::repo::Repository::read_config(b.as_ref())?;
        verify::verify_keyless(b.as_ref())?
    } else {
        let repo = context::open_repo(g)?;
        let _lock = context::lock(&repo, vmkeep_engine::lock::Mode::Shared, None)?;
        let idx = if a.quarantine {
            Some(context::open_index(g, &repo)?)
        } else {
            None
        };
        let ix = idx.as_ref().map(|i| i as &dyn vmkeep_engine::index::Index);
        verify::verify(
            &repo,
            ix,
            a.read_data_subset.unwrap_or(Subset::All),
            a.quarantine,
        )?
    };
    if g.json {
        println!(
            "{}",
            json!({
                "clean": report.clean(),
                "chunks_referenced": report.chunks_referenced,
                "chunks_checked": report.chunks_checked,
                "bytes_checked": report.bytes_checked,
                "damage": report.damage.iter().map(|d| json!({"path": d.path, "problem": d.problem})).collect::<Vec<_>>(),
                "quarantined": report.quarantined,
                "generations": report.generations.iter().map(|v| json!({
                    "id": v.id.to_hex(), "source": v.source, "intact": v.damaged.is_empty(), "damaged_objects": v.damaged,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        for v in &report.generations {
            if v.damaged.is_empty() {
                println!("generation {} ({}): intact", v.id.short(), v.source);
            } else {
                println!(
                    "generation {} ({}): DAMAGED, {} bad objects: {}",
                    v.id.short(),
                    v.source,
                    v.damaged.len(),
                    v.damaged.join(", ")
                );
            }
        }
        for d in &report.damage {
            println!("damaged: {}: {}", d.path, d.problem);
        }
        for q in &report.quarantined {
            println!("quarantined: {q}");
        }
        println!(
            "checked {} chunks ({}){}; {}",
            report.chunks_checked,
            size(report.bytes_checked),
            if a.keyless {
                String::new()
            } else {
                format!(" of {} referenced", report.chunks_referenced)
            },
            if report.clean() {
                "no damage found".to_string()
            } else {
                format!("{} damaged objects", report.damage.len())
            }
        );
    }
    Ok(if report.clean() { 0 } else { DAMAGED })
}

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Keep the newest N generations.
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    /// ISO 8601 weeks.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: usize,
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
    let p = Policy {
        within_secs: a.keep_within,
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
    };
    if p.is_empty() {
        bail!("no --keep-* option given: refusing to forget every generation");
    }
    let off_secs = match a.utc_offset_hours {
        Some(h) => (h * 3600.0).round() as i32,
        None => context::utc_offset(),
    };
    let offset = time::UtcOffset::from_whole_seconds(off_secs)
        .map_err(|_| anyhow::anyhow!("UTC offset {off_secs} s is out of range"))?;
    let repo = context::open_repo(g)?;
    let _lock = context::lock(&repo, vmkeep_engine::lock::Mode::Shared, None)?;
    // Parents of running backups stay: those backups read entries from them.
    let in_use: std::collections::HashSet<_> =
        vmkeep_engine::lock::live_others(repo.backend().as_ref(), Some(&_lock.name()))?
            .into_iter()
            .filter_map(|l| l.parent)
            .collect();
    let gens = repo.generations()?;
    type Row = (vmkeep_format::ObjectId, i64, u128, i64);
    let mut by_source: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for (id, gen) in &gens {
        if a.source.as_ref().is_none_or(|s| s == &gen.source) {
            by_source.entry(gen.source.clone()).or_default().push((
                *id,
                gen.started,
                vmkeep_engine::repo::committed_ns(gen),
                gen.finished,
            ));
        }
    }
    let now = vmkeep_engine::repo::Repository::now();
    let mut out = Vec::new();
    for (source, list) in by_source {
        let mut items = Vec::new();
        for (id, t, ns, fin) in &list {
            items.push(Item {
                key: id.to_hex(),
                time: *t,
                committed_ns: *ns,
                finished: *fin,
                protected: repo.is_protected(id)? || in_use.contains(id),
            });
        }
        let v = retention::decide(&items, &p, now, offset);
        let mut rows: Vec<_> = list
            .iter()
            .map(|(id, t, _, _)| (*t, *id, v[&id.to_hex()].clone()))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (t, id, verdict) in rows {
            let (keep, why) = match &verdict {
                Verdict::Keep(w) => (true, w.clone()),
                Verdict::Remove(w) => (false, w.clone()),
            };
            if !keep && !a.dry_run {
                repo.forget_generation(&id)?;
            }
            if !g.json {
                println!(
                    "{} {} {} {:<20} {}",
                    if keep {
                        "keep  "
                    } else if a.dry_run {
                        "would remove"
                    } else {
                        "remove"
                    },
                    id.short(),
                    time(t, off_secs),
                    source,
                    why
                );
            }
            out.push(json!({"id": id.to_hex(), "source": source, "time": t, "keep": keep, "reason": why}));
        }
    }
    if g.json {
        println!("{}", json!({"dry_run": a.dry_run, "generations": out}));
    } else if !a.dry_run {
        println!("forgotten generations keep their data until `vmkeep gc` removes what nothing references (run it twice, or once with no backup running, to free the space)");
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
        println!("{}", json!({"id": id.to_hex(), "protected": !a.remove}));
    } else {
        println!(
            "generation {} is {}",
            id.short(),
            if a.remove {
                "no longer protected"
            } else {
                "protected"
            }
        );
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
        println!(
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
        );
    } else {
        println!(
            "{} generations reference {} chunks; moved {} unreferenced objects ({}) to the trash; deleted {} ({} freed); put back {}",
            r.generations, r.referenced_chunks, r.trashed, size(r.trashed_bytes), r.deleted, size(r.deleted_bytes), r.restored
        );
        if let Some(m) = &recent {
            println!("{m}");
        }
        if !r.pending_batches.is_empty() {
            println!(
                "{} trash batches wait for running backups to finish; the next gc empties them",
                r.pending_batches.len()
            );
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
    let removed = vmkeep_engine::lock::unlock(b.as_ref(), a.all)?;
    for l in &removed {
        if !g.json {
            println!("removed {}", l.describe());
        }
    }
    if g.json {
        println!(
            "{}",
            json!({"removed": removed.iter().map(|l| l.describe()).collect::<Vec<_>>()})
        );
    } else if removed.is_empty() {
        println!("no stale locks");
    }
    Ok(())
}
