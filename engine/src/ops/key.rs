//! Key management: the key slots (passwords) that open an encrypted
//! repository (SPEC.md §5): add, list, remove, and change a password.
//!
//! Invariants: a repository always keeps at least one readable slot; the
//! slot a command unlocked with is never removed by that command (a
//! password change removes it only after the new slot has opened the
//! repository); a slot is named by a unique prefix of its id.

use serde::Serialize;
use vmkeep_format::keyfile::KdfParams;

use crate::repo::Repository;
use crate::{Error, Result};

/// A new password.
#[derive(Clone)]
pub struct KeyAddOptions {
    pub password: Vec<u8>,
    /// Argon2id costs of the new slot.
    pub kdf: KdfParams,
    /// What the slot is for; `None`: `user@host`.
    pub label: Option<String>,
}

impl std::fmt::Debug for KeyAddOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAddOptions")
            .field("kdf", &self.kdf)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The slot added.
#[derive(Clone, Debug, Serialize)]
pub struct KeyAddReport {
    pub added: String,
    pub label: String,
}

/// One key slot.
#[derive(Clone, Debug, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub label: String,
    /// Unix seconds.
    pub created: i64,
    /// The slot this repository was unlocked with.
    pub current: bool,
}

/// The key slots; serializes as an array.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct KeyListReport {
    pub slots: Vec<KeyRow>,
}

/// The slot to remove.
#[derive(Clone, Debug)]
pub struct KeyRemoveOptions {
    /// Its id or a unique prefix of it.
    pub id: String,
}

/// The slot removed (its full id).
#[derive(Clone, Debug, Serialize)]
pub struct KeyRemoveReport {
    pub removed: String,
}

/// A password change: the new slot added, the one unlocked with removed.
#[derive(Clone, Debug, Serialize)]
pub struct KeyChangeReport {
    pub added: String,
    pub label: String,
    pub removed: String,
}

fn label_of(label: &Option<String>) -> Result<String> {
    match label {
        Some(l) => {
            super::backup::check_name("key slot label", l)?;
            Ok(l.clone())
        }
        None => Ok(super::default_label()),
    }
}

/// Adds a key slot for a new password.
pub fn add(repo: &Repository, o: &KeyAddOptions) -> Result<KeyAddReport> {
    let label = label_of(&o.label)?;
    let added = repo.key_add(&o.password, o.kdf, label.clone())?;
    Ok(KeyAddReport { added, label })
}

/// Lists the key slots.
pub fn list(repo: &Repository) -> Result<KeyListReport> {
    Ok(KeyListReport {
        slots: repo
            .key_list()?
            .into_iter()
            .map(|(id, label, created, current)| KeyRow {
                id,
                label,
                created,
                current,
            })
            .collect(),
    })
}

/// The one slot `prefix` names, checked to be removable by this command.
fn removable(repo: &Repository, prefix: &str) -> Result<String> {
    let slots = list(repo)?.slots;
    let p = prefix.to_ascii_lowercase();
    let matches: Vec<&KeyRow> = slots
        .iter()
        .filter(|s| !p.is_empty() && s.id.starts_with(&p))
        .collect();
    let join = |v: &mut dyn Iterator<Item = &KeyRow>| {
        v.map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
    };
    let one = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::KeySlotNotFound {
                prefix: prefix.to_string(),
                repo: repo.location(),
                slots: join(&mut slots.iter()),
            })
        }
        many => {
            return Err(Error::KeySlotAmbiguous {
                prefix: prefix.to_string(),
                matches: join(&mut many.iter().copied()),
            })
        }
    };
    if slots.len() == 1 {
        return Err(Error::LastKeySlot(one.id.clone()));
    }
    if one.current {
        return Err(Error::KeySlotInUse(one.id.clone()));
    }
    Ok(one.id.clone())
}

/// Removes a key slot: not the last, not the one unlocked with.
pub fn remove(repo: &Repository, o: &KeyRemoveOptions) -> Result<KeyRemoveReport> {
    let id = removable(repo, &o.id)?;
    Ok(KeyRemoveReport {
        removed: repo.key_remove(&id)?,
    })
}

/// Changes the password this repository was unlocked with: adds a slot
/// for the new one, opens the repository with it (so it is known to
/// work), then removes the old slot.
pub fn change(repo: &Repository, o: &KeyAddOptions) -> Result<KeyChangeReport> {
    let old = list(repo)?
        .slots
        .into_iter()
        .find(|s| s.current)
        .ok_or_else(|| Error::NotEncrypted(repo.location()))?;
    let added = add(repo, o)?;
    let reopened = Repository::open(repo.backend().clone(), Some(&o.password))?;
    let now = list(&reopened)?.slots.into_iter().find(|s| s.current);
    if now.is_none_or(|s| s.id != added.added) {
        // The new password also opens the old slot: it is the same one.
        repo.key_remove(&added.added)?;
        return Err(Error::KeySlot {
            slot: old.id,
            msg: "the new password is the same as the old one: nothing changed".into(),
        });
    }
    let removed = remove(&reopened, &KeyRemoveOptions { id: old.id })?.removed;
    Ok(KeyChangeReport {
        added: added.added,
        label: added.label,
        removed,
    })
}
