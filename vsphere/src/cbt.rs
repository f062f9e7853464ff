//! Changed Block Tracking: QueryChangedDiskAreas over a whole disk.
//!
//! Nouns: [`DiskArea`] (byte offset and length), [`DiskChangeInfo`] (one
//! answer: the range it covers and the changed areas inside it),
//! [`ChangedAreas`] (the merged result for the whole disk and how many
//! calls it took).
//!
//! Invariants (a missed change is data loss, so every answer is checked):
//! each answer starts exactly where it was asked, covers a non-empty range
//! inside the disk, and lists areas only inside that range; the next call
//! starts at `startOffset + length`; the loop ends exactly at the capacity;
//! the result is sorted and merged. `"*"` as changeId asks for all
//! allocated areas.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::soap::MoRef;
use crate::xml::{escape, Element};

/// A byte range of a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskArea {
    /// Offset in bytes.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
}

impl DiskArea {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// One QueryChangedDiskAreas answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskChangeInfo {
    /// Where the answer starts.
    pub start_offset: u64,
    /// How much of the disk the answer covers.
    pub length: u64,
    /// Changed (or allocated) areas inside the covered range.
    pub areas: Vec<DiskArea>,
}

/// The areas of a whole disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedAreas {
    /// Sorted, merged areas.
    pub areas: Vec<DiskArea>,
    /// Number of QueryChangedDiskAreas calls made.
    pub calls: u32,
}

impl ChangedAreas {
    /// Total bytes in the areas.
    pub fn total_bytes(&self) -> u64 {
        self.areas.iter().map(|a| a.length).sum()
    }
}

fn num(el: &Element, name: &str) -> Option<u64> {
    el.child_text(name)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|v| u64::try_from(v).ok())
}

/// Parses a `DiskChangeInfo` element.
pub fn parse_change_info(device_key: i32, el: &Element) -> Result<DiskChangeInfo> {
    let bad = |what: &str| Error::ChangedAreas {
        device_key,
        what: what.to_string(),
    };
    let start_offset = num(el, "startOffset").ok_or_else(|| bad("answer has no startOffset"))?;
    let length = num(el, "length").ok_or_else(|| bad("answer has no length"))?;
    let mut areas = Vec::new();
    for a in el.children_named("changedArea") {
        areas.push(DiskArea {
            start: num(a, "start").ok_or_else(|| bad("changedArea has no start"))?,
            length: num(a, "length").ok_or_else(|| bad("changedArea has no length"))?,
        });
    }
    Ok(DiskChangeInfo {
        start_offset,
        length,
        areas,
    })
}

/// Sorts areas and merges overlapping or adjacent ones; drops empty ones.
pub fn merge_areas(mut areas: Vec<DiskArea>) -> Vec<DiskArea> {
    areas.retain(|a| a.length > 0);
    areas.sort();
    let mut out: Vec<DiskArea> = Vec::with_capacity(areas.len());
    for a in areas {
        match out.last_mut() {
            Some(last) if a.start <= last.end() => {
                let end = last.end().max(a.end());
                last.length = end - last.start;
            }
            _ => out.push(a),
        }
    }
    out
}

/// Calls `query(offset)` from `start` until `capacity` is covered, checking
/// every answer, and returns the merged areas.
pub fn collect_areas(
    device_key: i32,
    start: u64,
    capacity: u64,
    mut query: impl FnMut(u64) -> Result<DiskChangeInfo>,
) -> Result<ChangedAreas> {
    let bad = |what: String| Error::ChangedAreas { device_key, what };
    if start > capacity {
        return Err(bad(format!(
            "start offset {start} is beyond the capacity {capacity}"
        )));
    }
    let mut offset = start;
    let mut all = Vec::new();
    let mut calls = 0u32;
    while offset < capacity {
        let info = query(offset)?;
        calls += 1;
        if info.start_offset != offset {
            return Err(bad(format!(
                "asked from offset {offset}, the answer starts at {}",
                info.start_offset
            )));
        }
        if info.length == 0 {
            return Err(bad(format!("answer from offset {offset} covers nothing")));
        }
        let end = info
            .start_offset
            .checked_add(info.length)
            .ok_or_else(|| bad("answer length overflows".into()))?;
        if end > capacity {
            return Err(bad(format!(
                "answer covers up to {end}, beyond the capacity {capacity}"
            )));
        }
        for a in &info.areas {
            let area_end = a.start.checked_add(a.length);
            if a.start < info.start_offset || area_end.is_none() || area_end > Some(end) {
                return Err(bad(format!(
                    "area {}+{} lies outside the answer's range {}..{end}",
                    a.start, a.length, info.start_offset
                )));
            }
        }
        all.extend(info.areas);
        offset = end;
    }
    Ok(ChangedAreas {
        areas: merge_areas(all),
        calls,
    })
}

