//! The alert managers of two nodes on one PostgreSQL 15 state: only the
//! leader records the engine's changes and runs the follow-ups; an ack on
//! the standby stops the leader's repeats and escalations; a standby that
//! takes over records what the old leader had judged and not recorded,
//! with the times it was judged at, and tells only that.

use std::sync::{Arc, Mutex};

use floodguard::alerts::model::Notification;
use floodguard::alerts::shadow::Shadow;
use floodguard::alerts::store::Store;
use floodguard::alerts::{AlertManager, Notifier, OpError, Places};
use floodguard::config::Kind;
use floodguard::engine::{Change, SiteChange, Transition};
use floodguard::level::Level::{self, *};
use floodguard::state::pg::Target;

use crate::cluster::{wait_until, Node, LEASE};
use crate::support::postgres::Postgres;

const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;
/// 2026-07-21 14:00 +08:00
const T0: i64 = 1_784_613_600_000_000_000;

/// What a node's manager handed to its outbox: `kind site level` per intent.
#[derive(Default)]
struct Capture(Mutex<Vec<String>>);

impl Notifier for Capture {
    fn notify(&self, n: &Notification) {
        let mut sent = self.0.lock().unwrap();
        for i in &n.intents {
            sent.push(format!("{} {} {}", i.kind, i.alert.site, i.alert.level.map_or("-", |l| l.as_str())));
        }
    }
}

impl Capture {
    fn take(&self) -> Vec<String> {
        let mut v = std::mem::take(&mut *self.0.lock().unwrap());
        v.sort();
        v.dedup();
        v
    }
}

fn manager(pgs: &Postgres, node: &Node, cap: Arc<Capture>) -> AlertManager {
    let main = crate::support::floodguard::sample_config_dir().join("floodguard.toml");
    let c = floodguard::config::load_with_env(&main, &Default::default()).unwrap();
    let store = Store::postgres(&Target::new(&pgs.url(), None).unwrap(), LEASE).unwrap();
    AlertManager::new(store, c.teams.clone(), Places::from_plan(&c.plan), cap, None, None)
        .unwrap()
        .in_cluster(node.cluster.clone())
}

fn site(site: &str, street: &str, from: Option<Level>, to: Option<Level>, value: f64, at: i64) -> Transition {
    Transition {
        at,
        change: Change::Site(SiteChange {
            site: site.into(),
            site_name: format!("{site}名").into(),
            street: street.into(),
            kind: Kind::Waterlogging,
            rule: "depth".into(),
            rule_name: "积水深度".into(),
            from,
            to,
            metric: Some("water_depth_cm".into()),
            value: Some(value),
            unit: "cm".into(),
            threshold: to.map(|_| 10.0),
            trend: None,
            eta: None,
            card: None,
            suspect: None,
        }),
    }
}

#[test]
fn an_ack_on_the_standby_stops_the_leaders_repeats_and_the_standby_records_nothing() {
    let pgs = Postgres::start();
    let a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let (cap_a, cap_b) = (Arc::new(Capture::default()), Arc::new(Capture::default()));
    let ma = manager(&pgs, &a, cap_a.clone());
    let mb = manager(&pgs, &b, cap_b.clone());

    // The standby judges the same change; it records nothing, tells no one.
    let rise = [site("BH-JS-01", "binhe", None, Some(II), 28.0, T0)];
    assert!(matches!(mb.handle(&rise, None), Err(OpError::Fenced(_))));
    assert!(matches!(mb.tick(T0 + 15 * MIN), Err(OpError::Fenced(_))));
    ma.handle(&rise, None).unwrap();
    ma.tick(T0 + 30 * S).unwrap();
    assert!(cap_a.take().iter().any(|s| s == "firing BH-JS-01 II"));
    // Ⅱ escalates after 15 min: the leader tells the chain's next tier.
    ma.tick(T0 + 15 * MIN).unwrap();
    ma.tick(T0 + 15 * MIN + 30 * S).unwrap();
    assert_eq!(cap_a.take(), ["escalation BH-JS-01 II"]);

    // Acked on the standby's API: the leader, whose memory held the alert
    // unacked, sees the ack at its next transaction and stops.
    let alerts = mb.alerts(true, 10).unwrap();
    assert_eq!(alerts.len(), 1, "the standby reads the shared record");
    mb.ack(alerts[0].id, "赵队长", None, T0 + 16 * MIN).unwrap();
    for m in [30, 31, 45, 46, 60, 61, 90, 91] {
        ma.tick(T0 + m * MIN).unwrap();
    }
    assert_eq!(cap_a.take(), Vec::<String>::new(), "no repeat or escalation after the ack");
    assert_eq!(cap_b.take(), Vec::<String>::new(), "the standby never tells");
    let on_record = ma.alerts(true, 10).unwrap();
    assert_eq!(on_record[0].acked_by.as_deref(), Some("赵队长"));
}

