//! Table-driven tests of `forget`'s rules (engine::retention) against
//! hand-computed expectations: precedence between options, periods in
//! different UTC offsets, ISO week boundaries, protection, keep-within.

use time::macros::datetime;
use time::UtcOffset;
use vmkeep_engine::retention::{decide, parse_duration, Item, Policy, Verdict};

fn t(dt: time::PrimitiveDateTime) -> i64 {
    dt.assume_utc().unix_timestamp()
}

fn items(list: &[(&str, i64)]) -> Vec<Item> {
    list.iter()
        .map(|(k, ti)| Item {
            key: k.to_string(),
            time: *ti,
            committed_ns: 0,
            finished: *ti,
            protected: false,
        })
        .collect()
}

fn kept(v: &std::collections::HashMap<String, Verdict>) -> Vec<String> {
    let mut k: Vec<String> = v
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Keep(_)))
        .map(|(k, _)| k.clone())
        .collect();
    k.sort();
    k
}

const UTC: UtcOffset = UtcOffset::UTC;

#[test]
fn keep_last_keeps_the_newest_n() {
    let g = items(&[("a", 100), ("b", 200), ("c", 300), ("d", 400)]);
    let p = Policy {
        last: 2,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 1000, UTC)), ["c", "d"]);
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let g = items(&[
        ("d1-early", t(datetime!(2026-03-01 01:00))),
        ("d1-late", t(datetime!(2026-03-01 23:00))),
        ("d2", t(datetime!(2026-03-02 12:00))),
        ("d3-a", t(datetime!(2026-03-03 08:00))),
        ("d3-b", t(datetime!(2026-03-03 09:00))),
    ]);
    let p = Policy {
        daily: 2,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["d2", "d3-b"]);
    let p = Policy {
        daily: 5,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["d1-late", "d2", "d3-b"]);
}

#[test]
fn later_options_skip_periods_earlier_options_covered() {
    // keep-last 1 keeps d3-b; daily 2 then skips day 3 and keeps days 2 and 1.
    let g = items(&[
        ("d1", t(datetime!(2026-03-01 12:00))),
        ("d2", t(datetime!(2026-03-02 12:00))),
        ("d3-a", t(datetime!(2026-03-03 08:00))),
        ("d3-b", t(datetime!(2026-03-03 09:00))),
    ]);
    let p = Policy {
        last: 1,
        daily: 2,
        ..Default::default()
    };
    let v = decide(&g, &p, 0, UTC);
    assert_eq!(kept(&v), ["d1", "d2", "d3-b"]);
    assert!(matches!(&v["d3-a"], Verdict::Remove(_)));
}

#[test]
fn days_depend_on_the_time_zone() {
    // 23:30 UTC on 1 March is 1 March in UTC but 2 March at UTC+1.
    let g = items(&[
        ("late", t(datetime!(2026-03-01 23:30))),
        ("next", t(datetime!(2026-03-02 10:00))),
    ]);
    let p = Policy {
        daily: 2,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["late", "next"]);
    let plus1 = UtcOffset::from_hms(1, 0, 0).unwrap();
    assert_eq!(kept(&decide(&g, &p, 0, plus1)), ["next"]);
    // And at UTC-11 both fall on 1 March.
    let g2 = items(&[
        ("a", t(datetime!(2026-03-01 12:00))),
        ("b", t(datetime!(2026-03-02 10:00))),
    ]);
    let minus11 = UtcOffset::from_hms(-11, 0, 0).unwrap();
    assert_eq!(kept(&decide(&g2, &p, 0, minus11)), ["b"]);
    assert_eq!(kept(&decide(&g2, &p, 0, UTC)), ["a", "b"]);
}

