//! Recent history of one metric and its robust slope (Theil–Sen: the median
//! of the slopes between every pair of points), which a single noisy reading
//! cannot swing the way it swings a least-squares fit.

use std::collections::VecDeque;

use crate::reading::TimestampNs;

/// At most this many points are kept per metric.
const MAX_POINTS: usize = 256;
/// At most this many points, evenly spaced, enter a slope (120 pairs):
/// enough for the median to shrug off a few wild readings, cheap enough to
/// judge rates at every reading.
const SLOPE_POINTS: usize = 16;
const NS_PER_HOUR: f64 = 3_600e9;

/// Points in time order, at most `max_age_ns` older than the newest.
#[derive(Debug, Clone, Default)]
pub struct Series {
    points: VecDeque<(TimestampNs, f64)>,
    max_age_ns: i64,
}

impl Series {
    pub fn new(max_age_ns: i64) -> Self {
        Series { points: VecDeque::new(), max_age_ns }
    }

    /// Adds a point; a point at a time already present is ignored, one older
    /// than the newest is put in its place.
    pub fn push(&mut self, ts: TimestampNs, v: f64) {
        match self.points.back() {
            Some(&(last, _)) if ts > last => self.points.push_back((ts, v)),
            None => self.points.push_back((ts, v)),
            Some(_) => match self.points.binary_search_by_key(&ts, |p| p.0) {
                Ok(_) => return,
                Err(i) => self.points.insert(i, (ts, v)),
            },
        }
        let newest = self.points.back().map_or(ts, |p| p.0);
        while self.points.len() > MAX_POINTS
            || self.points.front().is_some_and(|p| newest - p.0 > self.max_age_ns)
        {
            self.points.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Every point, oldest first (for the engine's snapshot).
    pub fn points(&self) -> impl Iterator<Item = (TimestampNs, f64)> + '_ {
        self.points.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<(TimestampNs, f64)> {
        self.points.back().copied()
    }

    /// Points with `ts > since`.
    pub fn since(&self, since: TimestampNs) -> impl Iterator<Item = &(TimestampNs, f64)> {
        let start = self.points.partition_point(|p| p.0 <= since);
        self.points.range(start..)
    }

    /// Robust slope in units per hour over the points newer than `since`;
    /// `None` with fewer than 3 points or less than `min_span_ns` between the
    /// first and the last.
    pub fn slope_per_hour(&self, since: TimestampNs, min_span_ns: i64) -> Option<f64> {
        let start = self.points.partition_point(|p| p.0 <= since);
        let n = self.points.len() - start;
        if n < 3 {
            return None;
        }
        let first = self.points[start].0;
        let last = self.points[self.points.len() - 1].0;
        if last - first < min_span_ns.max(1) {
            return None;
        }
        // Evenly spaced subsample, always keeping the newest point.
        let take = n.min(SLOPE_POINTS);
        let pts: Vec<(f64, f64)> = (0..take)
            .map(|k| {
                let i = start + (n - 1) - (k * (n - 1)) / (take - 1);
                let (t, v) = self.points[i];
                ((t - first) as f64 / NS_PER_HOUR, v)
            })
            .collect();
        let mut slopes = Vec::with_capacity(take * (take - 1) / 2);
        for i in 0..pts.len() {
            for j in i + 1..pts.len() {
                let dt = pts[j].0 - pts[i].0;
                if dt != 0.0 {
                    slopes.push((pts[j].1 - pts[i].1) / dt);
                }
            }
        }
        median(&mut slopes)
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let m = *m;
    if v.len() % 2 == 1 {
        Some(m)
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((lower + m) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    #[test]
    fn a_steady_rise_has_its_slope() {
        let mut s = Series::new(60 * MIN);
        for i in 0..20 {
            s.push(i * MIN, 1.0 + 0.01 * i as f64); // 1 cm/min = 0.6 m/h
        }
        assert!((s.slope_per_hour(-1, 0).unwrap() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn one_wild_reading_does_not_swing_it() {
        let mut s = Series::new(60 * MIN);
        for i in 0..15 {
            let v = if i == 7 { 9.0 } else { 2.0 + 0.1 * i as f64 };
            s.push(i * MIN, v);
        }
        assert!((s.slope_per_hour(-1, 0).unwrap() - 6.0).abs() < 1e-6);
    }

    #[test]
    fn too_few_points_or_too_short_a_span_give_none() {
        let mut s = Series::new(60 * MIN);
        s.push(0, 1.0);
        s.push(MIN, 2.0);
        assert_eq!(s.slope_per_hour(-1, 0), None);
        s.push(2 * MIN, 3.0);
        assert!(s.slope_per_hour(-1, 0).is_some());
        assert_eq!(s.slope_per_hour(-1, 5 * MIN), None);
    }

    #[test]
    fn late_and_duplicate_points() {
        let mut s = Series::new(60 * MIN);
        s.push(0, 1.0);
        s.push(2 * MIN, 3.0);
        s.push(MIN, 2.0);
        s.push(MIN, 99.0);
        let pts: Vec<_> = s.since(-1).copied().collect();
        assert_eq!(pts, [(0, 1.0), (MIN, 2.0), (2 * MIN, 3.0)]);
    }

    #[test]
    fn old_points_age_out() {
        let mut s = Series::new(10 * MIN);
        for i in 0..30 {
            s.push(i * MIN, i as f64);
        }
        assert_eq!(s.len(), 11);
        assert_eq!(s.since(25 * MIN).count(), 4);
    }

    #[test]
    fn many_points_are_subsampled_with_the_same_answer() {
        let mut s = Series::new(1000 * MIN);
        for i in 0..200 {
            s.push(i * MIN, 0.5 * i as f64 / 60.0);
        }
        assert!((s.slope_per_hour(-1, 0).unwrap() - 0.5).abs() < 1e-9);
    }
}
