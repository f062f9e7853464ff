//! Where secrets come from. Each secret is read one way, by one function
//! here, trying in order: a file named by an option (or its `..._FILE`
//! variable), a variable holding the secret itself, a prompt when standard
//! input is a terminal.
//!
//! - the repository password: `--password-file`, `VMKEEP_PASSWORD`;
//! - a new repository password (`key add`, `key change`):
//!   `--new-password-file`, `VMKEEP_NEW_PASSWORD`;
//! - the vCenter password: `--vc-password-file`, `VMKEEP_VC_PASSWORD`.
//!
//! Invariants: a trailing newline in a file is not part of the secret; an
//! empty secret is never used; a secret that is needed and not found is
//! [`PasswordMissing`] (exit code 3, README "Exit codes").

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};

/// No usable password was given: the file named cannot be read or is
/// empty, or none was configured and no terminal can be asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordMissing(pub String);

/// Where one secret may come from.
struct Secret<'a> {
    /// What it is, for the prompt and messages.
    what: &'a str,
    file: Option<&'a Path>,
    /// The variable holding the secret itself.
    var: &'a str,
    /// Ask twice on the terminal (a new password).
    confirm: bool,
}

impl Secret<'_> {
    /// The secret, or `None` when no source has one.
    fn read(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(f) = self.file {
            return from_file(f).map(Some);
        }
        if let Some(p) = std::env::var_os(self.var).filter(|p| !p.is_empty()) {
            return Ok(Some(p.into_encoded_bytes()));
        }
        prompt(self.what, self.confirm)
    }
}

/// Reads a password file, dropping one trailing newline.
pub fn from_file(p: &Path) -> anyhow::Result<Vec<u8>> {
    let mut b = std::fs::read(p)
        .map_err(|e| PasswordMissing(format!("cannot read password file {}: {e}", p.display())))?;
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    if b.is_empty() {
        return Err(PasswordMissing(format!("password file {} is empty", p.display())).into());
    }
    Ok(b)
}

/// The repository password, or `None` when none is configured and no
/// terminal can be asked (an unencrypted repository needs none).
pub fn repository(file: Option<&Path>, confirm: bool) -> anyhow::Result<Option<Vec<u8>>> {
    Secret {
        what: "repository password",
        file,
        var: "VMKEEP_PASSWORD",
        confirm,
    }
    .read()
}

/// The repository password for a new repository.
pub fn new_repository(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    repository(file, true)?.ok_or_else(|| {
        PasswordMissing(
            "a password is needed to encrypt the repository: use --password-file, VMKEEP_PASSWORD, or a terminal"
                .into(),
        )
        .into()
    })
}

/// A new password for a key slot.
pub fn new_key(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    Secret {
        what: "new password",
        file,
        var: "VMKEEP_NEW_PASSWORD",
        confirm: true,
    }
    .read()?
    .ok_or_else(|| {
        PasswordMissing(
            "no new password: use --new-password-file, VMKEEP_NEW_PASSWORD or a terminal".into(),
        )
        .into()
    })
}

/// The vSphere password of `user`, for every command that logs in to
/// vCenter/ESXi (`vcenter`, `vm`, a VDDK disk on a server).
pub fn vcenter(file: Option<&Path>, user: &str) -> anyhow::Result<String> {
    let pw = Secret {
        what: &format!("vSphere password for {user}"),
        file,
        var: "VMKEEP_VC_PASSWORD",
        confirm: false,
    }
    .read()?
    .ok_or_else(|| {
        PasswordMissing(format!(
            "no vSphere password for {user}: use --vc-password-file, VMKEEP_VC_PASSWORD or a terminal"
        ))
    })?;
    String::from_utf8(pw).map_err(|_| {
        PasswordMissing(format!("the vSphere password for {user} is not UTF-8")).into()
    })
}

/// Asks on the terminal; `None` without one.
fn prompt(what: &str, confirm: bool) -> anyhow::Result<Option<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let p = rpassword::prompt_password(format!("{what}: ")).context("cannot read the password")?;
    if p.is_empty() {
        return Err(PasswordMissing(format!("empty {what}")).into());
    }
    if confirm {
        let again = rpassword::prompt_password(format!("{what} again: "))
            .context("cannot read the password")?;
        if again != p {
            bail!("the two passwords differ");
        }
    }
    Ok(Some(p.into_bytes()))
}
