//! The init operation: a new repository at an empty location (SPEC.md §3).
//!
//! Invariants: an encrypted repository is never created without a
//! password; a location that holds anything is refused
//! ([`Repository::init`]).

use std::sync::Arc;

use serde::Serialize;
use vmkeep_format::config::Encryption;

use crate::backend::Backend;
use crate::repo::Repository;
use crate::{Error, Result};

pub use crate::repo::InitOptions;

/// What init created.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    /// Where it is.
    pub repository: String,
    /// The repository id (hex).
    pub id: String,
    pub encrypted: bool,
    pub chunk_size: u32,
}

/// Creates a repository on `backend`; `password` is needed exactly when
/// `o.encryption` is not `None`. An empty label becomes `user@host`.
pub fn init(
    backend: Arc<dyn Backend>,
    password: Option<&[u8]>,
    o: &InitOptions,
) -> Result<InitReport> {
    let encrypted = !matches!(o.encryption, Encryption::None);
    if encrypted && password.is_none() {
        return Err(Error::PasswordRequired(backend.location()));
    }
    let mut o = o.clone();
    if o.label.is_empty() {
        o.label = super::default_label();
    }
    let repo = Repository::init(backend, password.filter(|_| encrypted), &o)?;
    Ok(InitReport {
        repository: repo.location(),
        id: repo.config().id_hex(),
        encrypted,
        chunk_size: repo.config().chunk_size,
    })
}
