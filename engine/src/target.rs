//! Disk targets: what the restore pipeline writes. A target is prepared for
//! a capacity, then receives data in ascending offset order and explicit
//! zero ranges, then is finished (flushed and made durable).
//!
//! [`FileTarget`] writes a raw image file (zero slots stay holes) or a block
//! device (zero slots are written as zeros). A file is written as a fresh
//! sibling `<TARGET>.vmkeep-partial` ([`PARTIAL_SUFFIX`]) that `finish`
//! fsyncs, renames over TARGET and makes durable with a directory fsync:
//! until then TARGET is absent or keeps its old content, and a target
//! dropped unfinished removes its partial file. A device cannot be swapped
//! like that: once writing started, a failed restore leaves it partial, and
//! [`DiskTarget::failure_note`] says so.
//!
//! Writes whose offset, length and buffer are [`ALIGN`]-aligned (every full
//! chunk the restore pipeline hands it) go through a second descriptor
//! opened with `O_DIRECT`: no copy into the page cache, no dirty pages for
//! the final flush to wait for, and no disk image crowding the cache. Other
//! writes (a short last chunk, zeros on a device), and every write where
//! the file system refuses direct I/O, are buffered; every
//! [`WRITEBACK_STEP`] buffered bytes it asks the kernel to start writing
//! them back. The two descriptors never write the same range of one
//! restore; `finish` fsyncs. The VDDK target lives in [`crate::vddk`].

use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
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
    /// What a restore that failed before `finish` succeeded left in the
    /// target, for the error message ("file /tmp/x.raw was not created").
    /// The default cannot tell, so it assumes the worst.
    fn failure_note(&self) -> String {
        format!("the content of {} may now be partial", self.describe())
    }
}

/// Appended to a file target's name for the file written until `finish`.
pub const PARTIAL_SUFFIX: &str = ".vmkeep-partial";

/// A raw image file (replaced on success) or an existing block device.
pub struct FileTarget {
    /// The path the restore was asked to write.
    path: PathBuf,
    kind: Kind,
    /// The file written: the device, or the partial file.
    file: File,
    /// The same file opened with `O_DIRECT`, once `prepare` managed to.
    direct: Option<File>,
    /// Start of the range written since the last writeback request.
    unflushed_from: u64,
}

enum Kind {
    /// A block device, written in place; `written` once a write was tried.
    Device { written: bool },
    /// A regular file: written as `partial`, renamed over `dest` (`path`,
    /// or the file a symlink at `path` names) by `finish`.
    File {
        dest: PathBuf,
        partial: PathBuf,
        /// The mode of the file replaced (`--force`), given to the new one.
        replaces: Option<Permissions>,
        renamed: bool,
    },
}

/// Bytes written between two requests to start writeback.
pub const WRITEBACK_STEP: u64 = 32 << 20;

