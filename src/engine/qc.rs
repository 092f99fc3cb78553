//! Quality control before judgement (`plan::qc` says what is tested): each
//! reading of a tested metric is good, suspect or bad, with the test that
//! said so.
//!
//! - *bad* (outside the range): stored, never judged;
//! - *suspect* (spike, rate): held back — judged only when the next reading
//!   of the metric agrees with it, or a second sensor of the site does,
//!   within `confirm_within`; otherwise dropped, and counted as a failure;
//! - *suspect* (flatline): judged (it brings nothing new), and the metric's
//!   maintenance alert opens at once;
//! - failures (bad readings, suspects nobody confirmed) `fault_after` times
//!   within `fault_window` open a maintenance alert (疑似传感器故障) for the
//!   metric; it closes after `fault_clear` of passing readings (a flatline
//!   only once the value moved).
//!
//! Flags leave the engine as `Change::Qc` (for InfluxDB's `telemetry_qc`),
//! maintenance alerts as `Change::SensorFault`. Everything here is a
//! function of the readings and `now`, like the rest of the engine.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Change, Transition};
use crate::plan::qc::{MetricQc, QcPolicy};
use crate::plan::SitePlan;
use crate::reading::{Reading, TimestampNs};

const NS_PER_HOUR: f64 = 3_600e9;
/// Rates are measured over at least this long, so sensor noise between two
/// readings a second apart is not a rate.
const RATE_SPAN_NS: i64 = 60_000_000_000;

string_enum! {
    /// What quality control made of a reading.
    #[derive(Default, PartialOrd, Ord)]
    pub enum Flag ("quality flag") {
        #[default]
        Good = "good",
        /// Judged only once confirmed (spike, rate), or judged and watched (flatline).
        Suspect = "suspect",
        /// Stored, never judged.
        Bad = "bad",
    }
}

string_enum! {
    /// The test that flagged a reading.
    pub enum QcTest ("quality test") {
        /// Outside the sensor's physical range.
        Range = "range",
        /// A step larger than the metric's `spike` within `spike_within`.
        Spike = "spike",
        /// Faster than the metric's `rate` per hour.
        Rate = "rate",
        /// The same value for longer than `flatline` (during rain).
        Flatline = "flatline",
    }
}

impl QcTest {
    /// 质控 wording for people (messages, the page).
    pub fn name_zh(self) -> &'static str {
        match self {
            QcTest::Range => "超出量程",
            QcTest::Spike => "突变",
            QcTest::Rate => "变化过快",
            QcTest::Flatline => "数值长时间不变",
        }
    }
}

/// A reading flagged by quality control (or a suspect one confirmed).
#[derive(Debug, Clone, PartialEq)]
pub struct QcFlag {
    pub site: Arc<str>,
    pub street: Arc<str>,
    pub kind: crate::config::Kind,
    pub metric: Arc<str>,
    /// The reading's own time (the point in `telemetry_qc`).
    pub ts: TimestampNs,
    pub value: f64,
    pub flag: Flag,
    pub test: QcTest,
    /// A suspect reading that the next reading (or a second sensor) agreed with.
    pub confirmed: bool,
}

/// A metric failing quality control persistently (疑似传感器故障), or passing again.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorFault {
    pub site: Arc<str>,
    pub site_name: Arc<str>,
    pub street: Arc<str>,
    pub kind: crate::config::Kind,
    pub metric: Arc<str>,
    pub unit: Arc<str>,
    pub test: QcTest,
    /// True: the alert opens; false: it closes.
    pub open: bool,
    /// The reading that decided it.
    pub value: Option<f64>,
}

/// A suspect reading waiting for its confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub reading: Reading,
    pub value: f64,
    pub test: QcTest,
    /// When it came (`now`).
    pub at: TimestampNs,
}

/// The latest reading of a metric when it was not good: what the page shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub value: f64,
    pub ts: TimestampNs,
    pub flag: Flag,
    pub test: QcTest,
}

