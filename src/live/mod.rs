//! The engine in the daemon: the compiled plan and the engine's state behind
//! one lock, stepped by the engine stage (`stage`) and read by the API, the
//! page and its event stream.
//!
//! Only the engine stage's thread changes the state (readings, ticks,
//! reloads); each change returns the transitions it made, which the stage
//! hands to the alert stage (`engine::TransitionSink`). Street and district
//! levels reach InfluxDB as `area_level` points through the alert stage,
//! with the transitions they come from.

pub mod snapshot;
pub mod stage;

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Change, Input, SiteView, State, Transition};
use crate::events::{Event, LevelChange};
use crate::history::History;
use crate::level::Level;
use crate::metrics::Metrics;
use crate::outlet::points;
use crate::plan::Plan;
use crate::reading::{Reading, TimestampNs};
use crate::sources::Sources;

struct Inner {
    plan: Arc<Plan>,
    state: State,
}

/// The plan and its state, shared by the engine task, the API and reloads.
pub struct Live {
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
    pub timezone: chrono_tz::Tz,
    /// Recent values for the page's charts (`/api/v1/sites/{id}/series`).
    pub history: Mutex<History>,
    /// Level changes for `/api/v1/events`.
    events: broadcast::Sender<Event>,
    /// Counts batches that changed something; `/api/v1/events` sends a
    /// throttled `sites` snapshot when it moves.
    version: watch::Sender<u64>,
    /// Cancelled when the engine task stops, so event streams end and the
    /// HTTP server can shut down gracefully.
    closed: CancellationToken,
    /// Each site's last input, recorded by the intakes.
    sources: Arc<Sources>,
    /// The length of the last `sites_json`: the next one's allocation.
    sites_json_len: std::sync::atomic::AtomicUsize,
}

/// `view` with its site's last input.
fn with_source(mut view: SiteView, sources: &Sources, tz: chrono_tz::Tz) -> SiteView {
    view.source = sources.get(&view.id).map(|l| engine::SourceView {
        protocol: l.protocol.to_string(),
        from: l.from,
        at: engine::rfc3339(l.at_ms * 1_000_000, tz),
    });
    view
}

/// `/api/v1/sites`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SitesView {
    /// The server's time, RFC 3339 in the configured time zone.
    pub now: String,
    /// The configured time zone (`Asia/Shanghai`).
    pub timezone: String,
    pub district: AreaView,
    pub streets: Vec<AreaView>,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AreaView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    pub level: Option<Level>,
}

/// The sites document serialized straight from the engine's state.
struct SitesJson<'a> {
    plan: &'a Plan,
    state: &'a State,
    now: TimestampNs,
    tz: chrono_tz::Tz,
    sources: &'a Sources,
}

impl Serialize for SitesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Streets<'a>(&'a SitesJson<'a>);
        impl Serialize for Streets<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let (plan, state) = (self.0.plan, self.0.state);
                let mut seq = ser.serialize_seq(Some(plan.streets.len()))?;
                for (s, l) in plan.streets.iter().zip(&state.streets) {
                    seq.serialize_element(&AreaView {
                        id: s.id.to_string(),
                        name: s.name.to_string(),
                        name_en: s.name_en.as_deref().map(str::to_string),
                        level: *l,
                    })?;
                }
                seq.end()
            }
        }
        struct Sites<'a>(&'a SitesJson<'a>);
        impl Serialize for Sites<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let d = self.0;
                let mut seq = ser.serialize_seq(Some(d.plan.sites.len()))?;
                for i in 0..d.plan.sites.len() {
                    let view = engine::site_view(d.plan, d.state, i, d.now, d.tz);
                    seq.serialize_element(&with_source(view, d.sources, d.tz))?;
                }
                seq.end()
            }
        }
        let district = AreaView {
            id: self.plan.district_id.to_string(),
            name: self.plan.district_name.to_string(),
            name_en: self.plan.district_name_en.as_deref().map(str::to_string),
            level: self.state.district,
        };
        let mut doc = ser.serialize_struct("SitesView", 5)?;
        doc.serialize_field("now", &engine::rfc3339(self.now, self.tz))?;
        doc.serialize_field("timezone", self.tz.name())?;
        doc.serialize_field("district", &district)?;
        doc.serialize_field("streets", &Streets(self))?;
        doc.serialize_field("sites", &Sites(self))?;
        doc.end()
    }
}

