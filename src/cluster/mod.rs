//! Two nodes, one voice: which node leads.
//!
//! Every node ingests, spools, writes InfluxDB and judges every reading;
//! only the leader records the engine's changes as alerts, runs the
//! follow-ups (repeats, escalations, group flushes) and sends. With the
//! SQLite state there is one node and it always leads ([`Cluster::single`]).
//! With PostgreSQL the nodes elect a leader through a lease row
//! ([`keeper`], SQL in [`sql`], timing in [`lease`]): the leader holds an
//! epoch that only grows, every write it makes carries it, and the database
//! refuses the writes of an epoch that no longer leads (the fence).
//!
//! [`Cluster`] is what the stages ask: [`Cluster::term`] is this node's
//! epoch while it may act as the leader — by its own clock, so a leader cut
//! off from the database stops a margin before its lease can lapse, before
//! anyone else can start — and `None` otherwise.

pub mod keeper;
pub mod lease;
pub mod sql;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::reading::TimestampNs;

/// This node's role now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// `GET /api/v1/cluster`: this node, its role, who leads and since when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub node: String,
    pub role: Role,
    /// The node holding the lease as last seen (`None`: nobody yet, or
    /// the database cannot be reached).
    pub leader: Option<String>,
    /// The leader's epoch as last seen (0: the single-node SQLite state).
    pub epoch: i64,
    /// When the leader took the lease (database time), ns.
    pub since: Option<TimestampNs>,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub lease_seconds: f64,
    /// Why the lease cannot be kept or read now (the database unreachable).
    pub problem: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// While this node leads: its epoch and until when it may act.
    leading: Option<(i64, Instant)>,
    leader: Option<String>,
    epoch: i64,
    since: Option<TimestampNs>,
    problem: Option<String>,
    /// When the database was last reached.
    reached: Option<Instant>,
}

pub struct Cluster {
    node: String,
    timing: lease::Timing,
    backend: &'static str,
    inner: Mutex<Inner>,
    takeovers: AtomicU64,
    /// Bumped at every change of role or leader: stages waiting for one
    /// (the outbox's senders) wake on it.
    changed: tokio::sync::watch::Sender<u64>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).field("backend", &self.backend).finish()
    }
}

