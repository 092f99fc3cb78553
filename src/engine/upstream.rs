//! The upstream cause of silence: a gateway (a 4G DTU several sites report
//! through) or floodguard's own intake (the MQTT connection).
//!
//! - A site going stale whose gateway's sites went silent too — more than
//!   half of them, each silent for at least its `stale_after − window` — is
//!   one 采集链路中断 alert (`Change::Upstream`) naming the gateway and its
//!   silent sites; they go offline *covered* (`OfflineReason::Upstream`):
//!   no offline alert each. Sites of the gateway going stale later while it
//!   is down are covered too. One site going silent alone is its own
//!   offline alert, as before.
//! - An intake reported down (`Input::Intake`) for `intake_after` is one
//!   alert about floodguard's intake; its sites going stale meanwhile are
//!   covered.
//! - A reading from any site of a down gateway, or the intake reported up,
//!   is one recovery. Covered sites still silent `stale_after` after it get
//!   their own offline alert.
//!
//! Pure like the rest of the engine: readings, reports and `now` in.

use std::sync::Arc;

use super::{Change, OfflineReason, State, Transition};
use crate::plan::{Plan, UpstreamKind};
use crate::reading::TimestampNs;

/// The rule id of a gateway's or an intake's alert (采集链路中断).
pub const LINK_RULE: &str = "link";

/// What the engine remembers of one upstream.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamState {
    /// Intakes: reported down since (by `Input::Intake`).
    pub reported_down: Option<TimestampNs>,
    /// Its alert is up (a gateway judged down, an intake down long enough).
    pub alerted: bool,
    /// When it last came back: covered sites get `stale_after` from here.
    pub up_since: Option<TimestampNs>,
}

impl UpstreamState {
    /// Down, as far as its sites are concerned: their silence is its.
    fn down(&self) -> bool {
        self.alerted || self.reported_down.is_some()
    }
}

/// A gateway or intake went down or came back.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamChange {
    pub id: Arc<str>,
    pub kind: UpstreamKind,
    pub down: bool,
    /// The silent sites it stands for (down), or its sites (back).
    pub sites: Vec<Arc<str>>,
    pub site_names: Vec<Arc<str>>,
    /// The street most of its sites are in; `None`: the district (an intake).
    pub street: Option<Arc<str>>,
}

fn change(plan: &Plan, u: usize, down: bool, sites: &[usize]) -> Change {
    let up = &plan.upstreams[u];
    Change::Upstream(UpstreamChange {
        id: up.id.clone(),
        kind: up.kind,
        down,
        sites: sites.iter().map(|&i| plan.sites[i].id.clone()).collect(),
        site_names: sites.iter().map(|&i| plan.sites[i].name.clone()).collect(),
        street: up.street.map(|s| plan.streets[s].id.clone()),
    })
}

fn silent_for(state: &State, i: usize, now: TimestampNs) -> i64 {
    now.saturating_sub(state.sites[i].last_seen.unwrap_or(state.started_at))
}

fn offline(state: &mut State, plan: &Plan, i: usize, reason: OfflineReason, now: TimestampNs) -> Transition {
    let st = &mut state.sites[i];
    st.offline = true;
    st.covered = reason == OfflineReason::Upstream;
    Transition {
        at: now,
        change: Change::Offline { site: plan.sites[i].id.clone(), last_seen: st.last_seen, reason },
    }
}

/// Time passes: intakes down long enough raise their alert; sites going
/// stale behind a down upstream go offline covered, or take their gateway
/// down with them; covered sites still silent long after a recovery get
/// their own offline alert. Runs before the sites' own ticks, which handle
/// the rest of staleness.
pub fn tick(state: &mut State, plan: &Plan, now: TimestampNs, out: &mut Vec<Transition>) {
    for u in 0..plan.upstreams.len() {
        let us = &mut state.upstreams[u];
        if let Some(since) = us.reported_down {
            if !us.alerted && now - since >= plan.intake_after_ns {
                us.alerted = true;
                let sites: Vec<usize> =
                    plan.upstreams[u].sites.iter().copied().filter(|&i| !state.sites[i].offline).collect();
                out.push(Transition { at: now, change: change(plan, u, true, &sites) });
            }
        }
    }
    for i in 0..plan.sites.len() {
        let sp = &plan.sites[i];
        let st = &state.sites[i];
        if st.offline {
            // Covered, and its upstreams long back: its own alert now.
            if st.covered {
                let ups = [sp.gateway, sp.intake].into_iter().flatten();
                let any_down = ups.clone().any(|u| state.upstreams[u].down());
                let back = ups.filter_map(|u| state.upstreams[u].up_since).max();
                if !any_down && back.is_some_and(|t| now - t > sp.stale_after_ns) {
                    out.push(offline(state, plan, i, OfflineReason::Stale, now));
                }
            }
            continue;
        }
        if silent_for(state, i, now) <= sp.stale_after_ns {
            continue;
        }
        let down = [sp.gateway, sp.intake].into_iter().flatten().any(|u| state.upstreams[u].down());
        if down {
            out.push(offline(state, plan, i, OfflineReason::Upstream, now));
            continue;
        }
        let Some(g) = sp.gateway else { continue };
        // Did most of the gateway's sites fall silent together?
        let members = &plan.upstreams[g].sites;
        let silent: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&j| {
                state.sites[j].offline
                    || silent_for(state, j, now) >= plan.sites[j].stale_after_ns - plan.upstream_window_ns
            })
            .collect();
        if silent.len() * 2 <= members.len() {
            continue; // its own offline alert, in its tick
        }
        state.upstreams[g].alerted = true;
        let newly: Vec<usize> = silent.iter().copied().filter(|&j| !state.sites[j].offline).collect();
        out.push(Transition { at: now, change: change(plan, g, true, &newly) });
        for j in newly {
            out.push(offline(state, plan, j, OfflineReason::Upstream, now));
        }
    }
}

/// A reading came from site `i`: its gateway, if down, is back.
pub fn heard(state: &mut State, plan: &Plan, i: usize, now: TimestampNs, out: &mut Vec<Transition>) {
    let Some(g) = plan.sites[i].gateway else { return };
    let us = &mut state.upstreams[g];
    if us.alerted {
        us.alerted = false;
        us.up_since = Some(now);
        out.push(Transition { at: now, change: change(plan, g, false, &plan.upstreams[g].sites) });
    }
}

/// The daemon says intake `id` is up or down.
pub fn intake(
    state: &mut State,
    plan: &Plan,
    id: &str,
    up: bool,
    now: TimestampNs,
    out: &mut Vec<Transition>,
) {
    let Some(u) = plan.intake(id) else { return };
    let us = &mut state.upstreams[u];
    match (up, us.reported_down.is_some() || us.alerted) {
        (false, false) => us.reported_down = Some(now),
        (true, true) => {
            us.reported_down = None;
            us.up_since = Some(now);
            if us.alerted {
                us.alerted = false;
                out.push(Transition { at: now, change: change(plan, u, false, &plan.upstreams[u].sites) });
            }
        }
        _ => {}
    }
}
