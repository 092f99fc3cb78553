//! What a standby judged and did not record (pure).
//!
//! Every node judges every reading; a standby's alert stage keeps, instead
//! of recording them, the changes per alert — (site, rule), a site's
//! offline alert, a street, the district — in the order judged (the last
//! [`KEPT`] of each). When it takes over, the leader it follows may have
//! died between judging readings and recording them: the changes after
//! the last one the record has are applied then, with the times they were
//! judged at, so the alert timelines stay continuous (every step, none
//! twice) and only what the old leader had not recorded is told.
//!
//! Where the record stands in a chain: after the change that led to the
//! level the active alert is at, judged no later than the record's last
//! level change (within [`SKEW`]: two nodes stamp a reading that carries
//! no time of its own on arrival, moments apart) — the latest such change,
//! so a level passed twice (Ⅱ on the way up and on the way down) is told
//! apart by when. No active alert on record: after the chain's last
//! resolve (the old leader recorded the episode's end).

use std::collections::{HashMap, VecDeque};

use crate::engine::{Change, Transition};
use crate::level::Level;
use crate::reading::TimestampNs;

use super::model::{Alert, AlertKind, AREA_RULE, OFFLINE_RULE};

/// Which alert a change is about: the alert manager's own key, (site,
/// rule); the district's alert by a name of its own. Quality-control flags
/// are no alert (`None`): only points, which the leader writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub site: String,
    pub rule: String,
}

const DISTRICT: &str = "#district";

impl Key {
    fn new(site: &str, rule: &str) -> Key {
        Key { site: site.to_string(), rule: rule.to_string() }
    }

    pub fn of_change(c: &Change) -> Option<Key> {
        Some(match c {
            Change::Site(s) => Key::new(&s.site, &s.rule),
            Change::Offline { site, .. } | Change::Online { site } => Key::new(site, OFFLINE_RULE),
            Change::Street { street, .. } => Key::new(street, AREA_RULE),
            Change::District { .. } => Key::new(DISTRICT, AREA_RULE),
            Change::SensorFault(f) => Key::new(&f.site, &crate::replay::fault_rule(&f.metric)),
            Change::Upstream(u) => Key::new(&u.id, crate::engine::upstream::LINK_RULE),
            Change::Qc(_) => return None,
        })
    }

    pub fn of_alert(a: &Alert) -> Key {
        match a.kind {
            Some(AlertKind::District) => Key::new(DISTRICT, AREA_RULE),
            _ => Key::new(&a.site, &a.rule),
        }
    }

    fn is_area(&self) -> bool {
        self.rule == AREA_RULE
    }
}

/// The level a change leads to (offline, a sensor fault, a link down: Ⅳ,
/// as their alerts).
pub fn target(c: &Change) -> Option<Level> {
    match c {
        Change::Site(s) => s.to,
        Change::Offline { .. } => Some(Level::IV),
        Change::Online { .. } | Change::Qc(_) => None,
        Change::Street { to, .. } | Change::District { to, .. } => *to,
        Change::SensorFault(f) => f.open.then_some(Level::IV),
        Change::Upstream(u) => u.down.then_some(Level::IV),
    }
}

/// How many changes per alert a standby keeps (a long standby's memory
/// stays bounded; a takeover needs only the last few).
pub const KEPT: usize = 64;

/// How far apart two nodes may stamp the same reading (see the module
/// text): well under the time between two level changes of one alert
/// (a change needs `sustain` readings, minutes apart in the field).
pub const SKEW: TimestampNs = 1_000_000_000;

/// The unrecorded changes per alert, in the order judged.
#[derive(Debug, Default)]
pub struct Shadow {
    chains: HashMap<Key, VecDeque<Transition>>,
}

impl Shadow {
    pub fn record(&mut self, transitions: &[Transition]) {
        for t in transitions {
            let Some(key) = Key::of_change(&t.change) else { continue };
            let chain = self.chains.entry(key).or_default();
            // A late duplicate of an older change is not a change.
            if chain.back().is_some_and(|old| old.at > t.at) {
                continue;
            }
            if chain.len() == KEPT {
                chain.pop_front();
            }
            chain.push_back(t.clone());
        }
    }

