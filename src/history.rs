//! Recent history per (site, metric) for the page's charts: a bounded ring
//! of fixed-width buckets, filled from ingested readings.
//!
//! The engine keeps only its trend window and the daemon may run spool-only
//! (no InfluxDB), so the live layer keeps the last [`SPAN_S`] itself. Memory
//! is bounded per series: at most [`CAPACITY`] buckets of 8 bytes
//! (`u32` seconds, `f32` value), about 1.5 KB, so 10k sites with one charted
//! metric each stay near 15 MB. Only metrics the caller asks for are kept
//! (the live layer keeps a site's primary metric and those with level rules).
//!
//! Pure: time comes from the readings; nothing here reads a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::reading::TimestampNs;

/// How far back the history reaches, seconds.
pub const SPAN_S: u32 = 6 * 3600;
/// Width of one bucket, seconds.
pub const BUCKET_S: u32 = 120;
/// Buckets per series.
pub const CAPACITY: usize = (SPAN_S / BUCKET_S) as usize;

/// Which value of a bucket is kept: the one that matters for the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The highest (depths, levels: higher is worse).
    Max,
    /// The lowest (a manhole's distance to the water: lower is worse).
    Min,
    /// The sum (rain increments: millimetres per bucket).
    Sum,
    /// The latest.
    Last,
}

/// One bucket: its start (seconds since the epoch) and kept value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: u32,
    pub v: f32,
}

/// The buckets of one series, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    keep: Keep,
    points: VecDeque<Point>,
}

impl Series {
    pub fn new(keep: Keep) -> Self {
        Series { keep, points: VecDeque::new() }
    }

    pub fn keep(&self) -> Keep {
        self.keep
    }

    fn merge(keep: Keep, old: f32, new: f32) -> f32 {
        match keep {
            Keep::Max => old.max(new),
            Keep::Min => old.min(new),
            Keep::Sum => old + new,
            Keep::Last => new,
        }
    }

    /// Adds a value at `secs` (seconds since the epoch). Values older than
    /// the span behind the newest bucket are dropped.
    pub fn push(&mut self, secs: u32, value: f32) {
        let t = secs - secs % BUCKET_S;
        let newest = self.points.back().map(|p| p.t);
        match newest {
            Some(n) if t == n => {
                let p = self.points.back_mut().expect("newest");
                p.v = Self::merge(self.keep, p.v, value);
            }
            Some(n) if t < n => {
                if n - t >= SPAN_S {
                    return;
                }
                // Late reading: into its bucket, or a new one in order.
                match self.points.binary_search_by_key(&t, |p| p.t) {
                    Ok(i) => self.points[i].v = Self::merge(self.keep, self.points[i].v, value),
                    Err(i) => self.points.insert(i, Point { t, v: value }),
                }
            }
            _ => self.points.push_back(Point { t, v: value }),
        }
        let newest = self.points.back().expect("one point").t;
        while self.points.front().is_some_and(|p| newest - p.t >= SPAN_S) || self.points.len() > CAPACITY {
            self.points.pop_front();
        }
        // Grow to the cap exactly, not to the next power of two.
        if self.points.len() == self.points.capacity() && self.points.len() >= CAPACITY / 2 {
            self.points.reserve_exact(CAPACITY + 1 - self.points.len());
        }
    }

    /// Buckets starting at or after `since` (seconds), oldest first.
    pub fn since(&self, since: u32) -> impl Iterator<Item = Point> + '_ {
        let start = self.points.partition_point(|p| p.t + BUCKET_S <= since);
        self.points.range(start..).copied()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Whether (and how) the page charts `metric` of a site: its primary metric
/// and every metric with a level rule; `None` for the rest (flags, battery).
pub fn keep_for(site: &crate::plan::SitePlan, metric: &str) -> Option<Keep> {
    use crate::plan::{Check, Direction, RainInput};
    let mut charted = site.primary.as_deref() == Some(metric);
    for r in site.rules.iter() {
        match &r.check {
            Check::Level { metric: m, direction, .. } if &**m == metric => {
                return Some(if *direction == Direction::Below { Keep::Min } else { Keep::Max });
            }
            Check::Rain { metric: m, input, .. } if &**m == metric => {
                return Some(if *input == RainInput::Increment { Keep::Sum } else { Keep::Last });
            }
            Check::Rate { metric: m, .. } if &**m == metric => charted = true,
            _ => {}
        }
    }
    charted.then_some(Keep::Max)
}

/// Seconds since the epoch of a nanosecond timestamp, clamped to `u32`.
pub fn secs(ts: TimestampNs) -> u32 {
    (ts.div_euclid(1_000_000_000)).clamp(0, i64::from(u32::MAX)) as u32
}

/// Every kept series.
#[derive(Debug, Default)]
pub struct History {
    series: HashMap<(Arc<str>, Arc<str>), Series>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `value` of (`site`, `metric`) at `ts`, kept as `keep` says
    /// (a series keeps the rule it was created with until [`History::retain`]).
    pub fn record(&mut self, site: &Arc<str>, metric: &Arc<str>, ts: TimestampNs, value: f64, keep: Keep) {
        let key = (site.clone(), metric.clone());
        let s = self.series.entry(key).or_insert_with(|| Series::new(keep));
        if s.keep != keep {
            *s = Series::new(keep);
        }
        s.push(secs(ts), value as f32);
    }

