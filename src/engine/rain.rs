//! Rain accumulated over rolling windows, from tipping-bucket increments or
//! from running totals that reset.

use std::collections::BTreeMap;

use crate::plan::RainInput;
use crate::reading::TimestampNs;

/// The samples of one gauge, by time; duplicates collapse, late ones slot in.
#[derive(Debug, Clone, Default)]
pub struct Rain {
    samples: BTreeMap<TimestampNs, f64>,
    /// Samples older than the newest by more than this are dropped.
    keep_ns: i64,
}

impl Rain {
    pub fn new(longest_window_ns: i64) -> Self {
        Rain { samples: BTreeMap::new(), keep_ns: longest_window_ns.saturating_add(3_600_000_000_000) }
    }

    pub fn push(&mut self, ts: TimestampNs, v: f64) {
        self.samples.insert(ts, v);
        if let Some((&newest, _)) = self.samples.last_key_value() {
            let cutoff = newest - self.keep_ns;
            while self.samples.first_key_value().is_some_and(|(&t, _)| t < cutoff) {
                self.samples.pop_first();
            }
        }
    }

    /// Rain in `(now − window, now]`.
    pub fn sum(&self, input: RainInput, now: TimestampNs, window_ns: i64) -> f64 {
        let from = now - window_ns;
        match input {
            RainInput::Increment => self.samples.range(from + 1..=now).map(|(_, v)| v.max(0.0)).sum(),
            RainInput::Counter => {
                // The rain of a sample is its rise over the sample before it;
                // a total lower than the one before means the counter reset,
                // and all of it fell since.
                let mut prev = self.samples.range(..=from).next_back().map(|(_, v)| *v);
                let mut total = 0.0;
                for (_, &v) in self.samples.range(from + 1..=now) {
                    total += match prev {
                        Some(p) if v >= p => v - p,
                        Some(_) => v,
                        None => 0.0,
                    };
                    prev = Some(v);
                }
                total
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;
    const MIN: i64 = 60_000_000_000;

    #[test]
    fn increments_sum_over_the_window() {
        let mut r = Rain::new(12 * H);
        for i in 0..60 {
            r.push(i * MIN, 1.0); // 1 mm/min for an hour
        }
        let now = 59 * MIN;
        assert_eq!(r.sum(RainInput::Increment, now, H), 60.0);
        assert_eq!(r.sum(RainInput::Increment, now, 30 * MIN), 30.0);
        // The window slides on with time alone.
        assert_eq!(r.sum(RainInput::Increment, now + 30 * MIN, H), 30.0);
    }

    #[test]
    fn duplicates_and_late_samples() {
        let mut r = Rain::new(12 * H);
        r.push(2 * MIN, 1.0);
        r.push(2 * MIN, 1.0);
        r.push(MIN, 0.5);
        assert_eq!(r.sum(RainInput::Increment, 3 * MIN, H), 1.5);
    }

    #[test]
    fn a_counter_that_resets() {
        let mut r = Rain::new(12 * H);
        // 10 → 30 → (reset at midnight) 5 → 15
        for (i, v) in [10.0, 30.0, 5.0, 15.0].into_iter().enumerate() {
            r.push(i as i64 * 10 * MIN, v);
        }
        let now = 30 * MIN;
        assert_eq!(r.sum(RainInput::Counter, now, H), 20.0 + 5.0 + 10.0);
        // Only what fell inside the window: the last two samples.
        assert_eq!(r.sum(RainInput::Counter, now, 15 * MIN), 5.0 + 10.0);
    }
}
