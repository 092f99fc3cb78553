//! Capped exponential backoff with full jitter, shared by the MQTT reconnect
//! loop and the InfluxDB writer.
//!
//! Attempt `n` (0-based) waits a uniformly random time in
//! `[min, min(max, min · 2ⁿ)]`: retries spread out instead of arriving in
//! step, and never wait longer than `max`.

use std::time::Duration;

use rand::Rng;

/// The delay before retry `attempt`, for a jitter draw `jitter` in `[0, 1)`.
pub fn delay(min: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let ceiling = min.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(max).max(min);
    let span = ceiling - min;
    min + span.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Backoff state of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, attempt: 0 }
    }

    /// The next delay; each call doubles the ceiling up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay(self.min, self.max, self.attempt, rand::rng().random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let top = |n| delay(MIN, MAX, n, 1.0);
        assert_eq!(top(0), MIN);
        assert_eq!(top(1), Duration::from_millis(400));
        assert_eq!(top(3), Duration::from_millis(1600));
        assert_eq!(top(8), MAX);
        assert_eq!(top(1000), MAX);
    }

    #[test]
    fn jitter_spans_from_min_to_the_ceiling() {
        assert_eq!(delay(MIN, MAX, 3, 0.0), MIN);
        assert_eq!(delay(MIN, MAX, 3, 0.5), Duration::from_millis(900));
    }

    #[test]
    fn draws_stay_in_bounds_and_reset() {
        let mut b = Backoff::new(MIN, MAX);
        for n in 0..40 {
            let d = b.next_delay();
            assert!(d >= MIN && d <= delay(MIN, MAX, n, 1.0), "attempt {n}: {d:?}");
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= MIN);
    }
}
