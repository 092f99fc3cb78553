//! Liveness and readiness: what `/healthz` and `/readyz` answer.
//!
//! Ready means: connected to the broker, every stage making progress on
//! the work it has (see `stage`), no writer finding its disk full (see
//! `disk`), and — when InfluxDB is configured — the spool is not falling
//! behind (its oldest unwritten reading is younger than
//! `influxdb.max_lag`). The decision is a pure function of a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::spool::SpoolStats;
use crate::stage::{self, Stages};

/// State the I/O tasks report into.
#[derive(Debug)]
pub struct Health {
    pub mqtt_connected: AtomicBool,
    /// The last write error, cleared by the next success.
    pub influx_error: Mutex<Option<String>>,
    /// `None` in spool-only mode.
    pub max_lag: Option<Duration>,
    pub spool: Arc<SpoolStats>,
    /// Every stage's probe.
    pub stages: Stages,
    /// Conditions an operator must see that do not make the daemon unready
    /// (a notification provider refusing its credentials), by key.
    pub warnings: Mutex<BTreeMap<String, String>>,
    /// Writers (spool, state.db) that find their disk full.
    pub disk: Arc<crate::disk::Disk>,
    /// This node's role (`/readyz` shows it; an unreachable PostgreSQL
    /// state makes the node unready).
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl Health {
    pub fn new(spool: Arc<SpoolStats>, max_lag: Option<Duration>) -> Self {
        Self::with_stages(spool, max_lag, Stages::default())
    }

    pub fn with_stages(spool: Arc<SpoolStats>, max_lag: Option<Duration>, stages: Stages) -> Self {
        Health {
            mqtt_connected: AtomicBool::new(false),
            influx_error: Mutex::new(None),
            max_lag,
            spool,
            stages,
            disk: Arc::new(crate::disk::Disk::default()),
            warnings: Mutex::new(BTreeMap::new()),
            cluster: crate::cluster::Cluster::single(String::new()),
        }
    }

    /// Sets (Some) or clears (None) the warning under `key`.
    pub fn set_warning(&self, key: &str, text: Option<String>) {
        let mut w = self.warnings.lock().expect("health lock");
        match text {
            Some(t) => {
                w.insert(key.to_string(), t);
            }
            None => {
                w.remove(key);
            }
        }
    }

    /// The node's cluster handle (the daemon's; a single SQLite node by default).
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    pub fn set_influx_error(&self, e: Option<String>) {
        *self.influx_error.lock().expect("health lock") = e;
    }

    pub fn readiness(&self, now_ms: i64) -> Readiness {
        judge(Snapshot {
            mqtt_connected: self.mqtt_connected.load(Ordering::Relaxed),
            pending_records: self.spool.pending_records.load(Ordering::Relaxed).max(0),
            lag_seconds: self.spool.lag_seconds(now_ms),
            influx_error: self.influx_error.lock().expect("health lock").clone(),
            max_lag: self.max_lag,
            stages: self
                .stages
                .snapshots()
                .iter()
                .map(|p| (p.name, stage::judge(p, now_ms, stage::STALL_AFTER)))
                .collect(),
            warnings: self.warnings.lock().expect("health lock").values().cloned().collect(),
            disk: self.disk.problems(),
            role: self.cluster.role(),
            state_problem: self.cluster.unreachable(),
        })
    }
}

/// The inputs of the readiness decision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mqtt_connected: bool,
    pub pending_records: i64,
    pub lag_seconds: f64,
    pub influx_error: Option<String>,
    pub max_lag: Option<Duration>,
    /// Each stage as judged at the same moment.
    pub stages: Vec<(&'static str, stage::Status)>,
    /// Shown, never failing readiness.
    pub warnings: Vec<String>,
    /// "disk full: spool in …" per writer that cannot write.
    pub disk: Vec<String>,
    pub role: crate::cluster::Role,
    /// The shared state (PostgreSQL) unreachable for longer than the lease.
    pub state_problem: Option<String>,
}

/// The body of `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    pub broker: &'static str,
    pub storage: String,
    pub spool_pending_records: i64,
    pub spool_lag_seconds: f64,
    /// `ok`, or which disk is full (nothing new is acknowledged meanwhile).
    pub disk: String,
    /// `leader` (records alerts, notifies) or `standby` (ingests and judges;
    /// serves the page and the API): both are ready when healthy.
    pub role: crate::cluster::Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// What an operator must see without the daemon being unready (a
    /// notification provider refusing floodguard's credentials).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `{name: {"ok", "queued", "oldest_s", "problem"}}`, by stage name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<&'static str, stage::Status>,
}

