//! Changed-areas lists: the shape `QueryChangedDiskAreas` returns, one
//! `offset,length` line per area, in bytes. Blank lines and lines starting
//! with `#` are ignored. Rules (checked before a backup reads anything):
//! numbers are decimal, lengths are positive, areas are sorted and do not
//! overlap (touching is fine), and every area ends within the disk.
//!
//! A file is validated in one streaming pass and read again while the
//! backup runs, so memory does not grow with the number of areas.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::source::Extent;
use crate::{Error, Result};

/// A validated changed-areas file.
#[derive(Clone, Debug)]
pub struct AreaFile {
    path: PathBuf,
    /// Number of areas.
    pub count: u64,
    /// Sum of area lengths.
    pub bytes: u64,
}

fn parse_line(line: &str) -> std::result::Result<Option<Extent>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let (a, b) = t
        .split_once(',')
        .ok_or_else(|| format!("expected `offset,length`, found {t:?}"))?;
    let offset: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("offset {:?} is not a decimal number", a.trim()))?;
    let length: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("length {:?} is not a decimal number", b.trim()))?;
    if length == 0 {
        return Err("length is zero".into());
    }
    Ok(Some(Extent { offset, length }))
}

/// Checks one area against the previous end and the capacity.
pub fn check_area(a: &Extent, prev_end: u64, capacity: u64) -> std::result::Result<(), String> {
    let end = a
        .offset
        .checked_add(a.length)
        .ok_or_else(|| format!("area {},{} overflows", a.offset, a.length))?;
    if a.offset < prev_end {
        return Err(format!(
            "area {},{} starts before the previous area ends ({prev_end}): areas must be sorted and must not overlap",
            a.offset, a.length
        ));
    }
    if end > capacity {
        return Err(format!(
            "area {},{} ends at {end}, beyond the disk size {capacity}",
            a.offset, a.length
        ));
    }
    Ok(())
}

impl AreaFile {
    /// Validates `path` against a disk of `capacity` bytes.
    pub fn open(path: &Path, capacity: u64) -> Result<Self> {
        let mut count = 0;
        let mut bytes = 0;
        let mut prev_end = 0;
        for item in Self::lines(path)? {
            let (lineno, a) = item?;
            check_area(&a, prev_end, capacity).map_err(|msg| Error::Areas {
                file: path.display().to_string(),
                msg: format!("line {lineno}: {msg}"),
            })?;
            prev_end = a.end();
            count += 1;
            bytes += a.length;
        }
        Ok(AreaFile {
            path: path.to_path_buf(),
            count,
            bytes,
        })
    }

    fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, Extent)>>> {
        let file = path.display().to_string();
        let f = File::open(path).map_err(|e| Error::Areas {
            file: file.clone(),
            msg: format!("cannot open: {e}"),
        })?;
        Ok(BufReader::new(f)
            .lines()
            .enumerate()
            .filter_map(move |(i, l)| {
                let lineno = i + 1;
                let r = l
                    .map_err(|e| format!("cannot read: {e}"))
                    .and_then(|l| parse_line(&l));
                match r {
                    Ok(Some(a)) => Some(Ok((lineno, a))),
                    Ok(None) => None,
                    Err(msg) => Some(Err(Error::Areas {
                        file: file.clone(),
                        msg: format!("line {lineno}: {msg}"),
                    })),
                }
            }))
    }

    /// The areas, read again from the file.
    pub fn iter(&self) -> Result<Box<dyn Iterator<Item = Result<Extent>> + Send>> {
        Ok(Box::new(
            Self::lines(&self.path)?.map(|r| r.map(|(_, a)| a)),
        ))
    }
}

/// Validates an in-memory area list (e.g. from `QueryChangedDiskAreas`).
pub fn check_areas(areas: &[Extent], capacity: u64) -> Result<()> {
    let mut prev = 0;
    for a in areas {
        check_area(a, prev, capacity).map_err(|msg| Error::Areas {
            file: "(changed areas from the host)".into(),
            msg,
        })?;
        prev = a.end();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(s.as_bytes()).unwrap();
        f
    }

    #[test]
    fn accepts_sorted_touching_areas_and_comments() {
        let f = write("# areas\n0,4096\n4096,100\n\n1048576, 65536\n");
        let a = AreaFile::open(f.path(), 2 << 20).unwrap();
        assert_eq!(a.count, 3);
        assert_eq!(a.bytes, 4096 + 100 + 65536);
        let v: Vec<_> = a.iter().unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(
            v[2],
            Extent {
                offset: 1048576,
                length: 65536
            }
        );
    }

    #[test]
    fn rejects_each_kind_of_bad_line_naming_the_line() {
        for (text, needle) in [
            ("0,10\nabc\n", "line 2"),
            ("0,x\n", "not a decimal"),
            ("0,0\n", "zero"),
            ("100,10\n0,10\n", "sorted"),
            ("0,100\n50,10\n", "overlap"),
            ("0,2000\n", "beyond the disk size"),
            ("18446744073709551615,2\n", "overflows"),
        ] {
            let f = write(text);
            let e = AreaFile::open(f.path(), 1024).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&f.path().display().to_string()), "{e}");
        }
    }
}