/// What quality control remembers of one metric at one site.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QcState {
    /// The last reading accepted: what steps and rates are measured from.
    last: Option<(TimestampNs, f64)>,
    pub held: Option<Held>,
    /// Where the run of one value began: (time, value).
    flat: Option<(TimestampNs, f64)>,
    /// Failures within the fault window (`now` of each).
    failures: VecDeque<TimestampNs>,
    last_failure: Option<TimestampNs>,
    /// The open maintenance alert: its test and since when.
    pub fault: Option<(QcTest, TimestampNs)>,
    pub shown: Option<Shown>,
    /// The last confirmation of a suspect reading (`now`, test): a level
    /// reached soon after rests on a value that was suspect.
    pub confirmed: Option<(TimestampNs, QcTest)>,
}

/// A metric's quality-control state as data (`engine::snapshot`): the held
/// reading as its time and value, tests by name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedQc {
    last: Option<(TimestampNs, f64)>,
    /// (reading time, value, test, when it came)
    held: Option<(TimestampNs, f64, String, TimestampNs)>,
    flat: Option<(TimestampNs, f64)>,
    failures: Vec<TimestampNs>,
    last_failure: Option<TimestampNs>,
    fault: Option<(String, TimestampNs)>,
    /// (value, time, flag, test)
    shown: Option<(f64, TimestampNs, String, String)>,
    confirmed: Option<(TimestampNs, String)>,
}

impl QcState {
    pub fn save(&self) -> SavedQc {
        SavedQc {
            last: self.last,
            held: self.held.as_ref().map(|h| (h.reading.ts, h.value, h.test.to_string(), h.at)),
            flat: self.flat,
            failures: self.failures.iter().copied().collect(),
            last_failure: self.last_failure,
            fault: self.fault.map(|(t, since)| (t.to_string(), since)),
            shown: self.shown.map(|s| (s.value, s.ts, s.flag.to_string(), s.test.to_string())),
            confirmed: self.confirmed.map(|(at, t)| (at, t.to_string())),
        }
    }

    /// The state saved of `metric` at `site` (a test name this build does
    /// not know drops what carries it).
    pub fn load(s: SavedQc, site: &Arc<str>, metric: &Arc<str>) -> QcState {
        QcState {
            last: s.last,
            held: s.held.and_then(|(ts, value, test, at)| {
                let reading = Reading {
                    site: site.clone(),
                    metric: metric.clone(),
                    value: crate::reading::Value::Float(value),
                    ts,
                };
                Some(Held { reading, value, test: test.parse().ok()?, at })
            }),
            flat: s.flat,
            failures: s.failures.into(),
            last_failure: s.last_failure,
            fault: s.fault.and_then(|(t, since)| Some((t.parse().ok()?, since))),
            shown: s.shown.and_then(|(value, ts, flag, test)| {
                Some(Shown { value, ts, flag: flag.parse().ok()?, test: test.parse().ok()? })
            }),
            confirmed: s.confirmed.and_then(|(at, t)| Some((at, t.parse().ok()?))),
        }
    }
}

/// What to do with a reading.
#[derive(Debug, PartialEq)]
pub enum Screen {
    /// Judge it — after the held reading it confirmed, if any.
    Judge(Option<Reading>),
    /// Stored, not judged (bad, or suspect and waiting).
    Skip,
}

/// Where a flag or fault is about, for the transitions.
pub struct Place<'a> {
    pub sp: &'a SitePlan,
    pub street: &'a Arc<str>,
}

impl Place<'_> {
    fn flag(&self, r: &Reading, value: f64, flag: Flag, test: QcTest, confirmed: bool) -> Change {
        Change::Qc(QcFlag {
            site: self.sp.id.clone(),
            street: self.street.clone(),
            kind: self.sp.kind,
            metric: r.metric.clone(),
            ts: r.ts,
            value,
            flag,
            test,
            confirmed,
        })
    }

    fn fault(&self, metric: &Arc<str>, test: QcTest, open: bool, value: Option<f64>) -> Change {
        Change::SensorFault(SensorFault {
            site: self.sp.id.clone(),
            site_name: self.sp.name.clone(),
            street: self.street.clone(),
            kind: self.sp.kind,
            metric: metric.clone(),
            unit: Arc::from(self.sp.unit(metric)),
            test,
            open,
            value,
        })
    }
}

