//! Retention: which generations of a lineage `forget` keeps (SPEC.md §13).
//!
//! Rules, applied per source (lineage), newest generation first:
//! 1. Protected generations are always kept.
//! 2. `keep-within D`: every generation started less than D before now.
//! 3. The options `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`
//!    run in that order. Each groups generations into periods (each
//!    generation its own period for `last`; the clock hour, calendar day,
//!    ISO 8601 week (ISO week-numbering year), month or year in the given
//!    UTC offset otherwise). Periods that already hold a generation kept by
//!    an earlier rule are skipped. Walking newest to oldest, an option keeps
//!    the newest generation of each new period until it has kept N; the
//!    other generations of a period it visited are removed, and later
//!    options do not consider them.
//! 4. Every generation no rule kept is removed.

use std::collections::{HashMap, HashSet};

use time::{OffsetDateTime, UtcOffset};

/// How many periods of each kind to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub within_secs: Option<i64>,
    pub last: usize,
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
}

impl Policy {
    /// True when no option keeps anything (forget would remove everything).
    pub fn is_empty(&self) -> bool {
        self.within_secs.is_none()
            && self.last + self.hourly + self.daily + self.weekly + self.monthly + self.yearly == 0
    }
}

/// One generation as retention sees it.
#[derive(Clone, Debug)]
pub struct Item {
    pub key: String,
    /// Start of the backup, Unix seconds.
    pub time: i64,
    /// Commit time in nanoseconds and end time (0 when unknown): they
    /// order generations started in the same second, as everywhere else
    /// (SPEC.md §8), so `--keep-last 1` keeps what `latest` names.
    pub committed_ns: u128,
    pub finished: i64,
    pub protected: bool,
}

/// Why a generation is kept or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep(String),
    Remove(String),
}

fn period(kind: &str, t: i64, off: UtcOffset) -> String {
    let d = OffsetDateTime::from_unix_timestamp(t)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(off);
    match kind {
        "hourly" => format!(
            "{}-{:02}-{:02} {:02}h",
            d.year(),
            d.month() as u8,
            d.day(),
            d.hour()
        ),
        "daily" => format!("{}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
        "weekly" => {
            let (y, w, _) = d.to_iso_week_date();
            format!("{y}-W{w:02}")
        }
        "monthly" => format!("{}-{:02}", d.year(), d.month() as u8),
        _ => format!("{}", d.year()),
    }
}

/// Decides, for the generations of ONE lineage, which to keep. `now` and
/// `offset` fix the clock and the time zone for periods.
pub fn decide(items: &[Item], p: &Policy, now: i64, offset: UtcOffset) -> HashMap<String, Verdict> {
    let mut order: Vec<&Item> = items.iter().collect();
    order.sort_by(|a, b| {
        (b.time, b.committed_ns, b.finished, &b.key).cmp(&(
            a.time,
            a.committed_ns,
            a.finished,
            &a.key,
        ))
    });
    let mut out: HashMap<String, Verdict> = HashMap::new();
    for it in &order {
        if it.protected {
            out.insert(it.key.clone(), Verdict::Keep("protected".into()));
        } else if let Some(w) = p.within_secs {
            if now - it.time < w {
                out.insert(it.key.clone(), Verdict::Keep("within".into()));
            }
        }
    }
    let opts = [
        ("last", p.last),
        ("hourly", p.hourly),
        ("daily", p.daily),
        ("weekly", p.weekly),
        ("monthly", p.monthly),
        ("yearly", p.yearly),
    ];
    for (kind, n) in opts {
        if n == 0 {
            continue;
        }
        let sel = |it: &Item| -> String {
            if kind == "last" {
                it.key.clone()
            } else {
                period(kind, it.time, offset)
            }
        };
        let covered: HashSet<String> = order
            .iter()
            .filter(|it| matches!(out.get(&it.key), Some(Verdict::Keep(_))))
            .map(|it| sel(it))
            .collect();
        let mut taken: HashSet<String> = HashSet::new();
        for it in &order {
            if out.contains_key(&it.key) {
                continue;
            }
            let s = sel(it);
            if covered.contains(&s) {
                continue;
            }
            if taken.contains(&s) {
                out.insert(
                    it.key.clone(),
                    Verdict::Remove(format!("older in {kind} period {s}")),
                );
            } else {
                if taken.len() >= n {
                    break;
                }
                taken.insert(s.clone());
                let why = if kind == "last" {
                    "last".to_string()
                } else {
                    format!("{kind} {s}")
                };
                out.insert(it.key.clone(), Verdict::Keep(why));
            }
        }
    }
    for it in &order {
        out.entry(it.key.clone())
            .or_insert_with(|| Verdict::Remove("no rule keeps it".into()));
    }
    out
}

/// Parses `30d`, `12h`, `2w`, `6m` (30-day months), `1y` (365 days), or
/// combinations such as `1y6m`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected NUMBER followed by h, d, w, m or y"))?;
        num.clear();
        let unit = match c {
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            'm' => 30 * 86400,
            'y' => 365 * 86400,
            _ => return Err(format!("{s:?}: unknown unit {c:?} (use h, d, w, m, y)")),
        };
        total = total
            .checked_add(n.checked_mul(unit).ok_or("duration too long")?)
            .ok_or("duration too long")?;
    }
    if !num.is_empty() || total == 0 {
        return Err(format!(
            "{s:?}: expected NUMBER followed by h, d, w, m or y"
        ));
    }
    Ok(total)
}
