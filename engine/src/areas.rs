//! Area lists: the shape `QueryChangedDiskAreas` returns, one
//! `offset,length` line per area, in bytes. Blank lines and lines starting
//! with `#` are ignored. Rules (checked before a backup reads anything):
//! numbers are decimal, lengths are positive, areas are sorted and do not
//! overlap (touching is fine), and every area ends within the disk.
//!
//! A list is read exactly once, whatever its path names (a file, a pipe,
//! `/dev/stdin`, a process substitution), into memory: 16 bytes per area
//! after touching areas are merged, and lines are at most
//! [`MAX_LINE`] bytes, so a hostile file cannot make one allocation grow
//! without bound. The same [`AreaList`] then serves validation, read-ahead
//! and the backup.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::source::Extent;
use crate::{Error, Result};

/// The longest line an area list may hold (bytes, newline excluded).
pub const MAX_LINE: usize = 256;

/// A parsed and ordered area list.
#[derive(Clone, Debug)]
pub struct AreaList {
    /// Where it came from (a path), for messages.
    pub origin: String,
    /// The areas, touching neighbours merged.
    areas: Arc<[Extent]>,
    /// Number of areas listed (before merging).
    pub count: u64,
    /// Sum of area lengths.
    pub bytes: u64,
}

fn parse_line(t: &str) -> std::result::Result<Option<Extent>, String> {
    let t = t.trim();
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

impl AreaList {
    /// Reads and checks the list at `path` (opened once, read to the end)
    /// against a disk of `capacity` bytes when it is known; otherwise
    /// [`AreaList::check_within`] checks it later (a VDDK disk's size is
    /// known only once it is open).
    pub fn read(path: &Path, capacity: Option<u64>) -> Result<Self> {
        let origin = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|e| Error::Areas {
            file: origin.clone(),
            msg: format!("cannot open: {e}"),
        })?;
        Self::from_reader(&origin, f, capacity)
    }

    /// Reads and checks a list from `r`, named `origin` in errors.
    pub fn from_reader(origin: &str, r: impl Read, capacity: Option<u64>) -> Result<Self> {
        let err = |lineno: usize, msg: String| Error::Areas {
            file: origin.to_string(),
            msg: if lineno == 0 {
                msg
            } else {
                format!("line {lineno}: {msg}")
            },
        };
        let mut r = BufReader::new(r);
        let mut areas: Vec<Extent> = Vec::new();
        let (mut count, mut bytes, mut prev_end) = (0u64, 0u64, 0u64);
        let mut line = Vec::with_capacity(64);
        for lineno in 1.. {
            line.clear();
            let n = (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| err(lineno, format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() > MAX_LINE {
                return Err(err(
                    lineno,
                    format!("longer than {MAX_LINE} bytes: not an area list"),
                ));
            }
            let text = std::str::from_utf8(&line)
                .map_err(|_| err(lineno, "is not text (UTF-8)".into()))?;
            let Some(a) = parse_line(text).map_err(|m| err(lineno, m))? else {
                continue;
            };
            check_area(&a, prev_end, capacity.unwrap_or(u64::MAX)).map_err(|m| err(lineno, m))?;
            prev_end = a.end();
            count += 1;
            bytes += a.length;
            match areas.last_mut() {
                Some(last) if last.end() == a.offset => last.length += a.length,
                _ => areas.push(a),
            }
        }
        Ok(AreaList {
            origin: origin.to_string(),
            areas: areas.into(),
            count,
            bytes,
        })
    }

    /// A list of areas already in memory (e.g. from `QueryChangedDiskAreas`).
    pub fn from_extents(origin: &str, list: &[Extent]) -> Result<Self> {
        let mut areas: Vec<Extent> = Vec::with_capacity(list.len());
        let (mut bytes, mut prev_end) = (0u64, 0u64);
        for a in list {
            if a.length == 0 {
                return Err(Error::Areas {
                    file: origin.to_string(),
                    msg: format!("area at {} has length zero", a.offset),
                });
            }
            check_area(a, prev_end, u64::MAX).map_err(|msg| Error::Areas {
                file: origin.to_string(),
                msg,
            })?;
            prev_end = a.end();
            bytes += a.length;
            match areas.last_mut() {
                Some(last) if last.end() == a.offset => last.length += a.length,
                _ => areas.push(*a),
            }
        }
        Ok(AreaList {
            origin: origin.to_string(),
            areas: areas.into(),
            count: list.len() as u64,
            bytes,
        })
    }

    /// Fails naming the first area that ends beyond `capacity`.
    pub fn check_within(&self, capacity: u64) -> Result<()> {
        match self.areas.iter().find(|a| a.end() > capacity) {
            Some(a) => Err(Error::Areas {
                file: self.origin.clone(),
                msg: format!(
                    "the area at {} ends at {}, beyond the disk size {capacity}",
                    a.offset,
                    a.end()
                ),
            }),
            None => Ok(()),
        }
    }

    /// The areas (touching neighbours merged), in order.
    pub fn extents(&self) -> &[Extent] {
        &self.areas
    }

    /// The areas as the backup pipeline takes them.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<Extent>> + Send> {
        let areas = self.areas.clone();
        Box::new((0..areas.len()).map(move |i| Ok(areas[i])))
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

    fn parse(s: &str) -> Result<AreaList> {
        AreaList::from_reader("test.cbt", s.as_bytes(), None)
    }

    #[test]
    fn accepts_sorted_touching_areas_and_comments() {
        let a = parse("# areas\n0,4096\n4096,100\n\n1048576, 65536").unwrap();
        assert_eq!(a.count, 3);
        assert_eq!(a.bytes, 4096 + 100 + 65536);
        a.check_within(2 << 20).unwrap();
        // Touching areas are merged; the totals keep what was listed.
        assert_eq!(
            a.extents(),
            &[
                Extent {
                    offset: 0,
                    length: 4196
                },
                Extent {
                    offset: 1048576,
                    length: 65536
                }
            ]
        );
        let v: Vec<_> = a.iter().collect::<Result<_>>().unwrap();
        assert_eq!(v, a.extents());
    }

    #[test]
    fn rejects_each_kind_of_bad_line_naming_the_line() {
        for (text, needle) in [
            ("0,10\nabc\n", "line 2"),
            ("0,x\n", "not a decimal"),
            ("0,0\n", "zero"),
            ("100,10\n0,10\n", "sorted"),
            ("0,100\n50,10\n", "overlap"),
            ("18446744073709551615,2\n", "overflows"),
            ("0,1\n\u{1}\u{2}\n", "line 2"),
            ("0,1\n\u{ff}\n", "line 2"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("test.cbt"), "{e}");
        }
        let long = format!("0,1\n{}\n", "9".repeat(MAX_LINE + 1));
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("longer than"), "{e}");
        let e = parse("0,2000\n").unwrap().check_within(1024).unwrap_err();
        assert!(e.to_string().contains("beyond the disk size 1024"), "{e}");
        let e = AreaList::from_reader("t", "0,10\n100,2000\n".as_bytes(), Some(1024)).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: area 100,2000 ends at 2100, beyond the disk size 1024"),
            "{e}"
        );
    }

    /// The list is read from one stream once: a pipe (which only one reader
    /// can drain) gives the same areas as a file.
    #[test]
    fn a_pipe_is_read_once_like_a_file() {
        let (mut rx, mut tx) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            tx.write_all(b"0,4096\n8192,10\n").unwrap();
        });
        let a = AreaList::from_reader("pipe", &mut rx, Some(1 << 20)).unwrap();
        writer.join().unwrap();
        assert_eq!((a.count, a.bytes), (2, 4106));
    }
}