impl FileTarget {
    /// Opens `path` for writing: a block device in place, a regular file
    /// (new, or existing when `overwrite`) by creating its partial file.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        let inv = |msg: String| Error::TargetInvalid {
            target: path.display().to_string(),
            msg,
        };
        // Follows symlinks: /dev/disk/by-id/... name block devices that way.
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(inv(format!("cannot stat: {e}"))),
        };
        if meta.is_none() && std::fs::symlink_metadata(path).is_ok() {
            return Err(inv("is a symbolic link to nothing".into()));
        }
        let (dest, replaces) = match &meta {
            Some(m) if m.file_type().is_block_device() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| inv(format!("cannot open for writing: {e}")))?;
                return Ok(FileTarget {
                    path: path.to_path_buf(),
                    kind: Kind::Device { written: false },
                    file,
                    direct: None,
                    unflushed_from: 0,
                });
            }
            Some(_) if !overwrite => {
                return Err(inv("already exists (use --force to overwrite it)".into()))
            }
            Some(m) if !m.is_file() => {
                return Err(inv(
                    "exists and is neither a regular file nor a block device".into(),
                ))
            }
            // A symlink stays; the file it names is replaced.
            Some(m) => (
                std::fs::canonicalize(path).map_err(|e| inv(format!("cannot resolve: {e}")))?,
                Some(m.permissions()),
            ),
            None => (path.to_path_buf(), None),
        };
        let partial = partial_path(&dest);
        // A partial file of a killed restore is replaced; create_new never
        // follows a symlink planted there.
        match std::fs::remove_file(&partial) {
            Ok(()) => log::info!("removed {} of an earlier restore", partial.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(inv(format!("cannot remove {}: {e}", partial.display()))),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => inv(format!(
                    "its directory {} does not exist",
                    parent_dir(&dest).display()
                )),
                _ => inv(format!("cannot create {}: {e}", partial.display())),
            })?;
        Ok(FileTarget {
            path: path.to_path_buf(),
            kind: Kind::File {
                dest,
                partial,
                replaces,
                renamed: false,
            },
            file,
            direct: None,
            unflushed_from: 0,
        })
    }

    /// The file the writes go to.
    fn written_path(&self) -> &Path {
        match &self.kind {
            Kind::Device { .. } => &self.path,
            Kind::File { partial, .. } => partial,
        }
    }

    /// Notes that writing started (a device is no longer what it was).
    fn touch(&mut self) {
        if let Kind::Device { written } = &mut self.kind {
            *written = true;
        }
    }

    /// Opens the `O_DIRECT` descriptor; without it every write is buffered.
    fn open_direct(&mut self) {
        if std::env::var_os("VMKEEP_NO_DIRECT_IO").is_some() {
            return;
        }
        self.direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(self.written_path())
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
        match self.kind {
            Kind::Device { .. } => format!("device {}", self.path.display()),
            Kind::File { .. } => format!("file {}", self.path.display()),
        }
    }

    fn prepare(&mut self, capacity: u64) -> Result<()> {
        if let Kind::Device { .. } = self.kind {
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
        // Extending the fresh (empty) partial file leaves one hole: every
        // byte reads as zero until written.
        self.file.set_len(capacity).map_err(|e| self.werr(0, e))?;
        self.open_direct();
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.touch();
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
        if let Kind::File { .. } = self.kind {
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
        self.file.sync_all().map_err(|e| self.werr(0, e))?;
        let inv = |msg: String| Error::TargetInvalid {
            target: self.path.display().to_string(),
            msg,
        };
        let Kind::File {
            dest,
            partial,
            replaces,
            renamed,
        } = &mut self.kind
        else {
            return Ok(());
        };
        if let Some(mode) = replaces {
            self.file
                .set_permissions(mode.clone())
                .map_err(|e| inv(format!("cannot set the mode of {}: {e}", partial.display())))?;
        }
        rename(partial, dest, replaces.is_none()).map_err(|e| {
            inv(format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                dest.display()
            ))
        })?;
        *renamed = true;
        let dir = parent_dir(dest);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| inv(format!("cannot sync its directory {}: {e}", dir.display())))
    }

    fn failure_note(&self) -> String {
        let what = self.describe();
        match &self.kind {
            Kind::Device { written: false } => format!("{what} was not written"),
            Kind::Device { written: true } => format!(
                "the content of {what} is now partial, neither its old content nor the generation's"
            ),
            Kind::File { renamed: true, .. } => {
                format!("{what} holds the restored disk but may not survive a crash")
            }
            Kind::File {
                replaces: Some(_), ..
            } => format!("{what} was not changed"),
            Kind::File { replaces: None, .. } => format!("{what} was not created"),
        }
    }
}

impl Drop for FileTarget {
    /// An unfinished file restore leaves nothing behind.
    fn drop(&mut self) {
        if let Kind::File {
            partial,
            renamed: false,
            ..
        } = &self.kind
        {
            match std::fs::remove_file(partial) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", partial.display()),
            }
        }
    }
}

/// `<dest>.vmkeep-partial`.
fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    dest.with_file_name(name)
}