impl Cluster {
    /// One node on the SQLite state: always the leader, epoch 0.
    pub fn single(node: String) -> Arc<Cluster> {
        let c = Cluster::new(node.clone(), Duration::from_secs(10), "sqlite");
        {
            let mut i = c.inner.lock().expect("cluster lock");
            // Never runs out (a century).
            i.leading = Some((0, Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)));
            i.leader = Some(node);
            i.reached = Some(Instant::now());
        }
        Arc::new(c)
    }

    /// A node of a PostgreSQL cluster: a standby until [`keeper`] wins the lease.
    pub fn postgres(node: String, lease: Duration) -> Arc<Cluster> {
        Arc::new(Cluster::new(node, lease, "postgres"))
    }

    fn new(node: String, lease: Duration, backend: &'static str) -> Cluster {
        Cluster {
            node,
            timing: lease::Timing::new(lease),
            backend,
            inner: Mutex::new(Inner::default()),
            takeovers: AtomicU64::new(0),
            changed: tokio::sync::watch::channel(0).0,
            metrics: None,
        }
    }

    /// Counts takeovers and shows the role in `/metrics`.
    pub fn with_metrics(mut self: Arc<Self>, metrics: Arc<Metrics>) -> Arc<Self> {
        if let Some(c) = Arc::get_mut(&mut self) {
            c.metrics = Some(metrics);
        }
        self.observe_metrics();
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn timing(&self) -> lease::Timing {
        self.timing
    }

    /// Whether several nodes share the state (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.backend == "postgres"
    }

    /// This node's epoch while it may act as the leader; `None` otherwise.
    pub fn term(&self) -> Option<i64> {
        self.term_at(Instant::now())
    }

    pub fn term_at(&self, now: Instant) -> Option<i64> {
        let i = self.inner.lock().expect("cluster lock");
        i.leading.filter(|(_, until)| now < *until).map(|(e, _)| e)
    }

    pub fn role(&self) -> Role {
        if self.term().is_some() {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// Wakes when the role or the leader changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Takeovers by this node since it started.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        let role = self.role();
        let i = self.inner.lock().expect("cluster lock");
        Status {
            node: self.node.clone(),
            role,
            leader: i.leader.clone(),
            epoch: i.epoch,
            since: i.since,
            backend: self.backend,
            lease_seconds: self.timing.lease.as_secs_f64(),
            problem: i.problem.clone(),
        }
    }

    /// The database has not been reached for longer than the lease (for `/readyz`).
    pub fn unreachable(&self) -> Option<String> {
        let i = self.inner.lock().expect("cluster lock");
        let long = i.reached.is_none_or(|t| t.elapsed() > self.timing.lease);
        i.problem.clone().filter(|_| long)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
        self.observe_metrics();
    }

    /// Sets the role gauges (also at each scrape: a lease may lapse by time alone).
    pub fn observe_metrics(&self) {
        if let Some(m) = &self.metrics {
            let s = self.status();
            m.cluster_leader.set(i64::from(s.role == Role::Leader));
            m.cluster_epoch.set(s.epoch);
        }
    }

    // The keeper's reports.

    /// This node took the lease at `epoch`, asked at `sent`.
    pub(crate) fn took(&self, epoch: i64, since: TimestampNs, sent: Instant) {
        {
            let mut i = self.inner.lock().expect("cluster lock");
            i.leading = Some((epoch, self.timing.valid_until(sent)));
            i.leader = Some(self.node.clone());
            i.epoch = epoch;
            i.since = Some(since);
            i.problem = None;
            i.reached = Some(Instant::now());
        }
        self.takeovers.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.cluster_takeovers.inc();
        }
        tracing::warn!(node = %self.node, epoch, "this node leads now");
        self.bump();
    }

    /// The lease at `epoch` was renewed, asked at `sent`.
    pub(crate) fn renewed(&self, epoch: i64, sent: Instant) {
        let mut i = self.inner.lock().expect("cluster lock");
        if let Some((e, until)) = &mut i.leading {
            if *e == epoch {
                *until = (*until).max(self.timing.valid_until(sent));
            }
        }
        i.problem = None;
        i.reached = Some(Instant::now());
    }

    /// This node no longer leads (`why`: renewal refused, lapsed, stopping).
    pub(crate) fn lost(&self, why: &str) {
        let was = {
            let mut i = self.inner.lock().expect("cluster lock");
            i.leading.take()
        };
        if let Some((epoch, _)) = was {
            tracing::warn!(node = %self.node, epoch, why, "this node no longer leads");
            if let Some(m) = &self.metrics {
                m.cluster_lease_lost.inc();
            }
        }
        self.bump();
    }

    /// Another node (or nobody) holds the lease, as read from the database.
    pub(crate) fn seen(&self, leader: Option<String>, epoch: i64, since: Option<TimestampNs>) {
        let changed = {
            let mut i = self.inner.lock().expect("cluster lock");
            let changed = i.leader != leader || i.epoch != epoch;
            i.leader = leader;
            i.epoch = epoch;
            i.since = since;
            i.problem = None;
            i.reached = Some(Instant::now());
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// The database cannot be reached or answered with an error.
    pub(crate) fn failing(&self, problem: String) {
        let mut i = self.inner.lock().expect("cluster lock");
        i.problem = Some(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_always_leads_at_epoch_0() {
        let c = Cluster::single("a".into());
        assert_eq!(c.term(), Some(0));
        let s = c.status();
        assert_eq!((s.role, s.leader.as_deref(), s.epoch, s.backend), (Role::Leader, Some("a"), 0, "sqlite"));
        assert_eq!(c.unreachable(), None);
    }

    #[test]
    fn a_leader_stops_acting_when_its_lease_runs_out_by_its_own_clock() {
        let c = Cluster::postgres("a".into(), Duration::from_secs(10));
        assert_eq!(c.term(), None, "a standby until it takes the lease");
        let sent = Instant::now();
        let woken = c.subscribe();
        c.took(4, 1, sent);
        assert!(woken.has_changed().unwrap());
        assert_eq!(c.term_at(sent + Duration::from_secs(8)), Some(4));
        // No renewal reached the database: it stops a margin before the
        // lease can lapse there, without being told.
        assert_eq!(c.term_at(sent + Duration::from_secs(9)), None);
        c.renewed(4, sent + Duration::from_secs(3));
        assert_eq!(c.term_at(sent + Duration::from_secs(11)), Some(4));
        // A renewal of another epoch does not extend this one.
        c.renewed(5, sent + Duration::from_secs(30));
        assert_eq!(c.term_at(sent + Duration::from_secs(13)), None);
        c.lost("test");
        assert_eq!(c.term(), None);
        assert_eq!(c.takeovers(), 1);
    }
}