/// A failure of `metric` at `now`; opens the maintenance alert when they
/// pile up (a flatline at once).
#[allow(clippy::too_many_arguments)]
fn fail(
    policy: &QcPolicy,
    qs: &mut QcState,
    place: &Place<'_>,
    metric: &Arc<str>,
    test: QcTest,
    value: f64,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) {
    qs.failures.push_back(now);
    qs.last_failure = Some(now);
    while qs.failures.front().is_some_and(|t| now - *t > policy.fault_window_ns) {
        qs.failures.pop_front();
    }
    let persistent = test == QcTest::Flatline || qs.failures.len() >= policy.fault_after as usize;
    if qs.fault.is_none() && persistent {
        qs.fault = Some((test, now));
        out.push(Transition { at: now, change: place.fault(metric, test, true, Some(value)) });
    }
}

/// Does the flatline test of this reading need the street's rain?
pub fn needs_rain(mq: &MetricQc, qs: &QcState, r: &Reading, v: f64) -> bool {
    match (mq.flatline, qs.flat) {
        (Some(f), Some((since, fv))) => {
            f.rain_mm.is_some() && (v - fv).abs() <= f.tolerance && r.ts - since >= f.after_ns
        }
        _ => false,
    }
}

/// Screens one reading of a tested metric (`v`: its number). `rained`:
/// whether the street's gauges measured the flatline's rain within its
/// window, when `needs_rain` asked;
/// `second`: the latest (time, value) of the metric's `confirm_with` sensors.
#[allow(clippy::too_many_arguments)]
pub fn screen(
    policy: &QcPolicy,
    mq: &MetricQc,
    qs: &mut QcState,
    place: &Place<'_>,
    r: &Reading,
    v: f64,
    rained: Option<bool>,
    second: &[(TimestampNs, f64)],
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> Screen {
    let metric = &r.metric;
    if let Some((lo, hi)) = mq.range {
        if !(lo..=hi).contains(&v) {
            out.push(Transition { at: now, change: place.flag(r, v, Flag::Bad, QcTest::Range, false) });
            qs.shown = Some(Shown { value: v, ts: r.ts, flag: Flag::Bad, test: QcTest::Range });
            fail(policy, qs, place, metric, QcTest::Range, v, now, out);
            return Screen::Skip;
        }
    }
    // Late or repeated readings are judged (or not) by the rules as before:
    // steps and runs are measured forward only.
    if qs.last.is_some_and(|(ts, _)| r.ts <= ts) {
        return Screen::Judge(None);
    }
    let agree = mq.agree();
    if let Some(h) = qs.held.take() {
        if (v - h.value).abs() <= agree && now - h.at <= policy.confirm_within_ns {
            // The jump is real: both are judged, the held one first.
            out.push(Transition {
                at: now,
                change: place.flag(&h.reading, h.value, Flag::Suspect, h.test, true),
            });
            qs.confirmed = Some((now, h.test));
            qs.last = Some((r.ts, v));
            qs.flat = Some((r.ts, v));
            qs.shown = None;
            return Screen::Judge(Some(h.reading));
        }
        // A one-off the next reading did not repeat.
        fail(policy, qs, place, metric, h.test, h.value, now, out);
    }
    let test = qs.last.and_then(|(lts, lv)| {
        let (dt, step) = (r.ts - lts, (v - lv).abs());
        match (mq.spike, mq.rate_per_h) {
            (Some((max, within)), _) if dt <= within && step > max => Some(QcTest::Spike),
            (_, Some(rate)) if step / (dt.max(RATE_SPAN_NS) as f64 / NS_PER_HOUR) > rate => {
                Some(QcTest::Rate)
            }
            _ => None,
        }
    });
    if let Some(test) = test {
        let seconded = second
            .iter()
            .any(|(ts, x)| (r.ts - ts).abs() <= policy.confirm_within_ns && (x - v).abs() <= agree);
        if seconded {
            out.push(Transition { at: now, change: place.flag(r, v, Flag::Suspect, test, true) });
            qs.confirmed = Some((now, test));
        } else {
            out.push(Transition { at: now, change: place.flag(r, v, Flag::Suspect, test, false) });
            qs.shown = Some(Shown { value: v, ts: r.ts, flag: Flag::Suspect, test });
            qs.held = Some(Held { reading: r.clone(), value: v, test, at: now });
            return Screen::Skip;
        }
    }
    qs.last = Some((r.ts, v));
    qs.shown = None;
    let flat_since = match (mq.flatline, qs.flat) {
        (Some(f), Some((since, fv))) if (v - fv).abs() <= f.tolerance => since,
        _ => {
            qs.flat = Some((r.ts, v));
            r.ts
        }
    };
    if let Some(f) = mq.flatline {
        let raining = f.rain_mm.is_none() || rained == Some(true);
        if r.ts - flat_since >= f.after_ns && raining {
            out.push(Transition {
                at: now,
                change: place.flag(r, v, Flag::Suspect, QcTest::Flatline, false),
            });
            qs.shown = Some(Shown { value: v, ts: r.ts, flag: Flag::Suspect, test: QcTest::Flatline });
            fail(policy, qs, place, metric, QcTest::Flatline, v, now, out);
            return Screen::Judge(None);
        }
    }
    // Passing again: the maintenance alert closes after `fault_clear`
    // (a flatline's only once the value has moved since it opened).
    if let Some((t, since)) = qs.fault {
        let quiet = qs.last_failure.is_none_or(|f| now - f >= policy.fault_clear_ns);
        let moved = t != QcTest::Flatline || flat_since > since;
        if quiet && moved {
            qs.fault = None;
            qs.failures.clear();
            out.push(Transition { at: now, change: place.fault(metric, t, false, Some(v)) });
        }
    }
    Screen::Judge(None)
}

/// Time passes: a held reading nobody confirmed in time is dropped (a failure).
pub fn expire(
    policy: &QcPolicy,
    mq: &MetricQc,
    qs: &mut QcState,
    place: &Place<'_>,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) {
    if qs.held.as_ref().is_some_and(|h| now - h.at > policy.confirm_within_ns) {
        let h = qs.held.take().expect("held");
        fail(policy, qs, place, &mq.metric, h.test, h.value, now, out);
    }
}

/// A reading of `metric` was accepted: a held reading of another sensor of
/// the site that it agrees with is confirmed — returned to be judged.
#[allow(clippy::too_many_arguments)]
pub fn second_sensor(
    policy: &QcPolicy,
    mq: &MetricQc,
    qs: &mut QcState,
    place: &Place<'_>,
    metric: &str,
    ts: TimestampNs,
    v: f64,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) -> Option<Reading> {
    let h = qs.held.as_ref()?;
    let agrees = mq.confirm_with.iter().any(|m| &**m == metric)
        && (h.reading.ts - ts).abs() <= policy.confirm_within_ns
        && (h.value - v).abs() <= mq.agree();
    if !agrees {
        return None;
    }
    let h = qs.held.take().expect("held");
    out.push(Transition { at: now, change: place.flag(&h.reading, h.value, Flag::Suspect, h.test, true) });
    qs.confirmed = Some((now, h.test));
    qs.last = Some((h.reading.ts, h.value));
    qs.flat = Some((h.reading.ts, h.value));
    qs.shown = None;
    Some(h.reading)
}

#[cfg(test)]
#[path = "qc_tests.rs"]
mod tests;
