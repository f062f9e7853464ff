//! The protect operation: mark a generation so that `forget` keeps it
//! (`protected/<id>`, SPEC.md §13.2), or remove the mark.
//!
//! Invariant: the generation must exist and be readable when named
//! (`latest` and id prefixes resolve as everywhere else).

use serde::Serialize;

use crate::repo::Repository;
use crate::Result;

/// Which generation, and on or off.
#[derive(Clone, Debug)]
pub struct ProtectOptions {
    /// An id prefix, `latest` or `latest:NAME`.
    pub generation: String,
    /// Remove the protection instead of setting it.
    pub remove: bool,
}

/// The generation and its protection now.
#[derive(Clone, Debug, Serialize)]
pub struct ProtectReport {
    pub id: String,
    pub protected: bool,
}

/// Sets or removes the protection.
pub fn protect(repo: &Repository, o: &ProtectOptions) -> Result<ProtectReport> {
    let (id, _) = repo.resolve_generation(&o.generation)?;
    repo.set_protected(&id, !o.remove)?;
    Ok(ProtectReport {
        id: id.to_hex(),
        protected: !o.remove,
    })
}
