//! Disk sources: what the backup pipeline reads. A source has a capacity in
//! bytes, reads exact ranges, and may know which ranges are allocated.
//!
//! [`ImageSource`] reads a raw image file or block device and refuses
//! anything else (a FIFO, a character device, a directory, a socket)
//! without ever blocking on it; the VDDK source (in [`crate::vddk`]) reads
//! a virtual disk through libvixDiskLib. The pipeline owns a source on one reader thread: implementations need `Send`
//! but never see concurrent calls.

use std::fs::{File, FileType, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
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
    /// Advice that `[offset, offset + length)` will be read soon, so a
    /// source that can read in the background may start. Never fails; the
    /// default does nothing.
    fn will_need(&self, _offset: u64, _length: u64) {}
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
    ///
    /// Anything but a regular file or a block device is refused before it
    /// is opened (opening a FIFO would wait for a writer forever). The open
    /// is non-blocking and the opened file is checked again, so a path
    /// swapped for a FIFO in between cannot hang it either.
    pub fn open(path: &Path, sparse: bool) -> Result<Self> {
        let inv = |msg: String| Error::SourceInvalid {
            source_name: path.display().to_string(),
            msg,
        };
        // Follows symlinks: /dev/disk/by-id/... name block devices that way.
        let meta = std::fs::metadata(path).map_err(|e| inv(format!("cannot open: {e}")))?;
        check_kind(meta.file_type()).map_err(inv)?;
        // O_NONBLOCK has no effect on regular files and block devices.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(|e| inv(format!("cannot open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| inv(format!("cannot stat: {e}")))?;
        let ft = meta.file_type();
        check_kind(ft).map_err(inv)?;
        let is_dev = ft.is_block_device();
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

    /// A second handle on the same file (its own descriptor), e.g. for a
    /// thread that gives read-ahead advice.
    pub fn try_clone(&self) -> Result<Self> {
        let file = self.file.try_clone().map_err(|e| Error::SourceInvalid {
            source_name: self.path.display().to_string(),
            msg: format!("cannot duplicate the descriptor: {e}"),
        })?;
        Ok(ImageSource {
            path: self.path.clone(),
            file,
            capacity: self.capacity,
            sparse: self.sparse,
        })
    }

    /// Asks the kernel to start reading `ranges` (see [`widened`]), so that
    /// a backup's first reads overlap with work done before they start
    /// (unlocking the repository key). Advice only: nothing fails.
    pub fn read_ahead(&self, ranges: impl Iterator<Item = Extent>, granule: u64, budget: u64) {
        for e in widened(ranges, granule, self.capacity, budget) {
            self.will_need(e.offset, e.length);
        }
    }
}

/// Accepts a regular file or a block device; otherwise says what it is.
fn check_kind(ft: FileType) -> std::result::Result<(), String> {
    if ft.is_file() || ft.is_block_device() {
        return Ok(());
    }
    let what = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(format!(
        "is {what}, neither a regular file nor a block device (an image must be one of those)"
    ))
}

/// `ranges` (sorted) widened to whole `granule`s (a backup reads whole
/// slots), clipped to `capacity`, neighbours that touch merged, and cut
/// after `budget` bytes in all.
pub fn widened(
    ranges: impl Iterator<Item = Extent>,
    granule: u64,
    capacity: u64,
    budget: u64,
) -> Vec<Extent> {
    let g = granule.max(1);
    let mut out: Vec<Extent> = Vec::new();
    let mut total = 0u64;
    for r in ranges {
        if r.offset >= capacity || total >= budget {
            break;
        }
        if r.length == 0 {
            continue;
        }
        let start = r.offset / g * g;
        let end = r.end().div_ceil(g).saturating_mul(g).min(capacity);
        match out.last_mut() {
            Some(last) if start <= last.end() => {
                let grow = end.saturating_sub(last.end());
                last.length += grow;
                total += grow;
            }
            _ => {
                out.push(Extent {
                    offset: start,
                    length: end - start,
                });
                total += end - start;
            }
        }
    }
    if total > budget {
        if let Some(last) = out.last_mut() {
            last.length -= total - budget;
        }
    }
    out
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

    fn will_need(&self, offset: u64, length: u64) {
        let _ = rustix::fs::fadvise(&self.file, offset, length, rustix::fs::Advice::WillNeed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(offset: u64, length: u64) -> Extent {
        Extent { offset, length }
    }

    #[test]
    fn widened_rounds_out_to_granules_and_merges_neighbours() {
        let got = widened(
            [ext(10, 5), ext(1000, 30), ext(1030, 1), ext(5000, 10)].into_iter(),
            1024,
            4500,
            u64::MAX,
        );
        // 10..15 and 1000..1031 share granules 0 and 1 (0..2048); 5000 is
        // past the capacity.
        assert_eq!(got, vec![ext(0, 2048)]);
        let got = widened(
            [ext(0, 1), ext(4096, 1)].into_iter(),
            1024,
            1 << 20,
            u64::MAX,
        );
        assert_eq!(got, vec![ext(0, 1024), ext(4096, 1024)]);
    }

    /// The error of opening `p`, which must fail.
    fn open_err(p: &Path) -> String {
        match ImageSource::open(p, true) {
            Ok(_) => panic!("{} was accepted", p.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn anything_but_a_file_or_block_device_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A symlink to the FIFO is followed, and still refused.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let sock = d.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for (p, what) in [
            (fifo.as_path(), "is a FIFO"),
            (link.as_path(), "is a FIFO"),
            (Path::new("/dev/zero"), "is a character device"),
            (d.path(), "is a directory"),
            (sock.as_path(), "is a socket"),
        ] {
            let e = open_err(p);
            assert!(e.contains(what), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(
                e.contains("neither a regular file nor a block device"),
                "{e}"
            );
        }
    }

    #[test]
    fn widened_clips_to_capacity_and_budget() {
        let got = widened([ext(3000, 10)].into_iter(), 1024, 3050, u64::MAX);
        assert_eq!(got, vec![ext(2048, 1002)]);
        let got = widened(
            [ext(0, 10), ext(8192, 10), ext(16384, 10)].into_iter(),
            4096,
            1 << 20,
            6000,
        );
        assert_eq!(got, vec![ext(0, 4096), ext(8192, 1904)]);
        assert!(widened([ext(0, 10)].into_iter(), 4096, 1 << 20, 0).is_empty());
    }
}