    pub fn get(&self, site: &str, metric: &str) -> Option<&Series> {
        // The key is (Arc<str>, Arc<str>); look up without allocating twice.
        self.series.get(&(Arc::from(site), Arc::from(metric)))
    }

    /// Keeps only the series `f` accepts (after a reload drops sites).
    pub fn retain(&mut self, mut f: impl FnMut(&str, &str) -> bool) {
        self.series.retain(|(s, m), _| f(s, m));
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u32 = 1_784_613_600; // a bucket boundary (divisible by 120)

    fn values(s: &Series) -> Vec<(u32, f32)> {
        s.since(0).map(|p| (p.t - T0, p.v)).collect()
    }

    #[test]
    fn a_bucket_keeps_what_its_rule_says() {
        for (keep, want) in [(Keep::Max, 9.0), (Keep::Min, 2.0), (Keep::Sum, 16.0), (Keep::Last, 5.0)] {
            let mut s = Series::new(keep);
            for (dt, v) in [(0, 2.0), (30, 9.0), (119, 5.0)] {
                s.push(T0 + dt, v);
            }
            assert_eq!(values(&s), [(0, want)], "{keep:?}");
        }
    }

    #[test]
    fn buckets_follow_time_and_late_readings_find_theirs() {
        let mut s = Series::new(Keep::Max);
        s.push(T0 + 10, 1.0);
        s.push(T0 + 250, 3.0);
        s.push(T0 + 130, 2.0); // late, a bucket of its own in between
        s.push(T0 + 20, 4.0); // late, into the first
        assert_eq!(values(&s), [(0, 4.0), (120, 2.0), (240, 3.0)]);
    }

    #[test]
    fn the_span_and_the_capacity_bound_a_series() {
        let mut s = Series::new(Keep::Last);
        for i in 0..1000u32 {
            s.push(T0 + i * 60, i as f32);
        }
        assert_eq!(s.len(), CAPACITY);
        assert!(s.points.capacity() <= CAPACITY + 1, "capacity {}", s.points.capacity());
        let pts: Vec<Point> = s.since(0).collect();
        let newest = pts.last().unwrap().t;
        assert!(newest - pts[0].t < SPAN_S);
        assert_eq!(pts.last().unwrap().v, 999.0);
        // Older than the span behind the newest: dropped.
        s.push(newest - SPAN_S, -1.0);
        assert!(s.since(0).all(|p| p.v >= 0.0));
        // A jump ahead drops everything older than the span.
        s.push(newest + 2 * SPAN_S, 7.0);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn since_includes_the_bucket_that_holds_it() {
        let mut s = Series::new(Keep::Max);
        for i in 0..5 {
            s.push(T0 + i * BUCKET_S, i as f32);
        }
        let from: Vec<u32> = s.since(T0 + 2 * BUCKET_S + 5).map(|p| (p.t - T0) / BUCKET_S).collect();
        assert_eq!(from, [2, 3, 4]);
        assert_eq!(s.since(T0 + 10 * BUCKET_S).count(), 0);
    }

    #[test]
    fn history_by_site_and_metric() {
        let mut h = History::new();
        let (a, b, m) = (Arc::from("A"), Arc::from("B"), Arc::from("water_depth_cm"));
        let ns = |s: u32| i64::from(s) * 1_000_000_000;
        h.record(&a, &m, ns(T0), 12.5, Keep::Max);
        h.record(&a, &m, ns(T0 + 1), 13.5, Keep::Max);
        h.record(&b, &m, ns(T0), 1.0, Keep::Min);
        assert_eq!(h.len(), 2);
        assert_eq!(values(h.get("A", "water_depth_cm").unwrap()), [(0, 13.5)]);
        assert!(h.get("A", "rain_mm").is_none());
        h.retain(|site, _| site != "B");
        assert!(h.get("B", "water_depth_cm").is_none());
        assert_eq!(secs(-5), 0);
    }

    #[test]
    fn a_point_is_eight_bytes() {
        // 10k series × CAPACITY points stays small (see the module docs).
        assert_eq!(std::mem::size_of::<Point>(), 8);
        const { assert!(10_000 * CAPACITY * 8 < 16 << 20) };
    }
}
