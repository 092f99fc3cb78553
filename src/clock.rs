//! The daemon's clock: wall time, or — for `floodguard demo` — storm time,
//! a compressed clock that runs `speed` times faster than the wall from an
//! epoch:
//!
//! ```text
//! now = epoch + (wall − epoch) × speed
//! ```
//!
//! The engine is pure (time is an argument); this is what the edges pass
//! it. In demo mode every edge that reads the time for the plan reads this
//! clock: the engine stage's ticks and the readings' judgement time (rain
//! windows, staleness, sustain in time), the alert stage's follow-up
//! (repeats, escalations, group windows), the outbox (when a row is due,
//! when it was sent), the MQTT intake's receive time (readings without a
//! `ts`, the future-timestamp check) and the HTTP API (acks, disposals, the
//! sites' view). The simulator, given the same clock, stamps each reading
//! with the storm time at which it is published, so a 6-hour storm at 60×
//! runs in 6 wall minutes and looks as the real one would: rain levels build
//! over the windows, a silent gauge goes offline after its `stale_after` of
//! storm time, escalations come at their plan times / 60.
//!
//! What stays in wall time: stage heartbeats and stall detection, the
//! storage lag behind `/readyz`, retry backoff sleeps, the SL 651 and Modbus
//! intakes (the demo does not use them).

use crate::reading::TimestampNs;

/// Wall time, or wall time compressed by `speed` from `epoch_ns`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// The wall time (ns since the Unix epoch) where both clocks agree.
    epoch_ns: TimestampNs,
    /// Clock seconds per wall second (1: wall time).
    speed: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::wall()
    }
}

/// The wall clock, ns since the Unix epoch.
pub fn wall_ns() -> TimestampNs {
    crate::reading::to_ns(chrono::Utc::now())
}

impl Clock {
    /// Wall time.
    pub const fn wall() -> Clock {
        Clock { epoch_ns: 0, speed: 1.0 }
    }

    /// Runs `speed` times faster than the wall from `epoch_ns` (a wall time,
    /// where both agree). A speed that is not a positive finite number is
    /// refused.
    pub fn compressed(epoch_ns: TimestampNs, speed: f64) -> Option<Clock> {
        (speed.is_finite() && speed > 0.0).then_some(Clock { epoch_ns, speed })
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn epoch_ns(&self) -> TimestampNs {
        self.epoch_ns
    }

    /// Is this the wall clock?
    pub fn is_wall(&self) -> bool {
        self.speed == 1.0
    }

    /// The clock's time now.
    pub fn now(&self) -> TimestampNs {
        self.at(wall_ns())
    }

    /// The clock's time when the wall shows `wall` (pure).
    pub fn at(&self, wall: TimestampNs) -> TimestampNs {
        if self.is_wall() {
            return wall;
        }
        let elapsed = (wall - self.epoch_ns) as f64 * self.speed;
        self.epoch_ns.saturating_add(elapsed.round() as i64)
    }

    /// The wall time when the clock shows `t` (pure; the inverse of [`Clock::at`]).
    pub fn wall_at(&self, t: TimestampNs) -> TimestampNs {
        if self.is_wall() {
            return t;
        }
        let elapsed = (t - self.epoch_ns) as f64 / self.speed;
        self.epoch_ns.saturating_add(elapsed.round() as i64)
    }

    /// How long the wall takes for `d` of clock time.
    pub fn wall_duration(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn the_wall_clock_is_the_wall() {
        let c = Clock::wall();
        assert!(c.is_wall());
        assert_eq!(c.at(123), 123);
        assert_eq!(c.wall_at(456), 456);
        let before = wall_ns();
        let now = c.now();
        assert!(now >= before && now - before < 5 * S);
    }

    #[test]
    fn a_compressed_clock_runs_speed_times_faster_from_its_epoch() {
        let epoch = 1_784_606_400 * S; // 2026-07-21 12:00 +08:00
        let c = Clock::compressed(epoch, 60.0).unwrap();
        assert_eq!(c.at(epoch), epoch, "both agree at the epoch");
        // A wall minute is a storm hour; three wall minutes, three hours.
        assert_eq!(c.at(epoch + 60 * S), epoch + 3600 * S);
        assert_eq!(c.at(epoch + 180 * S), epoch + 3 * 3600 * S);
        // A gauge's 35-minute staleness passes in 35 wall seconds.
        assert_eq!(c.wall_at(epoch + 35 * 60 * S) - epoch, 35 * S);
        for t in [epoch - 7 * S, epoch, epoch + 1, epoch + 12_345 * S] {
            assert!((c.wall_at(c.at(t)) - t).abs() <= 1, "{t}");
        }
        assert_eq!(c.wall_duration(std::time::Duration::from_secs(600)), std::time::Duration::from_secs(10));
        assert!(Clock::compressed(epoch, 0.0).is_none());
        assert!(Clock::compressed(epoch, f64::NAN).is_none());
        assert!(Clock::compressed(epoch, -1.0).is_none());
    }
}
