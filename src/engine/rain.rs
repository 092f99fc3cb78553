//! Rain accumulated over rolling windows, from tipping-bucket increments or
//! from running totals that reset.
//!
//! A running total that drops by more than `reset_drop` was reset (at
//! midnight, after a power loss): all of its new value fell since. A
//! smaller drop is the counter's jitter (500.0 → 499.9): no rain, and the
//! rain after it counts from the highest total before it, not from the dip.
//!
//! Samples are kept in time order with a running sum of the rain each one
//! brought, so the rain of any window is one subtraction after two binary
//! searches — rain gauges are judged at every reading and every tick.

use std::collections::VecDeque;

use crate::plan::RainInput;
use crate::reading::TimestampNs;

#[derive(Debug, Clone)]
pub struct Rain {
    input: RainInput,
    /// (time, value as reported), in time order, one per time.
    samples: VecDeque<(TimestampNs, f64)>,
    /// `cum[k]`: the rain brought by samples `0..=k` (since the first kept).
    cum: VecDeque<f64>,
    /// Counters: `base[k]`, the total the rain after sample `k` counts from
    /// (the highest since the last reset).
    base: VecDeque<f64>,
    /// Counters: a drop larger than this is a reset.
    reset_drop: f64,
    /// Samples older than the newest by more than this are dropped.
    keep_ns: i64,
}

impl Default for Rain {
    fn default() -> Self {
        Rain::new(RainInput::Increment, 0, crate::plan::qc::DEFAULT_COUNTER_RESET)
    }
}

impl Rain {
    pub fn new(input: RainInput, longest_window_ns: i64, reset_drop: f64) -> Self {
        Rain {
            input,
            samples: VecDeque::new(),
            cum: VecDeque::new(),
            base: VecDeque::new(),
            reset_drop,
            keep_ns: longest_window_ns.saturating_add(3_600_000_000_000),
        }
    }

    /// The rain sample `k` brought, and (counters) the base after it.
    fn rain_of(&self, k: usize) -> (f64, f64) {
        let v = self.samples[k].1;
        match self.input {
            RainInput::Increment => (v.max(0.0), 0.0),
            RainInput::Counter => match k.checked_sub(1).map(|p| self.base[p]) {
                Some(base) if v >= base => (v - base, v),
                // Jitter: nothing fell, and the base stays.
                Some(base) if base - v <= self.reset_drop => (0.0, base),
                // A reset: all of it fell since.
                Some(_) => (v, v),
                None => (0.0, v),
            },
        }
    }

    fn rebuild_from(&mut self, k: usize) {
        self.cum.truncate(k);
        self.base.truncate(k);
        for j in k..self.samples.len() {
            let before = j.checked_sub(1).map_or(0.0, |p| self.cum[p]);
            // The base is pushed first: `rain_of(j)` reads `base[j - 1]`.
            let (rain, base) = self.rain_of(j);
            self.cum.push_back(before + rain);
            self.base.push_back(base);
        }
    }

    pub fn push(&mut self, ts: TimestampNs, v: f64) {
        match self.samples.back() {
            Some(&(last, _)) if ts <= last => match self.samples.binary_search_by_key(&ts, |s| s.0) {
                Ok(_) => return, // the same report again
                Err(k) => {
                    // Late: slot it in and redo the sums from there.
                    self.samples.insert(k, (ts, v));
                    self.rebuild_from(k);
                }
            },
            _ => {
                self.samples.push_back((ts, v));
                let k = self.samples.len() - 1;
                let before = k.checked_sub(1).map_or(0.0, |p| self.cum[p]);
                let (rain, base) = self.rain_of(k);
                self.cum.push_back(before + rain);
                self.base.push_back(base);
            }
        }
        let newest = self.samples.back().map_or(ts, |s| s.0);
        while self.samples.front().is_some_and(|s| newest - s.0 > self.keep_ns) {
            self.samples.pop_front();
            self.cum.pop_front();
            self.base.pop_front();
        }
    }

