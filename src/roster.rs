//! The duty roster (值班表): who of a team is on duty at a given local time.
//!
//! A member named in a team's `[[teams.roster]]` shifts is told only while
//! one of their shifts runs; a member named in none is always told. A shift
//! runs on weekdays (`days = ["mon", "tue"]`) or dates
//! (`dates = ["2026-07-21"]`) from `from` to `to` local time; with `to` at or
//! before `from` it runs past midnight into the next day (`08:00`–`08:00` is
//! the usual 24-hour duty). The day named is the day the shift starts.
//!
//! Pure: the time is an argument.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Weekday};

use crate::config::{Shift, Team};

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn weekday(s: &str) -> Option<Weekday> {
    DAYS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|(_, d)| *d)
}

fn time(s: &str) -> Option<NaiveTime> {
    if s == "24:00" {
        return NaiveTime::from_hms_opt(0, 0, 0);
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// What is wrong with a shift of `team`, as (key under the shift, reason).
pub fn check(team: &Team, shift: &Shift) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if !team.members.iter().any(|m| m.name == shift.member) {
        errs.push(("member".into(), format!("{:?} is not a member of team {:?}", shift.member, team.id)));
    }
    if shift.days.is_empty() && shift.dates.is_empty() {
        errs.push(("days".into(), "a shift needs days (mon … sun) or dates (2026-07-21)".into()));
    }
    for (i, d) in shift.days.iter().enumerate() {
        if weekday(d).is_none() {
            errs.push((
                format!("days[{i}]"),
                format!("{d:?} is not a weekday: use mon tue wed thu fri sat sun"),
            ));
        }
    }
    for (i, d) in shift.dates.iter().enumerate() {
        if date(d).is_none() {
            errs.push((format!("dates[{i}]"), format!("{d:?} is not a date like 2026-07-21")));
        }
    }
    for (k, v) in [("from", &shift.from), ("to", &shift.to)] {
        if time(v).is_none() {
            errs.push((k.into(), format!("{v:?} is not a time like 08:00")));
        }
    }
    errs
}

/// Whether `shift` runs at local time `at`.
fn runs<Tz: TimeZone>(shift: &Shift, at: &DateTime<Tz>) -> bool {
    let (Some(from), Some(to)) = (time(&shift.from), time(&shift.to)) else {
        return false;
    };
    let local = at.naive_local();
    let (day, t) = (local.date(), local.time());
    let starts_on = |d: NaiveDate| {
        shift.days.iter().any(|w| weekday(w) == Some(d.weekday()))
            || shift.dates.iter().any(|x| date(x) == Some(d))
    };
    if from < to {
        starts_on(day) && t >= from && t < to
    } else {
        // Past midnight: the part from `from` today, or the part before
        // `to` of a shift that started yesterday.
        (starts_on(day) && t >= from) || (t < to && starts_on(day - Duration::days(1)))
    }
}

/// Whether `member` of `team` is told at `at`: they have no shifts, or one
/// of theirs runs.
pub fn on_duty<Tz: TimeZone>(team: &Team, member: &str, at: &DateTime<Tz>) -> bool {
    let mut theirs = team.roster.iter().filter(|s| s.member == member).peekable();
    theirs.peek().is_none() || theirs.any(|s| runs(s, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    fn shift(member: &str, days: &[&str], dates: &[&str], from: &str, to: &str) -> Shift {
        Shift {
            member: member.into(),
            days: days.iter().map(|s| s.to_string()).collect(),
            dates: dates.iter().map(|s| s.to_string()).collect(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn team(roster: Vec<Shift>) -> Team {
        let mut t: Team = toml::from_str(
            r#"
            id = "t"
            name = "t"
            streets = ["s"]
            members = [
                { name = "甲", role = "member", phone = "13800000001" },
                { name = "乙", role = "member", phone = "13800000002" },
                { name = "丙", role = "leader", phone = "13800000003" },
            ]
            "#,
        )
        .unwrap();
        t.roster = roster;
        t
    }

    fn at(s: &str) -> DateTime<chrono_tz::Tz> {
        Shanghai
            .from_local_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
            .unwrap()
    }

    #[test]
    fn weekly_day_shifts_and_an_overnight_shift() {
        // 2026-07-20 is a Monday.
        let t = team(vec![
            shift("甲", &["mon", "tue", "wed", "thu", "fri"], &[], "08:00", "20:00"),
            shift("乙", &["mon", "tue", "wed", "thu", "fri"], &[], "20:00", "08:00"),
        ]);
        let duty =
            |s: &str| ["甲", "乙", "丙"].into_iter().filter(|m| on_duty(&t, m, &at(s))).collect::<Vec<_>>();
        assert_eq!(duty("2026-07-20 08:00"), ["甲", "丙"], "the day shift starts at 08:00 sharp");
        assert_eq!(duty("2026-07-20 19:59"), ["甲", "丙"]);
        assert_eq!(duty("2026-07-20 20:00"), ["乙", "丙"], "the night shift takes over");
        assert_eq!(duty("2026-07-21 03:00"), ["乙", "丙"], "Monday's night shift runs into Tuesday");
        assert_eq!(
            duty("2026-07-20 03:00"),
            ["丙"],
            "Sunday has no night shift, so Monday 03:00 is uncovered"
        );
        assert_eq!(duty("2026-07-25 12:00"), ["丙"], "Saturday: nobody rostered");
        assert_eq!(duty("2026-07-25 03:00"), ["乙", "丙"], "Friday's night shift ends Saturday 08:00");
    }

    #[test]
    fn dated_24_hour_duty() {
        let t = team(vec![shift("甲", &[], &["2026-07-21"], "08:00", "08:00")]);
        assert!(!on_duty(&t, "甲", &at("2026-07-21 07:59")));
        assert!(on_duty(&t, "甲", &at("2026-07-21 08:00")));
        assert!(on_duty(&t, "甲", &at("2026-07-22 07:59")));
        assert!(!on_duty(&t, "甲", &at("2026-07-22 08:00")));
        assert!(on_duty(&t, "乙", &at("2026-07-22 08:00")), "no shifts: always told");
    }

    #[test]
    fn the_local_time_zone_decides() {
        let t = team(vec![shift("甲", &["mon"], &[], "08:00", "09:00")]);
        // 2026-07-20 00:30 UTC is Monday 08:30 in Shanghai.
        let utc = chrono::Utc.with_ymd_and_hms(2026, 7, 20, 0, 30, 0).unwrap();
        assert!(on_duty(&t, "甲", &utc.with_timezone(&Shanghai)));
        assert!(!on_duty(&t, "甲", &utc), "read in UTC it would be Monday 00:30");
    }

    #[test]
    fn bad_shifts_are_named() {
        let t = team(vec![]);
        let errs = check(&t, &shift("丁", &["monday"], &["21/07/2026"], "8am", "25:00"));
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["member", "days[0]", "dates[0]", "from", "to"]);
        assert!(errs[0].1.contains("not a member"), "{errs:?}");
        let errs = check(&t, &shift("甲", &[], &[], "08:00", "24:00"));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "days");
    }
}