pub fn judge(s: Snapshot) -> Readiness {
    let mut problems = Vec::new();
    if !s.mqtt_connected {
        problems.push("not connected to the MQTT broker".to_string());
    }
    let storage = match s.max_lag {
        None => "spool only".to_string(),
        Some(max) => {
            if s.lag_seconds > max.as_secs_f64() {
                problems.push(format!(
                    "storage falling behind: oldest unwritten reading is {:.0} s old (limit {} s), {} pending",
                    s.lag_seconds,
                    max.as_secs(),
                    s.pending_records
                ));
            }
            match &s.influx_error {
                Some(e) => format!("InfluxDB failing: {e}"),
                None => "InfluxDB ok".to_string(),
            }
        }
    };
    problems.extend(s.disk.iter().cloned());
    if let Some(p) = &s.state_problem {
        problems.push(format!("state store unreachable: {p}"));
    }
    for (name, st) in &s.stages {
        if !st.ok {
            problems.push(st.problem.clone().unwrap_or_else(|| format!("stage {name} stalled")));
        }
    }
    let disk = if s.disk.is_empty() { "ok".to_string() } else { s.disk.join("; ") };
    Readiness {
        disk,
        stages: s.stages.into_iter().collect(),
        ready: problems.is_empty(),
        broker: if s.mqtt_connected { "connected" } else { "disconnected" },
        storage,
        spool_pending_records: s.pending_records,
        spool_lag_seconds: s.lag_seconds,
        role: s.role,
        problems,
        warnings: s.warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            mqtt_connected: true,
            pending_records: 0,
            lag_seconds: 0.0,
            influx_error: None,
            max_lag: Some(Duration::from_secs(30)),
            stages: Vec::new(),
            warnings: Vec::new(),
            disk: Vec::new(),
            role: crate::cluster::Role::Leader,
            state_problem: None,
        }
    }

    #[test]
    fn ready_when_connected_and_caught_up() {
        let r = judge(snap());
        assert!(r.ready);
        assert_eq!(r.storage, "InfluxDB ok");
    }

    #[test]
    fn not_ready_without_the_broker() {
        let r = judge(Snapshot { mqtt_connected: false, ..snap() });
        assert!(!r.ready);
        assert_eq!(r.broker, "disconnected");
    }

    #[test]
    fn a_short_error_with_little_lag_is_still_ready() {
        let r = judge(Snapshot {
            influx_error: Some("HTTP 503".into()),
            lag_seconds: 2.0,
            pending_records: 10,
            ..snap()
        });
        assert!(r.ready, "a blip is not a reason to be pulled from rotation");
        assert_eq!(r.storage, "InfluxDB failing: HTTP 503");
    }

    #[test]
    fn lag_past_the_limit_is_not_ready() {
        let r = judge(Snapshot {
            lag_seconds: 31.0,
            pending_records: 5000,
            influx_error: Some("connection refused".into()),
            ..snap()
        });
        assert!(!r.ready);
        assert!(r.problems[0].contains("falling behind"), "{:?}", r.problems);
    }

    #[test]
    fn a_stalled_stage_fails_readiness_and_is_named() {
        let ok = stage::Status { ok: true, queued: 0, oldest_s: 0.0, problem: None };
        let stalled = stage::Status {
            ok: false,
            queued: 40,
            oldest_s: 7.0,
            problem: Some("stage alerts stalled: no progress for 6 s with 40 waiting".into()),
        };
        let r = judge(Snapshot { stages: vec![("outlet", ok.clone()), ("alerts", stalled)], ..snap() });
        assert!(!r.ready);
        assert!(r.problems[0].contains("stage alerts stalled"), "{:?}", r.problems);
        assert!(r.stages["outlet"].ok && !r.stages["alerts"].ok);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["stages"]["alerts"]["queued"], 40);
        assert_eq!(json["stages"]["alerts"]["oldest_s"], 7.0);
        let r = judge(Snapshot { stages: vec![("outlet", ok)], ..snap() });
        assert!(r.ready);
    }

    #[test]
    fn a_warning_is_shown_and_keeps_readiness() {
        let r = judge(Snapshot {
            warnings: vec!["the sms provider refuses floodguard's credentials".into()],
            ..snap()
        });
        assert!(r.ready);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["warnings"][0], "the sms provider refuses floodguard's credentials");
        assert!(serde_json::to_value(judge(snap())).unwrap().get("warnings").is_none());
    }

    #[test]
    fn a_full_disk_fails_readiness_naming_it() {
        let full = "disk full: spool in /var/lib/floodguard/spool: 3.0 MiB free of 32.0 MiB".to_string();
        let r = judge(Snapshot { disk: vec![full.clone()], ..snap() });
        assert!(!r.ready);
        assert_eq!(r.disk, full);
        assert_eq!(r.problems, [full]);
        assert_eq!(judge(snap()).disk, "ok");
    }

    #[test]
    fn spool_only_ignores_lag() {
        let r = judge(Snapshot { max_lag: None, lag_seconds: 1e6, pending_records: 9, ..snap() });
        assert!(r.ready);
        assert_eq!(r.storage, "spool only");
    }

    #[test]
    fn a_standby_is_ready_and_says_so_and_an_unreachable_state_is_not() {
        let r = judge(Snapshot { role: crate::cluster::Role::Standby, ..snap() });
        assert!(r.ready);
        assert_eq!(serde_json::to_value(&r).unwrap()["role"], "standby");
        let r = judge(Snapshot {
            state_problem: Some("PostgreSQL state (postgres://…): refused".into()),
            ..snap()
        });
        assert!(!r.ready);
        assert!(r.problems[0].starts_with("state store unreachable: PostgreSQL"), "{:?}", r.problems);
    }
}
