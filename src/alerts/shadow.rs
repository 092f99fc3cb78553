//! What a standby judged and did not record (pure).
//!
//! Every node judges every reading; a standby's alert stage keeps, instead
//! of recording them, the latest change per alert — (site, rule), a site's
//! offline alert, a street, the district. When it takes over, the leader it
//! follows may have died between judging a reading and recording it: the
//! changes whose level differs from the alert on record are applied then,
//! with the times they were judged at, so the alert timelines stay
//! continuous and only what the old leader had not recorded is told.
//! Changes the record already has (the old leader recorded them) are
//! nothing to do.

use std::collections::HashMap;

use crate::engine::{Change, Transition};
use crate::level::Level;

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

/// The latest unrecorded change per alert.
#[derive(Debug, Default)]
pub struct Shadow {
    latest: HashMap<Key, Transition>,
}

impl Shadow {
    pub fn record(&mut self, transitions: &[Transition]) {
        for t in transitions {
            let Some(key) = Key::of_change(&t.change) else { continue };
            match self.latest.get(&key) {
                Some(old) if old.at > t.at => {}
                _ => {
                    self.latest.insert(key, t.clone());
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    pub fn clear(&mut self) {
        self.latest.clear();
    }

    /// The changes to apply so that the record — the active alerts — says
    /// what the engine judged: those whose level differs from the active
    /// alert's (none: no active alert), oldest first, a site's before its
    /// street's and the district's at the same time.
    pub fn reconcile<'a>(&self, active: impl IntoIterator<Item = &'a Alert>) -> Vec<Transition> {
        let on_record: HashMap<Key, Option<Level>> =
            active.into_iter().filter(|a| a.is_active()).map(|a| (Key::of_alert(a), a.level)).collect();
        let mut out: Vec<(&Key, &Transition)> = self
            .latest
            .iter()
            .filter(|(k, t)| on_record.get(*k).copied().flatten() != target(&t.change))
            .collect();
        out.sort_by(|(ka, a), (kb, b)| {
            a.at.cmp(&b.at).then(ka.is_area().cmp(&kb.is_area())).then(ka.cmp(kb))
        });
        out.into_iter().map(|(_, t)| t.clone()).collect()
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
        let todo = s.reconcile(record.iter());
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
        let todo = s.reconcile([alert("A", Some(Level::IV), AlertState::Firing)].iter());
        assert_eq!(todo.len(), 1);
        assert!(s.reconcile([].iter()).is_empty(), "nothing active, nothing judged: nothing to do");
    }
}
