//! Disk targets: what the restore pipeline writes. A target is prepared for
//! a capacity, then receives data in ascending offset order and explicit
//! zero ranges, then is finished (flushed and made durable).
//!
//! [`FileTarget`] writes a raw image file (zero slots stay holes) or a block
//! device (zero slots are written as zeros). The VDDK target lives in
//! [`crate::vddk`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Something a restore can write.
pub trait DiskTarget: Send {
    /// Names the target in errors ("file /tmp/x.raw").
    fn describe(&self) -> String;
    /// Makes the target hold `capacity` bytes that read as zeros wherever
    /// nothing is written later, or fails when it cannot.
    fn prepare(&mut self, capacity: u64) -> Result<()>;
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Makes `[offset, offset + len)` read as zeros.
    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<()>;
    /// Flushes everything to stable storage.
    fn finish(&mut self) -> Result<()>;
}

/// A raw image file (created or truncated) or an existing block device.
pub struct FileTarget {
    path: PathBuf,
    file: File,
    is_device: bool,
}

impl FileTarget {
    /// Opens `path` for writing. An existing regular file is refused unless
    /// `overwrite`; a block device must already exist.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        let inv = |msg: String| Error::TargetInvalid {
            target: path.display().to_string(),
            msg,
        };
        let meta = std::fs::metadata(path).ok();
        let is_device = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        if let Some(m) = &meta {
            if !is_device && !overwrite {
                return Err(inv("already exists (use --force to overwrite it)".into()));
            }
            if !is_device && !m.is_file() {
                return Err(inv(
                    "exists and is neither a regular file nor a block device".into(),
                ));
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create(!is_device)
            .truncate(false)
            .open(path)
            .map_err(|e| inv(format!("cannot open for writing: {e}")))?;
        Ok(FileTarget {
            path: path.to_path_buf(),
            file,
            is_device,
        })
    }

    fn werr(&self, offset: u64, error: std::io::Error) -> Error {
        Error::TargetWrite {
            target: self.path.display().to_string(),
            offset,
            error,
        }
    }
}

impl DiskTarget for FileTarget {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn prepare(&mut self, capacity: u64) -> Result<()> {
        if self.is_device {
            use std::io::{Seek, SeekFrom};
            let size = (&self.file)
                .seek(SeekFrom::End(0))
                .map_err(|e| self.werr(0, e))?;
            if size < capacity {
                return Err(Error::TargetInvalid {
                    target: self.path.display().to_string(),
                    msg: format!("device holds {size} bytes, the disk needs {capacity}"),
                });
            }
            return Ok(());
        }
        // Truncating to zero and extending leaves one hole: every byte reads
        // as zero until written.
        self.file.set_len(0).map_err(|e| self.werr(0, e))?;
        self.file.set_len(capacity).map_err(|e| self.werr(0, e))
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.werr(offset, e))
    }

    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        if !self.is_device {
            return Ok(()); // a hole since prepare()
        }
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(zeros.len() as u64) as usize;
            self.write_at(pos, &zeros[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| self.werr(0, e))
    }
}