/// The directory holding `path` ("." for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames `from` over `to`; with `no_replace`, fails when `to` appeared
/// meanwhile (unless the file system cannot tell: then it is replaced).
fn rename(from: &Path, to: &Path, no_replace: bool) -> std::io::Result<()> {
    if no_replace {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(std::io::Error::other(
                    "it was created by something else during the restore, and is left alone",
                ))
            }
            r => return r.map_err(Into::into),
        }
    }
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Names of the entries in `dir`, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Prepares `t` for 3 blocks and writes two of them (the middle one a hole).
    fn write_some(t: &mut FileTarget) {
        t.prepare(3 * ALIGN as u64).unwrap();
        t.write_at(0, &[7u8; ALIGN]).unwrap();
        t.write_zeros(ALIGN as u64, ALIGN as u64).unwrap();
        t.write_at(2 * ALIGN as u64, &[9u8; 100]).unwrap();
    }

    fn expected() -> Vec<u8> {
        let mut v = vec![7u8; ALIGN];
        v.extend(vec![0u8; ALIGN]);
        v.extend(vec![9u8; 100]);
        v.extend(vec![0u8; ALIGN - 100]);
        v
    }

    #[test]
    fn a_new_file_appears_only_when_finished() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("x.raw");
        let mut t = FileTarget::create(&to, false).unwrap();
        write_some(&mut t);
        assert!(!to.exists(), "the target exists before finish");
        assert_eq!(entries(d.path()), ["x.raw.vmkeep-partial"]);
        t.finish().unwrap();
        assert_eq!(entries(d.path()), ["x.raw"]);
        assert_eq!(std::fs::read(&to).unwrap(), expected());
        drop(t);
        assert_eq!(
            entries(d.path()),
            ["x.raw"],
            "drop after finish removed something"
        );
    }

    #[test]
    fn an_unfinished_target_leaves_nothing_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("x.raw");
        let mut t = FileTarget::create(&to, false).unwrap();
        write_some(&mut t);
        assert_eq!(
            t.failure_note(),
            format!("file {} was not created", to.display())
        );
        drop(t);
        assert!(entries(d.path()).is_empty(), "{:?}", entries(d.path()));
    }

    #[test]
    fn an_existing_file_keeps_its_content_and_mode_until_replaced() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("x.raw");
        std::fs::write(&to, b"old content").unwrap();
        std::fs::set_permissions(&to, Permissions::from_mode(0o640)).unwrap();
        let mut t = FileTarget::create(&to, true).unwrap();
        write_some(&mut t);
        assert_eq!(
            t.failure_note(),
            format!("file {} was not changed", to.display())
        );
        drop(t);
        assert_eq!(std::fs::read(&to).unwrap(), b"old content");
        assert_eq!(entries(d.path()), ["x.raw"]);

        let mut t = FileTarget::create(&to, true).unwrap();
        write_some(&mut t);
        assert_eq!(std::fs::read(&to).unwrap(), b"old content");
        t.finish().unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), expected());
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(entries(d.path()), ["x.raw"]);
    }

    #[test]
    fn a_stale_partial_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("x.raw");
        let stale = d.path().join("x.raw.vmkeep-partial");
        std::fs::write(&stale, vec![0xAAu8; 5 * ALIGN]).unwrap();
        let mut t = FileTarget::create(&to, false).unwrap();
        write_some(&mut t);
        t.finish().unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), expected());
        assert_eq!(entries(d.path()), ["x.raw"]);
    }

    #[test]
    fn a_symlinked_file_is_replaced_and_the_link_kept() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        let file = d.path().join("real/x.raw");
        std::fs::write(&file, b"old").unwrap();
        let link = d.path().join("link.raw");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let mut t = FileTarget::create(&link, true).unwrap();
        write_some(&mut t);
        t.finish().unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&file).unwrap(), expected());
        assert_eq!(entries(&d.path().join("real")), ["x.raw"]);
    }

    #[test]
    fn bad_targets_are_refused_without_leaving_anything() {
        let d = tempfile::tempdir().unwrap();
        let err = |p: &Path, force: bool| match FileTarget::create(p, force) {
            Ok(_) => panic!("{} was accepted", p.display()),
            Err(e) => e.to_string(),
        };
        let missing = d.path().join("no/such/dir/x.raw");
        let e = err(&missing, false);
        assert!(e.contains("no/such/dir does not exist"), "{e}");
        let exists = d.path().join("exists.raw");
        std::fs::write(&exists, b"keep").unwrap();
        let e = err(&exists, false);
        assert!(e.contains("already exists"), "{e}");
        let e = err(d.path(), true);
        assert!(e.contains("neither a regular file"), "{e}");
        let dangling = d.path().join("dangling.raw");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        let e = err(&dangling, false);
        assert!(e.contains("symbolic link to nothing"), "{e}");
        assert_eq!(entries(d.path()), ["dangling.raw", "exists.raw"]);
        assert_eq!(std::fs::read(&exists).unwrap(), b"keep");
    }

    #[test]
    fn a_file_appearing_during_a_restore_is_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path().join("x.raw");
        let mut t = FileTarget::create(&to, false).unwrap();
        write_some(&mut t);
        std::fs::write(&to, b"someone else's").unwrap();
        let e = t.finish().unwrap_err().to_string();
        assert!(e.contains("created by something else"), "{e}");
        drop(t);
        assert_eq!(std::fs::read(&to).unwrap(), b"someone else's");
        assert_eq!(entries(d.path()), ["x.raw"]);
    }
}
