//! Choosing a backup's parent (SPEC.md §12): the one named, else the
//! lineage's newest readable generation when a disk has a changed-areas
//! list; refused while a damaged generation could be newer.
//!
//! Invariant: the index remembers the lineage of every generation it has
//! seen (`generation-source/<id>`), so a generation that later becomes
//! unreadable is still known to belong, or not, to a lineage.

use vmkeep_format::generation::{DiskRef, Generation};
use vmkeep_format::ObjectId;

use super::BackupOptions;
use crate::index::Index;
use crate::repo::{GenerationList, Repository};
use crate::{Error, Result};

/// Index meta key remembering the source of a generation: the lineage of
/// a generation that later becomes unreadable stays known (an id is the
/// keyed hash of the generation's bytes, so this can never be stale).
pub(super) fn source_key(id: &ObjectId) -> String {
    format!("generation-source/{}", id.to_hex())
}

fn remember_sources(index: &dyn Index, list: &GenerationList) -> Result<()> {
    for (id, g) in &list.readable {
        let k = source_key(id);
        if index.meta_get(&k)?.is_none() {
            index.meta_put(&k, g.source.as_bytes())?;
        }
    }
    Ok(())
}

/// The chosen parent.
pub(super) struct Chosen {
    pub id: ObjectId,
    pub rule: &'static str,
    pub warnings: Vec<String>,
}

/// Chooses the parent: the one named, else the lineage's newest when a
/// disk has a changed-areas list (`changed`), else none.
pub(super) fn choose_parent(
    repo: &Repository,
    index: &dyn Index,
    o: &BackupOptions,
    changed: bool,
    allocated: bool,
) -> Result<Option<Chosen>> {
    let spec = match &o.parent {
        Some(_) if allocated => {
            return Err(Error::Invalid(
                "an allocated-areas backup is a full backup: it takes no parent".into(),
            ))
        }
        Some(s) => s.clone(),
        None if changed => "latest".to_string(),
        None => return Ok(None),
    };
    let mut warnings = Vec::new();
    if spec != "latest" {
        let (id, g) = repo.resolve_generation(&spec).map_err(|e| Error::Parent {
            parent: spec.clone(),
            msg: e.to_string(),
        })?;
        if g.source != o.lineage {
            warnings.push(format!(
                "parent generation {} is of lineage {:?}, not {:?}: it was named explicitly, so it is used",
                id.short(),
                g.source,
                o.lineage
            ));
        }
        return Ok(Some(Chosen {
            id,
            rule: "named",
            warnings,
        }));
    }
    let list = repo.list_generations()?;
    remember_sources(index, &list)?;
    let Some((id, g)) = list.latest(Some(&o.lineage)) else {
        if changed {
            return Err(Error::Parent {
                parent: "latest".into(),
                msg: format!(
                    "lineage {:?} has no readable generation to take the unchanged slots from{}; \
                     for a first backup from an allocated-areas list use --allocated-areas, \
                     or back up without --changed-areas to read the whole disk",
                    o.lineage,
                    damaged_note(&list)
                ),
            });
        }
        warnings.push(format!(
            "lineage {:?} has no readable generation yet: this is a full backup",
            o.lineage
        ));
        return Ok(None);
    };
    // A damaged generation that could be this lineage's newest: the list
    // of changed areas may be relative to it.
    let suspects: Vec<String> = list
        .damaged_since(g.started)
        .into_iter()
        .filter_map(|d| {
            let known = index.meta_get(&source_key(&d.id)).ok().flatten();
            match known {
                Some(src) if src != o.lineage.as_bytes() => None,
                _ => Some(format!("{} ({})", d.id.short(), d.problem)),
            }
        })
        .collect();
    if !suspects.is_empty() {
        let msg = format!(
            "generation {} cannot be read and may be newer than {} in lineage {:?}",
            suspects.join(", "),
            id.short(),
            o.lineage
        );
        if changed {
            return Err(Error::Parent {
                parent: "latest".into(),
                msg: format!(
                    "{msg}: the changed areas may be relative to it, so they cannot be applied to {}. \
                     Name the parent the list is relative to with --parent ID, or back up without \
                     --changed-areas to read the whole disk (`vmkeep forget ID` removes a damaged generation)",
                    id.short()
                ),
            });
        }
        warnings.push(format!("{msg}; this backup reads the whole disk"));
    }
    Ok(Some(Chosen {
        id: *id,
        rule: "latest of the lineage",
        warnings,
    }))
}

fn damaged_note(list: &GenerationList) -> String {
    if list.damaged.is_empty() {
        String::new()
    } else {
        format!(
            " ({} generation(s) cannot be read: {})",
            list.damaged.len(),
            list.damaged
                .iter()
                .map(|d| d.id.short())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Finds the disk of `g` that continues disk `disk`: the disk of that
/// name (never another one: its data would become this disk's).
pub(super) fn parent_disk<'a>(
    g: &'a Generation,
    pid: &ObjectId,
    disk: &str,
) -> Result<&'a DiskRef> {
    crate::repo::disk_of(g, pid, disk).map_err(|e| match e {
        Error::NoSuchDisk { disk, has, .. } => Error::Parent {
            parent: pid.short(),
            msg: format!("it has no disk named {disk:?} (it has: {has})"),
        },
        e => e,
    })
}
