//! Where passwords come from: a file (`--password-file`,
//! `VMKEEP_PASSWORD_FILE`), the `VMKEEP_PASSWORD` variable, or a prompt
//! when standard input is a terminal. A trailing newline in a file is not
//! part of the password.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};

/// No usable password was given: the file named cannot be read or is
/// empty (exit code 3, README "Exit codes").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordMissing(pub String);

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
/// terminal can be asked.
pub fn repository(file: Option<&Path>, confirm: bool) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(f) = file {
        return from_file(f).map(Some);
    }
    if let Ok(p) = std::env::var("VMKEEP_PASSWORD") {
        if !p.is_empty() {
            return Ok(Some(p.into_bytes()));
        }
    }
    prompt("repository password", confirm)
}

/// Asks on the terminal; `None` without one.
pub fn prompt(what: &str, confirm: bool) -> anyhow::Result<Option<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let p = rpassword::prompt_password(format!("{what}: ")).context("cannot read the password")?;
    if p.is_empty() {
        bail!("empty {what}");
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
