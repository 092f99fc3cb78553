//! The engine's state as data, so a restart judges on exactly where the last
//! run stopped.
//!
//! Levels alone (what the active alerts say) are not enough: a rule's run
//! of readings toward its sustain, the rain that fell in the last hours and
//! a metric's recent history decide the next change as much as the level
//! does. A snapshot keeps all of it, keyed by site, metric and rule id
//! rather than by position, so it still applies after `sites.toml` or
//! `plan.toml` changed between two runs: a site or rule that is gone is
//! dropped, a new one starts empty, and a rule whose check, sustain or
//! clear changed keeps its level only (as a reload does, `State::carry_over`).
//!
//! Pure: encoding, decoding and mapping onto a plan. Where snapshots are
//! written and when is the engine stage's business (`live::snapshot`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::qc::{QcState, SavedQc};
use super::rain::Rain;
use super::series::Series;
use super::upstream::UpstreamState;
use super::{area, Latest, State};
use crate::plan::{Plan, SiteRule};
use crate::reading::{TimestampNs, Value};

/// The format's version: a snapshot of another version is not used.
/// 2: quality control per metric, covered sites, gateways and intakes.
const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    started_at: TimestampNs,
    sites: Vec<SiteSnapshot>,
    /// By upstream id (`DTU-07`, `mqtt`).
    upstreams: Vec<(String, UpstreamState)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SiteSnapshot {
    id: String,
    values: Vec<(String, Val, TimestampNs)>,
    history: Vec<(String, Vec<(TimestampNs, f64)>)>,
    rules: Vec<RuleSnapshot>,
    last_seen: Option<TimestampNs>,
    offline: bool,
    covered: bool,
    /// Quality control by metric.
    qc: Vec<(String, SavedQc)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleSnapshot {
    id: String,
    /// What the rule judged with (`fingerprint`): state is carried whole
    /// only to the same check.
    fingerprint: u32,
    /// The metric its rain samples are of, if it keeps any.
    metric: Option<String>,
    machine: Machine,
    value: Option<f64>,
    rain: Option<Vec<(TimestampNs, f64)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Val {
    Float(f64),
    Bool(bool),
}

impl SiteSnapshot {
    fn of(sp: &crate::plan::SitePlan, st: &super::SiteState) -> SiteSnapshot {
        SiteSnapshot {
            id: sp.id.to_string(),
            values: st
                .values
                .iter()
                .map(|(m, l)| {
                    let v = match l.value {
                        Value::Float(f) => Val::Float(f),
                        Value::Bool(b) => Val::Bool(b),
                    };
                    (m.to_string(), v, l.ts)
                })
                .collect(),
            history: sp
                .history
                .iter()
                .zip(&st.history)
                .map(|(m, s)| (m.to_string(), s.points().collect()))
                .collect(),
            rules: sp
                .rules
                .iter()
                .zip(&st.rules)
                .map(|(r, rs)| RuleSnapshot {
                    id: r.rule.id.to_string(),
                    fingerprint: fingerprint(r),
                    metric: r.check.metric().map(|m| m.to_string()),
                    machine: rs.machine.clone(),
                    value: rs.value,
                    rain: rs.rain.as_ref().map(|r| r.samples().collect()),
                })
                .collect(),
            last_seen: st.last_seen,
            offline: st.offline,
            covered: st.covered,
            qc: sp.qc.iter().zip(&st.qc).map(|(q, qs)| (q.metric.to_string(), qs.save())).collect(),
        }
    }
}

fn upstreams(state: &State, plan: &Plan) -> Vec<(String, UpstreamState)> {
    plan.upstreams.iter().zip(&state.upstreams).map(|(u, us)| (u.id.to_string(), us.clone())).collect()
}

/// Appends `v` as postcard encodes it (a struct is its fields one after
/// the other, with no framing: what lets `encode_of` write one in pieces).
fn put<T: Serialize + ?Sized>(out: Vec<u8>, v: &T) -> Vec<u8> {
    postcard::to_extend(v, out).expect("a snapshot always serializes")
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a snapshot: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot format {0}, this build reads {VERSION}")]
    Version(u32),
}

/// The check, sustain and clear of a site's rule, as a number that changes
/// when any of them does (the rule's name and card do not matter here).
fn fingerprint(r: &SiteRule) -> u32 {
    crc32fast::hash(format!("{:?}|{:?}|{:?}", r.check, r.sustain, r.clear_sustain).as_bytes())
}

impl Snapshot {
    /// The state of the engine under `plan`.
    pub fn of(state: &State, plan: &Plan) -> Snapshot {
        let sites = plan.sites.iter().zip(&state.sites).map(|(sp, st)| SiteSnapshot::of(sp, st)).collect();
        Snapshot { version: VERSION, started_at: state.started_at, sites, upstreams: upstreams(state, plan) }
    }

    /// `Snapshot::of(state, plan).encode()`, without the whole snapshot in
    /// memory at once: each site is encoded as soon as it is copied, so a
    /// district of 10,000 sites peaks at the bytes and one site, not at the
    /// bytes and a copy of every site's state (about as large again).
    /// `size_hint`: the last snapshot's length, to allocate once.
    pub fn encode_of(state: &State, plan: &Plan, size_hint: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_hint + size_hint / 8);
        out = put(out, &VERSION);
        out = put(out, &state.started_at);
        // A sequence is its length, then its elements (postcard).
        debug_assert_eq!(plan.sites.len(), state.sites.len());
        out = put(out, &plan.sites.len());
        for (sp, st) in plan.sites.iter().zip(&state.sites) {
            out = put(out, &SiteSnapshot::of(sp, st));
        }
        put(out, &upstreams(state, plan))
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a snapshot always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let s: Snapshot = postcard::from_bytes(bytes)?;
        if s.version != VERSION {
            return Err(SnapshotError::Version(s.version));
        }
        Ok(s)
    }

    /// The engine's state under `plan` (which may differ from the plan the
    /// snapshot was taken under). Street and district levels follow from
    /// the sites', without transitions: they were told when they changed.
    pub fn restore(self, plan: &Plan) -> State {
        let mut state = State::new(plan, self.started_at);
        for snap in self.sites {
            let Some((i, sp)) = plan.site(&snap.id) else { continue };
            let st = &mut state.sites[i];
            st.last_seen = snap.last_seen;
            st.offline = snap.offline;
            st.covered = snap.covered;
            for (m, saved) in snap.qc {
                if let Some(q) = sp.qc.iter().position(|x| *x.metric == *m) {
                    st.qc[q] = QcState::load(saved, &sp.id, &sp.qc[q].metric);
                }
            }
            for (m, v, ts) in snap.values {
                let value = match v {
                    Val::Float(f) => Value::Float(f),
                    Val::Bool(b) => Value::Bool(b),
                };
                st.values.insert(Arc::from(m), Latest { value, ts });
            }
            for (m, points) in snap.history {
                if let Some(h) = sp.history.iter().position(|n| **n == *m) {
                    let series: &mut Series = &mut st.history[h];
                    for (ts, v) in points {
                        series.push(ts, v);
                    }
                }
            }
            for rs in snap.rules {
                let Some(ri) = sp.rules.iter().position(|r| *r.rule.id == *rs.id) else { continue };
                let rule = &sp.rules[ri];
                let target = &mut st.rules[ri];
                if fingerprint(rule) == rs.fingerprint {
                    target.machine = rs.machine;
                    target.value = rs.value;
                } else {
                    target.machine = Machine::at(rs.machine.level);
                    target.value = rs.value;
                }
                let same_metric = rule.check.metric().map(|m| m.to_string()) == rs.metric;
                if let (Some(rain), Some(samples), true) = (target.rain.as_mut(), rs.rain, same_metric) {
                    let rain: &mut Rain = rain;
                    for (ts, v) in samples {
                        rain.push(ts, v);
                    }
                }
            }
            st.level = st.rules.iter().filter_map(|r| r.machine.level).max();
        }
        for (id, us) in self.upstreams {
            if let Some(u) = plan.upstreams.iter().position(|x| *x.id == *id) {
                state.upstreams[u] = us;
            }
        }
        let mut quiet = Vec::new();
        area::update(plan, &mut state, self.started_at, &mut quiet);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{step, Input};
    use crate::reading::Reading;

    const MIN: i64 = 60_000_000_000;

    fn plan() -> std::sync::Arc<Plan> {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        crate::config::load(&main).unwrap().plan
    }

    fn r(site: &str, metric: &str, v: f64, ts: i64) -> Reading {
        Reading { site: site.into(), metric: metric.into(), value: Value::Float(v), ts }
    }

    /// A storm at two sites: depths wandering across levels, rain falling.
    fn storm(t0: i64, minutes: std::ops::Range<i64>) -> Vec<Reading> {
        minutes
            .flat_map(|m| {
                // With a spike held for confirmation at the cut (minute 89).
                let depth = if m == 89 { 300.0 } else { 5.0 + 40.0 * ((m as f64) / 7.0).sin().abs() };
                let rain = if m % 3 == 0 { 2.5 } else { 0.5 };
                [
                    r("CD-JS-01", "water_depth_cm", depth, t0 + m * MIN),
                    r("CD-YL-01", "rain_mm", rain, t0 + m * MIN),
                    r("BH-SW-01", "level_m", 4.0 + (m as f64) * 0.01, t0 + m * MIN),
                ]
            })
            .collect()
    }

    fn run(state: &mut State, plan: &Plan, readings: &[Reading]) -> Vec<String> {
        let mut out = Vec::new();
        for r in readings {
            for t in step(state, plan, Input::Readings(std::slice::from_ref(r)), r.ts) {
                out.push(format!("{:?}", t));
            }
        }
        out
    }

    #[test]
    fn judging_on_from_a_snapshot_is_judging_straight_through() {
        let plan = plan();
        let t0 = 1_784_600_000_000_000_000;
        let first = storm(t0, 0..90);
        let rest = storm(t0, 90..240);

        let mut straight = State::new(&plan, t0);
        run(&mut straight, &plan, &first);
        let want = run(&mut straight.clone(), &plan, &rest);
        assert!(want.len() > 10, "the storm changes levels: {}", want.len());

        let bytes = Snapshot::of(&straight, &plan).encode();
        let mut resumed = Snapshot::decode(&bytes).unwrap().restore(&plan);
        let got = run(&mut resumed, &plan, &rest);
        assert_eq!(got, want);
        // And a snapshot of the restored state is the snapshot it came from.
        assert_eq!(Snapshot::of(&Snapshot::decode(&bytes).unwrap().restore(&plan), &plan).encode(), bytes);
        // Encoded site by site, as the daemon writes it: the same bytes.
        assert_eq!(Snapshot::encode_of(&straight, &plan, 0), bytes);
        assert_eq!(Snapshot::encode_of(&straight, &plan, bytes.len()), bytes);
    }

    #[test]
    fn levels_alone_would_not_do() {
        // What the snapshot is for: a rule one reading into its two-reading
        // sustain escalates on the next reading only if the run is kept.
        let plan = plan();
        let t0 = 1_784_600_000_000_000_000;
        let mut s = State::new(&plan, t0);
        run(&mut s, &plan, &[r("CD-JS-01", "water_depth_cm", 12.0, t0)]);
        let next = [r("CD-JS-01", "water_depth_cm", 12.5, t0 + MIN)];
        let mut seeded = State::new(&plan, t0);
        assert!(run(&mut seeded, &plan, &next).is_empty());
        let mut restored = Snapshot::decode(&Snapshot::of(&s, &plan).encode()).unwrap().restore(&plan);
        assert_eq!(run(&mut restored, &plan, &next).len(), 1 + 2, "site, street and district to Ⅳ");
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        assert!(Snapshot::decode(b"\xff\xff\xff").is_err());
        let plan = plan();
        let mut s = Snapshot::of(&State::new(&plan, 0), &plan);
        s.version = VERSION + 1;
        assert!(matches!(Snapshot::decode(&s.encode()), Err(SnapshotError::Version(_))));
    }

    #[test]
    fn a_changed_rule_keeps_its_level_only_and_a_gone_site_is_dropped() {
        let plan = plan();
        let t0 = 1_784_600_000_000_000_000;
        let mut s = State::new(&plan, t0);
        run(&mut s, &plan, &storm(t0, 0..3));
        let mut snap = Snapshot::of(&s, &plan);
        let depth = snap.sites.iter_mut().find(|x| x.id == "CD-JS-01").unwrap();
        let level = depth.rules[0].machine.level;
        depth.rules[0].fingerprint ^= 1;
        snap.sites.push(SiteSnapshot {
            id: "GONE".into(),
            values: vec![],
            history: vec![],
            rules: vec![],
            last_seen: None,
            offline: true,
            covered: false,
            qc: vec![],
        });
        let restored = snap.restore(&plan);
        let (i, _) = plan.site("CD-JS-01").unwrap();
        assert_eq!(restored.sites[i].rules[0].machine, Machine::at(level));
        assert_eq!(restored.sites.len(), plan.sites.len());
    }
}
