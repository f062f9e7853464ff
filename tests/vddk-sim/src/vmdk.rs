//! VMDK descriptor files: the text file a disk is named by, whose extent
//! line names the flat data file and gives the capacity, and whose `ddb.*`
//! lines hold the disk's metadata.
//!
//! Invariants: only one FLAT/VMFS extent is supported (monolithicFlat or an
//! ESXi-style flat disk); sparse (binary "KDMV") disks are refused. A
//! descriptor without an extent line (as some simulators leave them) falls
//! back to `<stem>-flat.vmdk` beside it, with the capacity of that file.
//! Metadata keys are given and returned without the `ddb.` prefix.

use std::path::{Path, PathBuf};

use crate::abi::*;

/// A parsed descriptor.
pub struct Descriptor {
    pub path: PathBuf,
    lines: Vec<String>,
    extent: Option<(u64, String)>,
}

impl Descriptor {
    /// Reads and parses `path`; errors are VIX codes.
    pub fn load(path: &Path) -> Result<Descriptor, VixError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VIX_E_FILE_NOT_FOUND,
            std::io::ErrorKind::PermissionDenied => VIX_E_FILE_ACCESS_ERROR,
            _ => VIX_E_FILE_ERROR,
        })?;
        if bytes.starts_with(b"KDMV") || bytes.len() > 1 << 20 {
            return Err(VIX_E_DISK_NOTSUPPORTED);
        }
        let text = String::from_utf8(bytes).map_err(|_| VIX_E_DISK_NOTSUPPORTED)?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut extents = Vec::new();
        for l in &lines {
            let t = l.trim();
            if !(t.starts_with("RW ") || t.starts_with("RDONLY ")) {
                continue;
            }
            let mut words = t.split_whitespace();
            let _access = words.next();
            let sectors: u64 = words
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or(VIX_E_DISK_INVAL)?;
            let kind = words.next().unwrap_or("");
            if kind != "FLAT" && kind != "VMFS" {
                return Err(VIX_E_DISK_NOTSUPPORTED);
            }
            let (a, b) = (t.find('"'), t.rfind('"'));
            let file = match (a, b) {
                (Some(a), Some(b)) if b > a => t[a + 1..b].to_string(),
                _ => return Err(VIX_E_DISK_INVAL),
            };
            extents.push((sectors, file));
        }
        if extents.len() > 1 {
            return Err(VIX_E_DISK_NOTSUPPORTED);
        }
        Ok(Descriptor {
            path: path.to_path_buf(),
            lines,
            extent: extents.pop(),
        })
    }

    /// File name of the flat data file (relative to the descriptor's dir).
    pub fn flat_name(&self) -> String {
        match &self.extent {
            Some((_, f)) => f.clone(),
            None => {
                let stem = self
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{stem}-flat.vmdk")
            }
        }
    }

    /// Capacity in sectors: the extent's, else the flat file's size.
    pub fn capacity(&self, flat_len: u64) -> u64 {
        self.extent
            .as_ref()
            .map_or(flat_len / SECTOR_SIZE, |(s, _)| *s)
    }

    /// `(key, value)` of every `ddb.key = "value"` line, prefix removed.
    pub fn metadata(&self) -> Vec<(String, String)> {
        self.lines.iter().filter_map(|l| parse_ddb(l)).collect()
    }

    /// The value of metadata `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.metadata()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Sets metadata `key` and rewrites the descriptor file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), VixError> {
        if key.is_empty() || key.contains(['"', '\n', '=', ' ']) || value.contains(['"', '\n']) {
            return Err(VIX_E_INVALID_ARG);
        }
        let line = format!("ddb.{key} = \"{value}\"");
        match self
            .lines
            .iter()
            .position(|l| parse_ddb(l).is_some_and(|(k, _)| k == key))
        {
            Some(i) => self.lines[i] = line,
            None => self.lines.push(line),
        }
        let mut text = self.lines.join("\n");
        text.push('\n');
        std::fs::write(&self.path, text).map_err(|_| VIX_E_FILE_ERROR)
    }
}

fn parse_ddb(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("ddb.")?;
    let (k, v) = rest.split_once('=')?;
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Some((k.trim().to_string(), v.to_string()))
}