    /// How many alerts have changes kept.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    pub fn clear(&mut self) {
        self.chains.clear();
    }

    /// The changes to apply so that the record — the active alerts, and
    /// `last_change`: per alert id the time of its last level change on
    /// record — says what the engine judged: each alert's changes after
    /// the last one on record (module text), oldest first, a site's before
    /// its street's and the district's at the same time.
    pub fn reconcile<'a>(
        &self,
        active: impl IntoIterator<Item = &'a Alert>,
        last_change: &HashMap<i64, TimestampNs>,
    ) -> Vec<Transition> {
        let on_record: HashMap<Key, (Option<Level>, Option<TimestampNs>)> = active
            .into_iter()
            .filter(|a| a.is_active())
            .map(|a| (Key::of_alert(a), (a.level, last_change.get(&a.id).copied())))
            .collect();
        let mut out: Vec<(&Key, &Transition)> = Vec::new();
        for (key, chain) in &self.chains {
            let from = match on_record.get(key) {
                Some(&(level, at)) => after_record(chain, level, at),
                // Nothing active on record: after the last resolve judged.
                None => chain.iter().rposition(|t| target(&t.change).is_none()).map_or(0, |i| i + 1),
            };
            out.extend(chain.iter().skip(from).map(|t| (key, t)));
        }
        out.sort_by(|(ka, a), (kb, b)| {
            a.at.cmp(&b.at).then(ka.is_area().cmp(&kb.is_area())).then(ka.cmp(kb))
        });
        out.into_iter().map(|(_, t)| t.clone()).collect()
    }
}