impl Live {
    pub fn new(plan: Arc<Plan>, metrics: Arc<Metrics>, timezone: chrono_tz::Tz, now: TimestampNs) -> Self {
        Self::resume(plan, metrics, timezone, now, &[], &[])
    }

    /// Like `new`, with the engine seeded from the alerts still active
    /// (see `State::seed`).
    pub fn resume(
        plan: Arc<Plan>,
        metrics: Arc<Metrics>,
        timezone: chrono_tz::Tz,
        now: TimestampNs,
        levels: &[(String, String, Level)],
        offline: &[String],
    ) -> Self {
        let mut state = State::new(&plan, now);
        state.seed(&plan, levels, offline);
        Self::with_state(plan, state, metrics, timezone)
    }

    /// With the engine's state from a snapshot (`live::snapshot`).
    pub fn restore(
        plan: Arc<Plan>,
        metrics: Arc<Metrics>,
        timezone: chrono_tz::Tz,
        snapshot: engine::snapshot::Snapshot,
    ) -> Self {
        let state = snapshot.restore(&plan);
        Self::with_state(plan, state, metrics, timezone)
    }

    fn with_state(plan: Arc<Plan>, state: State, metrics: Arc<Metrics>, timezone: chrono_tz::Tz) -> Self {
        Live {
            inner: Mutex::new(Inner { plan, state }),
            metrics,
            timezone,
            history: Mutex::new(History::new()),
            events: broadcast::channel(crate::events::CHANNEL_CAPACITY).0,
            version: watch::channel(0).0,
            closed: CancellationToken::new(),
            sources: Arc::default(),
            sites_json_len: Default::default(),
        }
    }