    /// Every sample as reported, oldest first (for the engine's snapshot).
    pub fn samples(&self) -> impl Iterator<Item = (TimestampNs, f64)> + '_ {
        self.samples.iter().copied()
    }

    /// The running sum at time `t`: the rain of every sample up to and including `t`.
    fn cum_at(&self, t: TimestampNs) -> f64 {
        let n = self.samples.partition_point(|s| s.0 <= t);
        n.checked_sub(1).map_or(0.0, |k| self.cum[k])
    }

    /// Rain in `(now − window, now]`.
    pub fn sum(&self, now: TimestampNs, window_ns: i64) -> f64 {
        (self.cum_at(now) - self.cum_at(now - window_ns)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;
    const MIN: i64 = 60_000_000_000;

    #[test]
    fn increments_sum_over_the_window() {
        let mut r = Rain::new(RainInput::Increment, 12 * H, 0.5);
        for i in 0..60 {
            r.push(i * MIN, 1.0); // 1 mm/min for an hour
        }
        let now = 59 * MIN;
        assert_eq!(r.sum(now, H), 60.0);
        assert_eq!(r.sum(now, 30 * MIN), 30.0);
        // The window slides on with time alone.
        assert_eq!(r.sum(now + 30 * MIN, H), 30.0);
    }

    #[test]
    fn duplicates_and_late_samples() {
        let mut r = Rain::new(RainInput::Increment, 12 * H, 0.5);
        r.push(2 * MIN, 1.0);
        r.push(2 * MIN, 1.0);
        r.push(MIN, 0.5);
        assert_eq!(r.sum(3 * MIN, H), 1.5);
        assert_eq!(r.sum(MIN, H), 0.5);
    }

    #[test]
    fn a_counter_that_resets() {
        let mut r = Rain::new(RainInput::Counter, 12 * H, 0.5);
        // 10 → 30 → (reset at midnight) 5 → 15
        for (i, v) in [10.0, 30.0, 5.0, 15.0].into_iter().enumerate() {
            r.push(i as i64 * 10 * MIN, v);
        }
        let now = 30 * MIN;
        assert_eq!(r.sum(now, H), 20.0 + 5.0 + 10.0);
        // Only what fell inside the window: the last two samples.
        assert_eq!(r.sum(now, 15 * MIN), 5.0 + 10.0);
    }

    #[test]
    fn counter_jitter_adds_no_rain_and_a_real_reset_adds_what_fell_since() {
        let mut r = Rain::new(RainInput::Counter, 12 * H, 0.5);
        // 500.0 → 499.9 (jitter) → 500.0 → 500.3: 0.3 mm fell, not 499.9 or 0.4.
        for (i, v) in [500.0, 499.9, 500.0, 500.3].into_iter().enumerate() {
            r.push(i as i64 * MIN, v);
        }
        assert!((r.sum(3 * MIN, H) - 0.3).abs() < 1e-9, "{}", r.sum(3 * MIN, H));
        // A real reset (500.3 → 0.2): 0.2 mm.
        r.push(4 * MIN, 0.2);
        assert!((r.sum(4 * MIN, H) - 0.5).abs() < 1e-9, "{}", r.sum(4 * MIN, H));
        assert!((r.sum(4 * MIN, MIN / 2) - 0.2).abs() < 1e-9);
        // A late jitter sample slotted in keeps the sums right.
        r.push(2 * MIN + MIN / 2, 499.95);
        assert!((r.sum(4 * MIN, H) - 0.5).abs() < 1e-9, "{}", r.sum(4 * MIN, H));
    }

    #[test]
    fn a_late_counter_sample_redoes_the_rises_after_it() {
        let mut r = Rain::new(RainInput::Counter, 12 * H, 0.5);
        r.push(0, 10.0);
        r.push(20 * MIN, 30.0);
        r.push(10 * MIN, 18.0);
        assert_eq!(r.sum(20 * MIN, H), 20.0);
        assert_eq!(r.sum(20 * MIN, 5 * MIN), 12.0, "30 − 18, not 30 − 10");
    }

    #[test]
    fn old_samples_go_and_the_sums_stay_right() {
        let mut r = Rain::new(RainInput::Increment, H, 0.5);
        for i in 0..300 {
            r.push(i * MIN, 1.0);
        }
        assert!(r.samples.len() <= 122, "{}", r.samples.len());
        assert_eq!(r.sum(299 * MIN, H), 60.0);
    }
}
