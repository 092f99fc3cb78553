//! The lease's timing, pure: when a leader renews, until when it may act,
//! when a standby looks again. Time is an argument.
//!
//! A renewal sent at `t` (this node's monotonic clock) is executed by the
//! database at `t' ≥ t` and sets the lease to end at `t' + lease` by the
//! database's clock; a standby takes over only after that. The leader
//! counts its lease from `t`, the moment it *sent* the renewal, and stops
//! acting a margin before `t + lease`: so it has stopped before anyone else
//! can start, whatever the delays in between (clocks' rates assumed equal
//! within the margin, which is generous: 1 s of 10).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease: Duration,
}

impl Timing {
    pub fn new(lease: Duration) -> Timing {
        Timing { lease }
    }

    /// A leader renews this often.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How long before the lease ends a leader stops acting.
    pub fn margin(&self) -> Duration {
        (self.lease / 10).min(Duration::from_secs(1))
    }

    /// Until when a leader whose renewal (or acquisition) was sent at
    /// `sent` may act.
    pub fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.lease - self.margin()
    }

    /// The longest a renewal may take: past that its answer is useless.
    pub fn call_limit(&self) -> Duration {
        self.lease / 3
    }

    /// When a standby looks again, the lease having `left_ms` to run by
    /// the database's clock: just after it lapses, and at least every
    /// third of the lease (a new leader, a released lease).
    pub fn standby_wait(&self, left_ms: i64) -> Duration {
        if left_ms <= 0 {
            return Duration::ZERO;
        }
        (Duration::from_millis(left_ms as u64) + Duration::from_millis(20)).min(self.renew_every())
    }

    /// After a failed call, try again after this.
    pub fn retry(&self) -> Duration {
        (self.lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_before_a_standby_may_start() {
        let t = Timing::new(Duration::from_secs(10));
        let sent = Instant::now();
        // The database executes the renewal some time after it was sent;
        // its lease ends `lease` after that: never before the leader stops.
        for delay_ms in [0, 5, 300, 3000] {
            let db_end = sent + Duration::from_millis(delay_ms) + t.lease;
            assert!(t.valid_until(sent) + t.margin() <= db_end, "{delay_ms}");
        }
        assert_eq!(t.valid_until(sent), sent + Duration::from_secs(9));
        // Renewing every third leaves two thirds of slack for a slow database.
        assert_eq!(t.renew_every(), Duration::from_nanos(3_333_333_333));
        assert!(t.renew_every() * 2 < t.lease - t.margin());
    }

    #[test]
    fn a_standby_looks_again_just_after_the_lease_lapses() {
        let t = Timing::new(Duration::from_secs(10));
        assert_eq!(t.standby_wait(0), Duration::ZERO);
        assert_eq!(t.standby_wait(-5), Duration::ZERO);
        assert_eq!(t.standby_wait(1000), Duration::from_millis(1020));
        assert_eq!(t.standby_wait(9000), t.renew_every(), "at least every third of the lease");
        let short = Timing::new(Duration::from_secs(3));
        assert_eq!(short.margin(), Duration::from_millis(300));
        assert_eq!(short.retry(), Duration::from_millis(300));
        assert_eq!(Timing::new(Duration::from_secs(300)).margin(), Duration::from_secs(1));
    }
}