impl Client {
    /// One QueryChangedDiskAreas call.
    pub fn query_changed_disk_areas_once(
        &self,
        vm: &MoRef,
        snapshot: Option<&MoRef>,
        device_key: i32,
        start_offset: u64,
        change_id: &str,
    ) -> Result<DiskChangeInfo> {
        let params = format!(
            "{}{}<deviceKey>{device_key}</deviceKey><startOffset>{start_offset}</startOffset><changeId>{}</changeId>",
            vm.to_xml("_this"),
            snapshot.map(|s| s.to_xml("snapshot")).unwrap_or_default(),
            escape(change_id)
        );
        let (_, resp) = self.call("QueryChangedDiskAreas", &params)?;
        let rv = resp.child("returnval").ok_or_else(|| Error::ChangedAreas {
            device_key,
            what: "answer has no returnval".into(),
        })?;
        parse_change_info(device_key, rv)
    }

    /// Every changed area of a disk since `change_id` (or every allocated
    /// area for `"*"`), from `start_offset` to `capacity`, looping over
    /// partial answers.
    pub fn query_changed_disk_areas(
        &self,
        vm: &MoRef,
        snapshot: Option<&MoRef>,
        device_key: i32,
        start_offset: u64,
        capacity: u64,
        change_id: &str,
    ) -> Result<ChangedAreas> {
        collect_areas(device_key, start_offset, capacity, |off| {
            self.query_changed_disk_areas_once(vm, snapshot, device_key, off, change_id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Document;

    fn a(start: u64, length: u64) -> DiskArea {
        DiskArea { start, length }
    }

    #[test]
    fn merges_and_sorts() {
        let m = merge_areas(vec![a(100, 10), a(0, 10), a(10, 5), a(105, 20), a(50, 0)]);
        assert_eq!(m, vec![a(0, 15), a(100, 25)]);
    }

    #[test]
    fn loops_until_capacity() {
        let mut asked = Vec::new();
        let r = collect_areas(7, 0, 1000, |off| {
            asked.push(off);
            let len = 300.min(1000 - off);
            Ok(DiskChangeInfo {
                start_offset: off,
                length: len,
                areas: vec![a(off, 10)],
            })
        })
        .unwrap();
        assert_eq!(asked, vec![0, 300, 600, 900]);
        assert_eq!(r.calls, 4);
        assert_eq!(r.areas, vec![a(0, 10), a(300, 10), a(600, 10), a(900, 10)]);
        assert_eq!(r.total_bytes(), 40);
    }

    #[test]
    fn rejects_wrong_start() {
        let e = collect_areas(7, 0, 1000, |off| {
            Ok(DiskChangeInfo {
                start_offset: off + 1,
                length: 10,
                areas: vec![],
            })
        })
        .unwrap_err();
        assert!(e.to_string().contains("starts at 1"), "{e}");
    }

    #[test]
    fn rejects_empty_answer_and_overrun_and_stray_area() {
        let empty = collect_areas(1, 0, 100, |off| {
            Ok(DiskChangeInfo {
                start_offset: off,
                length: 0,
                areas: vec![],
            })
        });
        assert!(matches!(empty, Err(Error::ChangedAreas { .. })));
        let over = collect_areas(1, 0, 100, |off| {
            Ok(DiskChangeInfo {
                start_offset: off,
                length: 200,
                areas: vec![],
            })
        });
        assert!(matches!(over, Err(Error::ChangedAreas { .. })));
        let stray = collect_areas(1, 0, 100, |off| {
            Ok(DiskChangeInfo {
                start_offset: off,
                length: 50,
                areas: vec![a(60, 10)],
            })
        });
        assert!(matches!(stray, Err(Error::ChangedAreas { .. })));
    }

    #[test]
    fn parses_answer() {
        let doc = Document::parse("<returnval><startOffset>0</startOffset><length>1048576</length><changedArea><start>0</start><length>65536</length></changedArea><changedArea><start>131072</start><length>65536</length></changedArea></returnval>").unwrap();
        let info = parse_change_info(2000, &doc.root).unwrap();
        assert_eq!(info.length, 1048576);
        assert_eq!(info.areas, vec![a(0, 65536), a(131072, 65536)]);
    }
}