#[test]
fn a_standby_taking_over_records_what_the_old_leader_had_not_and_tells_only_that() {
    let pgs = Postgres::start();
    let mut a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let (cap_a, cap_b) = (Arc::new(Capture::default()), Arc::new(Capture::default()));
    let ma = manager(&pgs, &a, cap_a.clone());
    let mb = manager(&pgs, &b, cap_b.clone());

    // Both judge; the leader records the first change of each site and
    // dies before it records the rest (the standby keeps them all).
    let first = [
        site("CD-JS-01", "chengdong", None, Some(II), 28.0, T0),
        site("BH-JS-01", "binhe", None, Some(II), 27.0, T0),
    ];
    let then = [
        site("CD-JS-01", "chengdong", Some(II), Some(I), 41.0, T0 + MIN),
        site("BH-JS-02", "binhe", None, Some(II), 26.0, T0 + MIN),
    ];
    ma.handle(&first, None).unwrap();
    ma.tick(T0 + 30 * S).unwrap();
    let told_by_a = cap_a.take();
    assert_eq!(told_by_a, ["firing BH-JS-01 II", "firing CD-JS-01 II"]);
    let mut shadow = Shadow::default();
    shadow.record(&first);
    shadow.record(&then);

    a.stop();
    wait_until("fg-b to lead", LEASE * 3, || b.cluster.term().is_some());
    // The deposed node's manager records nothing more.
    assert!(matches!(ma.tick(T0 + 2 * MIN), Err(OpError::Fenced(_))));
    let applied = mb.take_over(&shadow, T0 + 2 * MIN).unwrap();
    assert_eq!(applied, 2, "what the record lacked: CD-JS-01 at Ⅰ, BH-JS-02");
    mb.tick(T0 + 2 * MIN + 30 * S).unwrap();
    let told_by_b = cap_b.take();
    assert!(told_by_b.iter().any(|s| s == "escalated CD-JS-01 I"), "{told_by_b:?}");
    assert!(told_by_b.iter().any(|s| s == "firing BH-JS-02 II"), "{told_by_b:?}");
    assert!(
        !told_by_b.iter().any(|s| s.contains("BH-JS-01")),
        "told by the old leader already: {told_by_b:?}"
    );
    let alerts = mb.alerts(true, 10).unwrap();
    let cd = alerts.iter().find(|x| x.site == "CD-JS-01").unwrap();
    assert_eq!(cd.level, Some(I));
    let times: Vec<i64> = cd.timeline.iter().map(|e| (e.ts - T0) / S).collect();
    assert!(times.contains(&60), "the escalation at the time it was judged: {times:?}");
    assert_eq!(alerts.iter().filter(|x| x.site == "BH-JS-01").count(), 1, "one alert, not two");
    assert_eq!(cap_a.take(), Vec::<String>::new());
}

/// A node's alert stage on its own thread, fed as its engine feeds it.
struct StageThread {
    inbox: floodguard::alerts::stage::Inbox,
    stop: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StageThread {
    fn start(manager: Arc<AlertManager>) -> StageThread {
        use floodguard::alerts::stage::{AlertStage, Inbox};
        let (inbox, rx) = Inbox::channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let st = AlertStage {
            manager,
            inbox: rx,
            probe: floodguard::stage::Probe::new("alerts"),
            committed: Box::new(|_| {}),
            disk: None,
            clock: floodguard::clock::Clock::wall(),
        };
        let s = stop.clone();
        let thread = std::thread::spawn(move || st.run(s));
        StageThread { inbox, stop, thread: Some(thread) }
    }

    fn judge(&self, transitions: &[Transition]) {
        use floodguard::engine::{Judged, TransitionSink};
        self.inbox.deliver(Judged { transitions: transitions.to_vec(), upto: None }).unwrap();
    }

    /// Stops it as SIGTERM does; it must return.
    fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("the alert stage stops");
        }
    }
}

impl Drop for StageThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn the_standbys_alert_stage_records_nothing_then_takes_over_when_the_leader_stops() {
    let pgs = Postgres::start();
    let mut a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let (cap_a, cap_b) = (Arc::new(Capture::default()), Arc::new(Capture::default()));
    let ma = Arc::new(manager(&pgs, &a, cap_a.clone()));
    let mb = Arc::new(manager(&pgs, &b, cap_b.clone()));
    let (mut sa, mut sb) = (StageThread::start(ma.clone()), StageThread::start(mb.clone()));
    let t0 = floodguard::clock::wall_ns() - 5 * MIN;

    // Both engines judge the rise; the leader records it once and tells it.
    let rise = [site("CD-JS-01", "chengdong", None, Some(II), 28.0, t0)];
    sa.judge(&rise);
    sb.judge(&rise);
    wait_until("the leader to tell the rise", LEASE * 3, || {
        cap_a.0.lock().unwrap().iter().any(|s| s == "firing CD-JS-01 II")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(mb.alerts(false, 10).unwrap().len(), 1, "one alert on record, not one per node");

    // The leader stops before it hears the next changes; the standby's
    // engine judged them.
    sa.stop();
    let then = [
        site("CD-JS-01", "chengdong", Some(II), Some(I), 41.0, t0 + MIN),
        site("BH-JS-02", "binhe", None, Some(II), 26.0, t0 + MIN),
    ];
    sb.judge(&then);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(mb.alerts(false, 10).unwrap().len(), 1, "the standby records nothing while another leads");
    a.stop();
    wait_until("fg-b to lead", LEASE * 3, || b.cluster.term().is_some());
    wait_until("the new leader to record what it judged", LEASE * 3, || {
        let alerts = mb.alerts(true, 10).unwrap();
        alerts.len() == 2 && alerts.iter().any(|x| x.site == "CD-JS-01" && x.level == Some(I))
    });
    wait_until("the new leader to tell it", LEASE * 3, || {
        let told = cap_b.0.lock().unwrap();
        told.iter().any(|s| s == "escalated CD-JS-01 I") && told.iter().any(|s| s == "firing BH-JS-02 II")
    });
    let told_by_b = cap_b.take();
    assert!(
        !told_by_b.iter().any(|s| s == "firing CD-JS-01 II"),
        "told by the old leader already: {told_by_b:?}"
    );
    let cd = mb.alerts(true, 10).unwrap().into_iter().find(|x| x.site == "CD-JS-01").unwrap();
    assert!(cd.timeline.iter().any(|e| e.ts == t0 + MIN), "recorded at the time it was judged");
    sb.stop();
}
