//! The forget operation: remove generations by retention rules (SPEC.md
//! §13.2), by name, or a whole lineage. Only generation documents go;
//! their data goes at the next garbage collection.
//!
//! Invariants: protected generations and the parents of running backups
//! (named by their live locks) are never removed; a generation that cannot
//! be read has no known lineage, so rules keep it and only naming it by id
//! removes it; every generation named must exist before anything is
//! removed, so a typo removes nothing.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use vmkeep_format::ObjectId;

use crate::lock::{self, Lock, Mode};
use crate::repo::{committed_ns, Repository};
use crate::retention::{self, Item, Policy, Verdict};
use crate::{Error, Result};

/// Which generations to consider.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Retention rules, for every source or only `source`.
    Rules {
        policy: Policy,
        source: Option<String>,
    },
    /// These generations (id prefixes, `latest`, `latest:NAME`).
    Named(Vec<String>),
    /// Every generation of this lineage.
    Lineage(String),
}

/// What to forget and how.
#[derive(Clone, Debug)]
pub struct ForgetOptions {
    pub selection: Selection,
    /// Decide and report, remove nothing.
    pub dry_run: bool,
    /// UTC offset of the periods, seconds.
    pub utc_offset: i32,
    /// The command line, for the lock file.
    pub command: String,
}

/// The verdict on one generation.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetRow {
    pub id: String,
    /// `None` when the generation cannot be read.
    pub source: Option<String>,
    /// Start time, Unix seconds (`None` when it cannot be read).
    pub time: Option<i64>,
    pub keep: bool,
    pub reason: String,
}

/// What forget did (or would do, with `dry_run`).
#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    /// Newest first within each source.
    pub generations: Vec<ForgetRow>,
    pub removed: u64,
}

/// Why a generation is kept whatever the selection says.
const PROTECTED: &str = "protected";
const IN_USE: &str = "parent of a running backup";

fn row(id: &ObjectId, src: Option<&str>, t: Option<i64>, keep: bool, why: &str) -> ForgetRow {
    ForgetRow {
        id: id.to_hex(),
        source: src.map(str::to_string),
        time: t,
        keep,
        reason: why.to_string(),
    }
}

/// Runs forget.
pub fn forget(repo: &Repository, o: &ForgetOptions) -> Result<ForgetReport> {
    if let Selection::Rules { policy, .. } = &o.selection {
        if policy.is_empty() {
            return Err(Error::Invalid(
                "no keep rule given: refusing to forget every generation".into(),
            ));
        }
    }
    let offset = time::UtcOffset::from_whole_seconds(o.utc_offset)
        .map_err(|_| Error::Invalid(format!("UTC offset {} s is out of range", o.utc_offset)))?;
    let own = Lock::acquire(repo.backend().clone(), Mode::Shared, &o.command, None)?;
    // Parents of running backups stay: those backups read entries from them.
    let in_use: HashSet<ObjectId> = lock::live_others(repo.backend().as_ref(), Some(&own.name()))?
        .into_iter()
        .filter_map(|l| l.parent)
        .collect();
    let list = repo.list_generations()?;
    let mut rows: Vec<ForgetRow> = Vec::new();
    let mut remove: Vec<ObjectId> = Vec::new();
    let guard = |id: &ObjectId| -> Result<Option<&'static str>> {
        Ok(if repo.is_protected(id)? {
            Some(PROTECTED)
        } else if in_use.contains(id) {
            Some(IN_USE)
        } else {
            None
        })
    };
    match &o.selection {
        Selection::Rules { policy, source } => {
            if let Some(s) = source {
                if list.latest(Some(s)).is_none() {
                    return Err(Error::GenerationNotFound(format!(
                        "of source {s:?}: there is none (sources: {})",
                        list.sources().join(", ")
                    )));
                }
            }
            let mut by_source: BTreeMap<
                &str,
                Vec<&(ObjectId, vmkeep_format::generation::Generation)>,
            > = BTreeMap::new();
            for e in &list.readable {
                if source.as_ref().is_none_or(|s| s == &e.1.source) {
                    by_source.entry(&e.1.source).or_default().push(e);
                }
            }
            let now = Repository::now();
            for (src, gens) in by_source {
                let mut items = Vec::new();
                for (id, g) in &gens {
                    items.push(Item {
                        key: id.to_hex(),
                        time: g.started,
                        committed_ns: committed_ns(g),
                        finished: g.finished,
                        protected: guard(id)?.is_some(),
                    });
                }
                let v = retention::decide(&items, policy, now, offset);
                for (id, g) in gens.iter().rev() {
                    let (keep, why) = match &v[&id.to_hex()] {
                        Verdict::Keep(w) => (true, w.clone()),
                        Verdict::Remove(w) => (false, w.clone()),
                    };
                    let why = match (keep, guard(id)?) {
                        (true, Some(g)) if why == PROTECTED => g.to_string(),
                        _ => why,
                    };
                    if !keep {
                        remove.push(*id);
                    }
                    rows.push(row(id, Some(src), Some(g.started), keep, &why));
                }
            }
            if source.is_none() {
                for d in &list.damaged {
                    rows.push(row(
                        &d.id,
                        None,
                        None,
                        true,
                        &format!(
                            "cannot be read ({}): no rule applies to it; forget it by id",
                            d.problem
                        ),
                    ));
                }
            }
        }
        Selection::Named(specs) => {
            let mut seen = HashSet::new();
            for spec in specs {
                let id = if spec == "latest" || spec.starts_with("latest:") {
                    list.resolve_latest(spec)?.0
                } else {
                    repo.resolve_id(spec)?
                };
                if !seen.insert(id) {
                    continue;
                }
                if let Some(why) = guard(&id)? {
                    return Err(if why == PROTECTED {
                        Error::GenerationProtected(id.short())
                    } else {
                        Error::GenerationInUse(id.short())
                    });
                }
                let g = list.readable.iter().find(|(i, _)| *i == id).map(|(_, g)| g);
                let why = if g.is_some() {
                    "named"
                } else {
                    "named (it cannot be read)"
                };
                rows.push(row(
                    &id,
                    g.map(|g| g.source.as_str()),
                    g.map(|g| g.started),
                    false,
                    why,
                ));
                remove.push(id);
            }
        }
        Selection::Lineage(src) => {
            let gens: Vec<_> = list
                .readable
                .iter()
                .filter(|(_, g)| &g.source == src)
                .collect();
            if gens.is_empty() {
                return Err(Error::GenerationNotFound(format!(
                    "of source {src:?}: there is none (sources: {})",
                    list.sources().join(", ")
                )));
            }
            for (id, g) in gens.into_iter().rev() {
                match guard(id)? {
                    Some(why) => rows.push(row(id, Some(src), Some(g.started), true, why)),
                    None => {
                        rows.push(row(id, Some(src), Some(g.started), false, "whole lineage"));
                        remove.push(*id);
                    }
                }
            }
        }
    }
    let mut removed = 0;
    if !o.dry_run {
        for id in &remove {
            // Only under a lock still held (its `in_use` list is then valid).
            own.check()?;
            repo.forget_generation(id)?;
            removed += 1;
        }
    }
    Ok(ForgetReport {
        dry_run: o.dry_run,
        generations: rows,
        removed,
    })
}
