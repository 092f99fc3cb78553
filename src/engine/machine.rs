//! The level state machine of one rule at one site: hysteresis and sustain.
//!
//! Each observation says, per level, whether its trigger holds (`up`) and
//! whether its hold condition holds (`hold`: the trigger widened by the
//! deadband). The machine escalates to the highest level above the current
//! one whose trigger has held for `sustain`, and de-escalates to the highest
//! level whose hold condition still holds once the drop has lasted
//! `clear_sustain`. A dip inside the deadband, or back over the threshold
//! before the sustain is met, cancels the pending change.

use crate::level::Level;
use crate::plan::Hold;
use crate::reading::TimestampNs;

/// Per level, index 0 = Ⅳ … 3 = Ⅰ.
pub type PerLevel = [bool; 4];

/// What one observation found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Obs {
    pub up: PerLevel,
    pub hold: PerLevel,
}

impl Obs {
    /// A rule with one level and no deadband (rate, condition, rain window).
    pub fn single(level: Level, on: bool) -> Obs {
        let mut o = Obs::default();
        let i = idx(level);
        o.up[i] = on;
        o.hold[i] = on;
        o
    }
}

pub fn idx(level: Level) -> usize {
    usize::from(level.rank() - 1)
}

fn level_at(i: usize) -> Level {
    Level::ALL[i]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Run {
    first: TimestampNs,
    count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DownRun {
    run: Run,
    /// The highest level the value held during the run: where it drops to.
    target: Option<Level>,
}

fn sustained(run: Run, now: TimestampNs, hold: Hold) -> bool {
    match hold {
        Hold::Readings(n) => run.count >= n,
        Hold::ForNs(d) => now.saturating_sub(run.first) >= d,
    }
}

/// A change of level: `(from, to)`.
pub type Change = (Option<Level>, Option<Level>);

/// Serializable for the engine's snapshot (`engine::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub level: Option<Level>,
    up: [Option<Run>; 4],
    down: Option<DownRun>,
}

impl Machine {
    /// A machine already at `level` (state carried over a reload).
    pub fn at(level: Option<Level>) -> Self {
        Machine { level, ..Machine::default() }
    }

    /// Is a change waiting for its sustain?
    pub fn pending(&self) -> bool {
        self.down.is_some()
            || self.up.iter().enumerate().any(|(i, r)| r.is_some() && Some(level_at(i)) > self.level)
    }

    /// An observation from a reading: runs count it.
    pub fn observe(&mut self, obs: Obs, now: TimestampNs, sustain: Hold, clear: Hold) -> Option<Change> {
        self.update(obs, now, true);
        self.decide(now, sustain, clear)
    }

    /// An observation made at a tick (e.g. rain windows sliding): it can
    /// start or break runs but does not count as a reading.
    pub fn observe_tick(&mut self, obs: Obs, now: TimestampNs, sustain: Hold, clear: Hold) -> Option<Change> {
        self.update(obs, now, false);
        self.decide(now, sustain, clear)
    }

    /// Time passing with no observation: `for` sustains may complete.
    pub fn tick(&mut self, now: TimestampNs, sustain: Hold, clear: Hold) -> Option<Change> {
        self.decide(now, sustain, clear)
    }

    fn update(&mut self, obs: Obs, now: TimestampNs, counts: bool) {
        let n = u32::from(counts);
        for (i, on) in obs.up.iter().enumerate() {
            self.up[i] = match (on, self.up[i]) {
                (false, _) => None,
                (true, None) => Some(Run { first: now, count: n }),
                (true, Some(r)) => Some(Run { first: r.first, count: r.count.saturating_add(n) }),
            };
        }
        let held = (0..4).rev().find(|&i| obs.hold[i]).map(level_at);
        if held < self.level {
            self.down = Some(match self.down {
                None => DownRun { run: Run { first: now, count: n }, target: held },
                Some(d) => DownRun {
                    run: Run { first: d.run.first, count: d.run.count.saturating_add(n) },
                    target: d.target.max(held),
                },
            });
        } else {
            self.down = None;
        }
    }

    fn decide(&mut self, now: TimestampNs, sustain: Hold, clear: Hold) -> Option<Change> {
        let from = self.level;
        let up = (0..4)
            .rev()
            .find(|&i| Some(level_at(i)) > from && self.up[i].is_some_and(|r| sustained(r, now, sustain)));
        if let Some(i) = up {
            self.level = Some(level_at(i));
            self.down = None;
            return Some((from, self.level));
        }
        if let Some(d) = self.down {
            if sustained(d.run, now, clear) {
                self.level = d.target;
                self.down = None;
                return Some((from, self.level));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    /// Depth thresholds 10/20/27/40 cm, deadband 3, above.
    fn depth(v: f64) -> Obs {
        let t = [10.0, 20.0, 27.0, 40.0];
        let mut o = Obs::default();
        for (i, t) in t.into_iter().enumerate() {
            o.up[i] = v >= t;
            o.hold[i] = v >= t - 3.0;
        }
        o
    }

    /// Feeds readings one minute apart; the changes with their minute.
    fn run(values: &[f64], sustain: Hold, clear: Hold) -> Vec<(usize, Change)> {
        let mut m = Machine::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| m.observe(depth(*v), i as i64 * MIN, sustain, clear).map(|c| (i, c)))
            .collect()
    }

    use Level::*;
    const TWO: Hold = Hold::Readings(2);

    #[test]
    fn two_consecutive_readings_escalate() {
        assert_eq!(run(&[5.0, 12.0, 12.5], TWO, TWO), [(2, (None, Some(IV)))]);
    }

    #[test]
    fn a_single_spike_does_not() {
        assert_eq!(run(&[5.0, 25.0, 5.0, 5.0], TWO, TWO), []);
    }

    #[test]
    fn noise_inside_the_deadband_does_not_flap() {
        // At Ⅳ, the value wanders 7.5 … 11 around the 10 cm threshold: it
        // never falls below 10 − 3 = 7, so the level holds.
        let v = [12.0, 12.0, 9.0, 11.0, 7.5, 10.5, 8.0, 9.9, 7.1, 11.0];
        assert_eq!(run(&v, TWO, TWO), [(1, (None, Some(IV)))]);
    }

    #[test]
    fn clearing_needs_the_drop_below_the_deadband_sustained() {
        let v = [12.0, 12.0, 6.0, 8.0, 6.0, 6.5];
        // 6.0 then 8.0 (back inside the deadband) cancels; 6.0, 6.5 clears.
        assert_eq!(run(&v, TWO, TWO), [(1, (None, Some(IV))), (5, (Some(IV), None))]);
    }

    #[test]
    fn a_jump_goes_straight_to_the_sustained_level() {
        assert_eq!(run(&[45.0, 45.0], TWO, TWO), [(1, (None, Some(I)))]);
        // Rising through the levels: each takes its own two readings.
        assert_eq!(
            run(&[12.0, 21.0, 28.0, 41.0, 41.0], TWO, TWO),
            [
                (1, (None, Some(IV))),
                (2, (Some(IV), Some(III))),
                (3, (Some(III), Some(II))),
                (4, (Some(II), Some(I)))
            ]
        );
    }

    #[test]
    fn de_escalation_stops_at_the_highest_level_held_during_the_drop() {
        // At Ⅱ (27), drops to 22 (holds Ⅲ: ≥ 17) then 12 (holds Ⅳ): the drop
        // held Ⅲ at its first reading, so it ends at Ⅲ, not Ⅳ.
        let v = [30.0, 30.0, 22.0, 12.0, 12.0, 12.0];
        assert_eq!(
            run(&v, TWO, TWO),
            [(1, (None, Some(II))), (3, (Some(II), Some(III))), (5, (Some(III), Some(IV)))]
        );
    }

    #[test]
    fn sustain_for_a_duration_completes_on_a_tick() {
        let five = Hold::ForNs(5 * MIN);
        let mut m = Machine::default();
        assert_eq!(m.observe(depth(15.0), 0, five, five), None);
        assert!(m.pending());
        assert_eq!(m.tick(4 * MIN, five, five), None);
        assert_eq!(m.tick(5 * MIN, five, five), Some((None, Some(IV))));
        // A dip cancels a pending clear.
        assert_eq!(m.observe(depth(5.0), 6 * MIN, five, five), None);
        assert_eq!(m.observe(depth(15.0), 7 * MIN, five, five), None);
        assert_eq!(m.tick(20 * MIN, five, five), None);
        assert!(!m.pending());
    }

    #[test]
    fn tick_observations_do_not_count_as_readings() {
        let mut m = Machine::default();
        let on = Obs::single(II, true);
        assert_eq!(m.observe_tick(on, 0, TWO, TWO), None);
        assert_eq!(m.observe_tick(on, MIN, TWO, TWO), None);
        assert_eq!(m.observe(on, 2 * MIN, TWO, TWO), None);
        assert_eq!(m.observe(on, 3 * MIN, TWO, TWO), Some((None, Some(II))));
        // Clearing with "0s": a tick that sees it off clears at once.
        let now = Hold::ForNs(0);
        assert_eq!(m.observe_tick(Obs::single(II, false), 4 * MIN, TWO, now), Some((Some(II), None)));
    }

    #[test]
    fn below_direction_is_the_mirror() {
        // Manhole distance below the cover: Ⅳ ≤ 1.8, Ⅲ ≤ 1.0, deadband 0.05.
        let obs = |d: f64| {
            let t = [1.8, 1.0, 0.5, 0.1];
            let mut o = Obs::default();
            for (i, t) in t.into_iter().enumerate() {
                o.up[i] = d <= t;
                o.hold[i] = d <= t + 0.05;
            }
            o
        };
        let mut m = Machine::default();
        let one = Hold::Readings(1);
        assert_eq!(m.observe(obs(1.9), 0, one, one), None);
        assert_eq!(m.observe(obs(0.9), MIN, one, one), Some((None, Some(III))));
        assert_eq!(m.observe(obs(1.04), 2 * MIN, one, one), None, "inside the deadband");
        assert_eq!(m.observe(obs(1.2), 3 * MIN, one, one), Some((Some(III), Some(IV))));
    }
}
