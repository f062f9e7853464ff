//! Disk targets: what the restore pipeline writes. A target is prepared for
//! a capacity, then receives data in ascending offset order and explicit
//! zero ranges, then is finished (flushed and made durable).
//!
//! [`FileTarget`] writes a raw image file (zero slots stay holes) or a block
//! device (zero slots are written as zeros). Writes whose offset, length
//! and buffer are [`ALIGN`]-aligned (every full chunk the restore pipeline
//! hands it) go through a second descriptor opened with `O_DIRECT`: no copy
//! into the page cache, no dirty pages for the final flush to wait for, and
//! no disk image crowding the cache. Other writes (a short last chunk,
//! zeros on a device), and every write where the file system refuses
//! direct I/O, are buffered; every [`WRITEBACK_STEP`] buffered bytes it asks
//! the kernel to start writing them back. The two descriptors never write
//! the same range of one restore; `finish` fsyncs. The VDDK target lives in
//! [`crate::vddk`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::buf::ALIGN;
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
    /// The same file opened with `O_DIRECT`, once `prepare` managed to.
    direct: Option<File>,
    /// Start of the range written since the last writeback request.
    unflushed_from: u64,
}

/// Bytes written between two requests to start writeback.
pub const WRITEBACK_STEP: u64 = 32 << 20;

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
            direct: None,
            unflushed_from: 0,
        })
    }

    /// Opens the `O_DIRECT` descriptor; without it every write is buffered.
    fn open_direct(&mut self) {
        if std::env::var_os("VMKEEP_NO_DIRECT_IO").is_some() {
            return;
        }
        self.direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&self.path)
            .map_err(|e| log::debug!("{}: no direct I/O ({e})", self.describe()))
            .ok();
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
            self.open_direct();
            return Ok(());
        }
        // Truncating to zero and extending leaves one hole: every byte reads
        // as zero until written.
        self.file.set_len(0).map_err(|e| self.werr(0, e))?;
        self.file.set_len(capacity).map_err(|e| self.werr(0, e))?;
        self.open_direct();
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let aligned = offset.is_multiple_of(ALIGN as u64)
            && data.len().is_multiple_of(ALIGN)
            && (data.as_ptr() as usize).is_multiple_of(ALIGN);
        if let (true, Some(d)) = (aligned, &self.direct) {
            match d.write_all_at(data, offset) {
                Ok(()) => return Ok(()),
                // EINVAL: this file system wants another alignment or no
                // direct I/O at all; stay buffered from here on.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    log::debug!(
                        "{}: direct I/O refused ({e}); writing buffered",
                        self.describe()
                    );
                    self.direct = None;
                }
                Err(e) => return Err(self.werr(offset, e)),
            }
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| self.werr(offset, e))?;
        let end = offset + data.len() as u64;
        if offset < self.unflushed_from {
            self.unflushed_from = offset; // not in ascending order: start over
        }
        if end - self.unflushed_from >= WRITEBACK_STEP {
            // POSIX_FADV_DONTNEED starts asynchronous writeback of the dirty
            // range and drops pages already clean; it never discards data,
            // and finish() still fsyncs. Advice only: failure is harmless.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.unflushed_from,
                end - self.unflushed_from,
                rustix::fs::Advice::DontNeed,
            );
            self.unflushed_from = end;
        }
        Ok(())
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