/// Where in `chain` the record stands for an active alert at `level`
/// whose last level change on record was at `at`: the index of the first
/// change it lacks.
fn after_record(chain: &VecDeque<Transition>, level: Option<Level>, at: Option<TimestampNs>) -> usize {
    // After change i the level is chain[i]'s target; before the first, its
    // `from` (the engine's view when this node began keeping them).
    let from_level = |t: &Transition| match &t.change {
        Change::Site(s) => s.from,
        Change::Street { from, .. } | Change::District { from, .. } => *from,
        _ => None,
    };
    let reached = |i: usize| at.is_none_or(|at| chain[i].at <= at + SKEW);
    if let Some(i) = (0..chain.len()).rev().find(|&i| target(&chain[i].change) == level && reached(i)) {
        return i + 1;
    }
    if chain.front().is_some_and(|t| from_level(t) == level && level.is_some()) {
        return 0;
    }
    // The record is at a level the chain never led to: only the latest
    // change brings it to what the engine says (if it differs).
    match chain.back() {
        Some(t) if target(&t.change) != level => chain.len() - 1,
        _ => chain.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::AlertState;
    use crate::engine::SiteChange;
    use std::sync::Arc;

    fn site(site: &str, at: i64, from: Option<Level>, to: Option<Level>) -> Transition {
        Transition {
            at,
            change: Change::Site(SiteChange {
                site: Arc::from(site),
                site_name: Arc::from(site),
                street: Arc::from("chengdong"),
                kind: crate::config::Kind::Waterlogging,
                rule: Arc::from("depth"),
                rule_name: Arc::from("积水深度"),
                from,
                to,
                metric: None,
                value: Some(30.0),
                unit: Arc::from("cm"),
                threshold: Some(27.0),
                trend: None,
                eta: None,
                card: None,
                suspect: None,
            }),
        }
    }

    fn alert(site: &str, level: Option<Level>, state: AlertState) -> Alert {
        Alert {
            kind: Some(AlertKind::Site),
            site: site.into(),
            rule: "depth".into(),
            level,
            state,
            ..Alert::default()
        }
    }

    #[test]
    fn only_what_the_record_lacks_is_applied_oldest_first() {
        let mut s = Shadow::default();
        s.record(&[site("A", 10, None, Some(Level::IV)), site("B", 11, None, Some(Level::III))]);
        s.record(&[site("A", 20, Some(Level::IV), Some(Level::III))]);
        s.record(&[
            site("C", 15, None, Some(Level::II)),
            Transition {
                at: 15,
                change: Change::Street {
                    street: Arc::from("chengdong"),
                    name: Arc::from("城东"),
                    from: None,
                    to: Some(Level::II),
                },
            },
            Transition {
                at: 12,
                change: Change::Offline {
                    site: Arc::from("D"),
                    last_seen: None,
                    reason: crate::engine::OfflineReason::Stale,
                },
            },
        ]);
        // A late duplicate of an older change does not replace a newer one.
        s.record(&[site("A", 5, None, Some(Level::IV))]);
        assert_eq!(s.len(), 5);
        let record = [
            // The old leader recorded A's Ⅲ and B's Ⅲ (acked since): nothing to do.
            alert("A", Some(Level::III), AlertState::Firing),
            alert("B", Some(Level::III), AlertState::Acked),
            // C was recorded at Ⅲ: the engine says Ⅱ.
            alert("C", Some(Level::III), AlertState::Firing),
            // E ended on record already (resolved): not active, ignored.
            alert("E", None, AlertState::Resolved),
        ];
        let todo = s.reconcile(record.iter(), &HashMap::new());
        let keys: Vec<(i64, Key)> = todo.iter().map(|t| (t.at, Key::of_change(&t.change).unwrap())).collect();
        assert_eq!(
            keys,
            [
                (12, Key::new("D", OFFLINE_RULE)),
                (15, Key::new("C", "depth")),
                (15, Key::new("chengdong", AREA_RULE))
            ]
        );
    }

    #[test]
    fn a_level_the_engine_cleared_resolves_what_the_record_still_holds() {
        let mut s = Shadow::default();
        s.record(&[site("A", 30, Some(Level::IV), None)]);
        let todo = s.reconcile([alert("A", Some(Level::IV), AlertState::Firing)].iter(), &HashMap::new());
        assert_eq!(todo.len(), 1);
        assert!(s.reconcile([].iter(), &HashMap::new()).is_empty(), "resolved on record: nothing to do");
        assert!(
            Shadow::default().reconcile([].iter(), &HashMap::new()).is_empty(),
            "nothing judged: nothing to do"
        );
    }

    /// A second.
    const S: i64 = 1_000_000_000;

    /// The storm's staircase Ⅳ Ⅲ Ⅱ Ⅰ Ⅱ Ⅲ Ⅳ and the end, judged 10 s apart.
    fn staircase() -> Shadow {
        use Level::*;
        let steps = [None, Some(IV), Some(III), Some(II), Some(I), Some(II), Some(III), Some(IV), None];
        let mut s = Shadow::default();
        for (i, w) in steps.windows(2).enumerate() {
            s.record(&[site("A", 10 * S * (i as i64 + 1), w[0], w[1])]);
        }
        s
    }

    fn levels(todo: &[Transition]) -> Vec<Option<Level>> {
        todo.iter().map(|t| target(&t.change)).collect()
    }

    #[test]
    fn every_change_the_record_lacks_is_applied_not_only_the_latest() {
        let s = staircase();
        let mut a = alert("A", Some(Level::III), AlertState::Firing);
        a.id = 7;
        // The old leader recorded up to Ⅲ on the way down (judged at 60):
        // Ⅳ and the end are missing, both applied.
        let at = |t: i64| HashMap::from([(7, t * S)]);
        assert_eq!(levels(&s.reconcile([&a], &at(60))), [Some(Level::IV), None]);
        // Up to Ⅲ on the way up (at 20): the rest of the staircase, Ⅱ
        // twice and Ⅲ again, told apart by when.
        use Level::*;
        assert_eq!(
            levels(&s.reconcile([&a], &at(20))),
            [Some(II), Some(I), Some(II), Some(III), Some(IV), None]
        );
        // Stamped a little apart by the two nodes: the same.
        assert_eq!(levels(&s.reconcile([&a], &HashMap::from([(7, 20 * S + SKEW / 2)]))).len(), 6);
        // All of it on record: nothing to do.
        a.level = Some(IV);
        assert_eq!(levels(&s.reconcile([&a], &at(70))), [None]);
        assert!(s.reconcile([].iter(), &HashMap::new()).is_empty(), "the end on record");
    }

    #[test]
    fn a_chain_begun_mid_episode_and_a_bounded_memory() {
        use Level::*;
        let mut s = Shadow::default();
        // This node began keeping changes at Ⅱ → Ⅰ; the record is at Ⅱ.
        s.record(&[site("A", 100 * S, Some(II), Some(I)), site("A", 110 * S, Some(I), Some(II))]);
        let mut a = alert("A", Some(II), AlertState::Firing);
        a.id = 1;
        assert_eq!(levels(&s.reconcile([&a], &HashMap::from([(1, 50 * S)]))), [Some(I), Some(II)]);
        assert!(s.reconcile([&a], &HashMap::from([(1, 110 * S)])).is_empty());
        for i in 0..(KEPT as i64 * 2) {
            s.record(&[site("A", 200 * S + i, Some(II), Some(I))]);
        }
        assert_eq!(s.chains.values().map(VecDeque::len).max(), Some(KEPT));
    }
}