#[test]
fn weeks_are_iso_weeks_across_year_ends() {
    // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53;
    // 2027-01-04 (Mon) starts 2027-W01. 2024-12-30 (Mon) is in 2025-W01.
    let g = items(&[
        ("w53-thu", t(datetime!(2026-12-31 12:00))),
        ("w53-sun", t(datetime!(2027-01-03 12:00))),
        ("w01-mon", t(datetime!(2027-01-04 12:00))),
    ]);
    let p = Policy {
        weekly: 5,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["w01-mon", "w53-sun"]);
    let g = items(&[
        ("2024-12-29-sun", t(datetime!(2024-12-29 12:00))),
        ("2024-12-30-mon", t(datetime!(2024-12-30 12:00))),
        ("2025-01-05-sun", t(datetime!(2025-01-05 12:00))),
    ]);
    // 12-30 and 01-05 share 2025-W01; 12-29 is 2024-W52.
    assert_eq!(
        kept(&decide(&g, &p, 0, UTC)),
        ["2024-12-29-sun", "2025-01-05-sun"]
    );
    // Monday 00:30 at UTC+2 is still Sunday in UTC: the week changes with the zone.
    let g = items(&[
        ("sun", t(datetime!(2027-01-03 10:00))),
        ("mon-early", t(datetime!(2027-01-03 22:30))),
    ]);
    let p = Policy {
        weekly: 2,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["mon-early"]);
    let plus2 = UtcOffset::from_hms(2, 0, 0).unwrap();
    assert_eq!(kept(&decide(&g, &p, 0, plus2)), ["mon-early", "sun"]);
}

#[test]
fn monthly_and_yearly() {
    let g = items(&[
        ("2025-11", t(datetime!(2025-11-15 00:00))),
        ("2025-12a", t(datetime!(2025-12-01 00:00))),
        ("2025-12b", t(datetime!(2025-12-31 00:00))),
        ("2026-01", t(datetime!(2026-01-10 00:00))),
        ("2026-02", t(datetime!(2026-02-10 00:00))),
    ]);
    let p = Policy {
        monthly: 3,
        ..Default::default()
    };
    assert_eq!(
        kept(&decide(&g, &p, 0, UTC)),
        ["2025-12b", "2026-01", "2026-02"]
    );
    let p = Policy {
        yearly: 2,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["2025-12b", "2026-02"]);
    // monthly 1 covers Feb 2026; yearly then skips 2026 and keeps 2025's newest.
    let p = Policy {
        monthly: 1,
        yearly: 1,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["2025-12b", "2026-02"]);
}

#[test]
fn hourly_in_a_half_hour_zone() {
    let g = items(&[
        ("a", t(datetime!(2026-05-05 10:10))),
        ("b", t(datetime!(2026-05-05 10:40))),
    ]);
    let p = Policy {
        hourly: 5,
        ..Default::default()
    };
    assert_eq!(kept(&decide(&g, &p, 0, UTC)), ["b"]);
    // At UTC+5:30, 10:10 is 15:40 and 10:40 is 16:10: two hours.
    let india = UtcOffset::from_hms(5, 30, 0).unwrap();
    assert_eq!(kept(&decide(&g, &p, 0, india)), ["a", "b"]);
}

#[test]
fn protected_and_within_are_always_kept() {
    let mut g = items(&[("old", 100), ("mid", 5000), ("new", 9000)]);
    g[0].protected = true;
    let p = Policy {
        within_secs: Some(2000),
        ..Default::default()
    };
    let v = decide(&g, &p, 10_000, UTC);
    assert_eq!(kept(&v), ["new", "old"]);
    assert_eq!(v["old"], Verdict::Keep("protected".into()));
    assert!(matches!(v["mid"], Verdict::Remove(_)));
}

#[test]
fn durations_parse_and_reject_nonsense() {
    assert_eq!(parse_duration("12h").unwrap(), 12 * 3600);
    assert_eq!(parse_duration("1y6m").unwrap(), 365 * 86400 + 180 * 86400);
    assert_eq!(parse_duration("2w").unwrap(), 14 * 86400);
    for bad in ["", "5", "d", "3x", "10dd"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn an_empty_policy_is_reported_empty() {
    assert!(Policy::default().is_empty());
    assert!(!Policy {
        last: 1,
        ..Default::default()
    }
    .is_empty());
}

/// Generations started in the same second are ordered by commit time (as
/// `latest` is), not by id: `--keep-last 1` keeps the last committed.
#[test]
fn same_second_generations_keep_the_last_committed() {
    let mk = |key: &str, ns: u128| Item {
        key: key.into(),
        time: 1_700_000_000,
        committed_ns: ns,
        finished: 1_700_000_000,
        protected: false,
    };
    // "ff.." sorts after "00.." but was committed first.
    let list = [
        mk("ff", 1_700_000_000_100_000_000),
        mk("00", 1_700_000_000_900_000_000),
    ];
    let p = Policy {
        last: 1,
        ..Default::default()
    };
    let v = decide(&list, &p, 1_700_000_100, time::UtcOffset::UTC);
    assert!(matches!(v["00"], Verdict::Keep(_)), "{v:?}");
    assert!(matches!(v["ff"], Verdict::Remove(_)), "{v:?}");
}