    /// Where the intakes record each site's last input.
    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
    }

    /// Every street and the district at their present level, as
    /// `area_level` points, so graphs start from a known value after a
    /// (re)start.
    pub fn baseline(&self, now: TimestampNs) -> String {
        let inner = self.inner.lock().expect("live lock");
        let mut text = String::new();
        for (i, s) in inner.plan.streets.iter().enumerate() {
            points::area_level(&mut text, "street", &s.id, inner.state.streets[i], now);
        }
        points::area_level(&mut text, "district", &inner.plan.district_id, inner.state.district, now);
        text
    }

    /// Counts, logs and broadcasts what a step changed.
    fn after(&self, plan: &Plan, transitions: &[Transition]) {
        if transitions.is_empty() {
            return;
        }
        for t in transitions {
            let kind = match &t.change {
                Change::Site(_) => "site",
                Change::Offline { .. } => "offline",
                Change::Online { .. } => "online",
                Change::Street { .. } => "street",
                Change::District { .. } => "district",
                Change::Qc(_) => "qc",
                Change::SensorFault(_) => "sensor_fault",
                Change::Upstream(_) => "upstream",
            };
            self.metrics.engine_transitions.with_label_values(&[kind]).inc();
        }
        for c in LevelChange::from_transitions(&plan.district_id, transitions) {
            let _ = self.events.send(Event::Level(c));
        }
        self.version.send_modify(|v| *v += 1);
        engine::sink::log(transitions);
    }

    /// The engine's state as it is now, encoded (`Snapshot::encode_of`).
    pub fn snapshot(&self, size_hint: usize) -> Vec<u8> {
        let inner = self.inner.lock().expect("live lock");
        engine::snapshot::Snapshot::encode_of(&inner.state, &inner.plan, size_hint)
    }

    /// Judges readings whose transitions are already on record (after a
    /// restart from a snapshot): the state moves, nothing is told.
    pub fn rejudge(&self, readings: &[Reading], now: TimestampNs) {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        engine::step(state, plan, Input::Readings(readings), now);
        let plan = plan.clone();
        drop(inner);
        self.record_history(&plan, readings);
    }

    /// Judges readings at `now`; the transitions they made.
    pub fn readings(&self, readings: &[Reading], now: TimestampNs) -> Vec<Transition> {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        let out = engine::step(state, plan, Input::Readings(readings), now);
        let plan = plan.clone();
        drop(inner);
        self.record_history(&plan, readings);
        self.after(&plan, &out);
        self.version.send_modify(|v| *v += 1);
        out
    }

    fn record_history(&self, plan: &Plan, readings: &[Reading]) {
        let mut history = self.history.lock().expect("history lock");
        for r in readings {
            let Some((_, site)) = plan.site(&r.site) else { continue };
            if let (Some(keep), crate::reading::Value::Float(v)) =
                (crate::history::keep_for(site, &r.metric), r.value)
            {
                history.record(&r.site, &r.metric, r.ts, v, keep);
            }
        }
    }

    /// Level changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Cancelled once the engine task has stopped (shutdown).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Moves whenever readings arrive or levels change.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Lets time pass; the transitions that made (sustains completed,
    /// sites gone silent).
    pub fn tick(&self, now: TimestampNs) -> Vec<Transition> {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        let out = engine::step(state, plan, Input::Tick, now);
        let offline = state.sites.iter().filter(|s| s.offline).count();
        let plan = plan.clone();
        drop(inner);
        self.metrics.sites_offline.set(offline as i64);
        self.after(&plan, &out);
        out
    }

    /// floodguard's intake `id` (`mqtt`) went up or down; the transitions
    /// that made (a recovery).
    pub fn intake(&self, id: &str, up: bool, now: TimestampNs) -> Vec<Transition> {
        let mut inner = self.inner.lock().expect("live lock");
        let Inner { plan, state } = &mut *inner;
        let out = engine::step(state, plan, Input::Intake { id, up }, now);
        let plan = plan.clone();
        drop(inner);
        self.after(&plan, &out);
        out
    }

    /// Switches to a new plan, carrying state over; the transitions the
    /// change of plan made.
    pub fn reload(&self, new: Arc<Plan>, now: TimestampNs) -> Vec<Transition> {
        let mut inner = self.inner.lock().expect("live lock");
        let old = inner.plan.clone();
        let state = std::mem::replace(&mut inner.state, State::new(&new, now));
        let (state, out) = state.carry_over(&old, &new, now);
        inner.state = state;
        inner.plan = new.clone();
        drop(inner);
        self.history.lock().expect("history lock").retain(|site, _| new.site(site).is_some());
        self.after(&new, &out);
        out
    }

    /// The engine stage has stopped: event streams end.
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.inner.lock().expect("live lock").plan.clone()
    }

    pub fn sites(&self, now: TimestampNs) -> SitesView {
        let inner = self.inner.lock().expect("live lock");
        let (plan, state) = (&inner.plan, &inner.state);
        SitesView {
            now: engine::rfc3339(now, self.timezone),
            timezone: self.timezone.name().to_string(),
            district: AreaView {
                id: plan.district_id.to_string(),
                name: plan.district_name.to_string(),
                name_en: plan.district_name_en.as_deref().map(str::to_string),
                level: state.district,
            },
            streets: plan
                .streets
                .iter()
                .zip(&state.streets)
                .map(|(s, l)| AreaView {
                    id: s.id.to_string(),
                    name: s.name.to_string(),
                    name_en: s.name_en.as_deref().map(str::to_string),
                    level: *l,
                })
                .collect(),
            sites: (0..plan.sites.len())
                .map(|i| {
                    with_source(
                        engine::site_view(plan, state, i, now, self.timezone),
                        &self.sources,
                        self.timezone,
                    )
                })
                .collect(),
        }
    }

    /// `/api/v1/sites` as JSON bytes, the same document as [`Live::sites`],
    /// written one site at a time: at 10,000 sites the views of all sites
    /// at once cost several times the 6 MB of JSON they make.
    pub fn sites_json(&self, now: TimestampNs) -> Vec<u8> {
        let inner = self.inner.lock().expect("live lock");
        // Sized once: a buffer that doubles past 7 MB at 10,000 sites would
        // hold 14 MB for a moment.
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.sites_json_len.load(Relaxed);
        let guess = if last > 0 { last + last / 16 } else { 1024 + inner.plan.sites.len() * 900 };
        let mut out = Vec::with_capacity(guess);
        let doc = SitesJson {
            plan: &inner.plan,
            state: &inner.state,
            now,
            tz: self.timezone,
            sources: &self.sources,
        };
        serde_json::to_writer(&mut out, &doc).expect("serializing to memory");
        self.sites_json_len.store(out.len(), Relaxed);
        out
    }

    pub fn site(&self, id: &str, now: TimestampNs) -> Option<SiteView> {
        let inner = self.inner.lock().expect("live lock");
        let (i, _) = inner.plan.site(id)?;
        Some(with_source(
            engine::site_view(&inner.plan, &inner.state, i, now, self.timezone),
            &self.sources,
            self.timezone,
        ))
    }
}
