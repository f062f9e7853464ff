//! Disk sources: what the backup pipeline reads. A source has a capacity in
//! bytes, reads exact ranges, and may know which ranges are allocated.
//!
//! [`ImageSource`] reads a raw image file or block device; the VDDK source
//! (in [`crate::vddk`]) reads a virtual disk through libvixDiskLib. The
//! pipeline owns a source on one reader thread: implementations need `Send`
//! but never see concurrent calls.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A byte range `[offset, offset + length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// Something a backup can read.
pub trait DiskSource: Send {
    /// Names the source in errors and progress ("image /dev/sdb").
    fn describe(&self) -> String;
    /// Size in bytes.
    fn capacity(&self) -> u64;
    /// Fills `buf` from `offset`; `offset + buf.len() <= capacity`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// The allocated extents inside `[offset, offset + length)`, sorted, or
    /// `None` when the source cannot tell (then everything is read). Bytes
    /// outside the returned extents read as zeros.
    fn allocated(&mut self, offset: u64, length: u64) -> Result<Option<Vec<Extent>>>;
}

/// A raw disk image file or a block device.
pub struct ImageSource {
    path: PathBuf,
    file: File,
    capacity: u64,
    sparse: bool,
}

impl ImageSource {
    /// Opens `path` read-only. With `sparse`, holes of a regular file
    /// (SEEK_DATA/SEEK_HOLE) are reported as unallocated.
    pub fn open(path: &Path, sparse: bool) -> Result<Self> {
        let inv = |msg: String| Error::SourceInvalid {
            source_name: path.display().to_string(),
            msg,
        };
        let file = File::open(path).map_err(|e| inv(format!("cannot open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| inv(format!("cannot stat: {e}")))?;
        let ft = meta.file_type();
        let is_dev = ft.is_block_device();
        if !ft.is_file() && !is_dev {
            return Err(inv("is neither a regular file nor a block device".into()));
        }
        let capacity = if is_dev {
            (&file)
                .seek(SeekFrom::End(0))
                .map_err(|e| inv(format!("cannot get device size: {e}")))?
        } else {
            meta.len()
        };
        if capacity == 0 {
            return Err(inv("is empty".into()));
        }
        Ok(ImageSource {
            path: path.to_path_buf(),
            file,
            capacity,
            sparse: sparse && !is_dev,
        })
    }

    /// Asks the kernel to start reading `ranges` (clipped to the capacity)
    /// in the background, at most `budget` bytes in all, so that a backup's
    /// first reads overlap with work done before they start (unlocking the
    /// repository key). Advice only: nothing fails.
    pub fn will_need(&self, ranges: impl Iterator<Item = Extent>, budget: u64) {
        let mut left = budget;
        for r in ranges {
            if left == 0 || r.offset >= self.capacity {
                break;
            }
            let len = r.length.min(left).min(self.capacity - r.offset);
            let _ = rustix::fs::fadvise(&self.file, r.offset, len, rustix::fs::Advice::WillNeed);
            left -= len;
        }
    }
}

impl DiskSource for ImageSource {
    fn describe(&self) -> String {
        format!("image {}", self.path.display())
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|error| Error::SourceRead {
                source_name: self.path.display().to_string(),
                offset,
                error,
            })
    }

    fn allocated(&mut self, offset: u64, length: u64) -> Result<Option<Vec<Extent>>> {
        if !self.sparse {
            return Ok(None);
        }
        let end = (offset + length).min(self.capacity);
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let data = match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(pos as i64)) {
                Ok(d) => d,
                // ENXIO: no data at or after pos.
                Err(rustix::io::Errno::NXIO) => break,
                // The file system cannot tell: treat everything as allocated.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                    return Ok(None)
                }
                Err(e) => {
                    return Err(Error::SourceRead {
                        source_name: self.path.display().to_string(),
                        offset: pos,
                        error: e.into(),
                    })
                }
            };
            if data >= end {
                break;
            }
            let hole = rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Hole(data as i64))
                .map_err(|e| Error::SourceRead {
                    source_name: self.path.display().to_string(),
                    offset: data,
                    error: e.into(),
                })?;
            let stop = hole.min(end);
            out.push(Extent {
                offset: data,
                length: stop - data,
            });
            pos = stop;
        }
        Ok(Some(out))
    }
}
