//! The outbox, its delivery log, budgets, receipts, alarms and ack-link
//! nonces on a real PostgreSQL 15 state shared by two nodes: the same SQL
//! as on `state.db` (tests in src/notify/tests.rs), the leader's writes
//! only on the leader, a nonce used on the standby.

use floodguard::alerts::store::Store;
use floodguard::notify::message::Rendered;
use floodguard::notify::outbox::{Body, Finish, NewRow, OutboxDb};
use floodguard::state::pg::Target;

use crate::cluster::{wait_until, Node, LEASE};
use crate::support::postgres::Postgres;

fn body(alert: i64) -> Body {
    Body {
        rendered: Rendered {
            subject: format!("subject {alert}"),
            text: format!("text {alert}"),
            html: format!("<p>{alert}</p>"),
            sms: format!("【某区防汛】Ⅲ级黄色预警 {alert}"),
            markdown: format!("md {alert}"),
            params: Default::default(),
            voice: String::new(),
        },
        to: "13800000101".into(),
        secret: None,
        alert_ids: vec![alert],
        merged: 1,
        labels: vec![format!("Ⅲ 积水点{alert}")],
    }
}

fn new_row<'a>(n: i64, channel: &'a str, key: &'a str, b: &'a Body) -> NewRow<'a> {
    NewRow {
        notification_id: n,
        channel,
        recipient: "13800000101",
        recipient_name: "张队长",
        team: "team1",
        body: b,
        key,
        priority: 3,
        fallback_of: None,
    }
}

fn fin<'a>(state: &'a str, next: i64, check_at: Option<i64>) -> Finish<'a> {
    Finish {
        state,
        next_attempt_at: next,
        outcome: state,
        response: "OK",
        provider_id: Some("biz-1"),
        check_at,
        held: None,
        sent_bytes: 0,
        part_max: None,
    }
}

#[test]
fn the_outbox_on_postgres_queues_once_per_key_merges_sends_and_is_the_leaders() {
    let pgs = Postgres::start();
    let a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let target = Target::new(&pgs.url(), None).unwrap();
    drop(Store::postgres(&target, LEASE).unwrap());
    let mut lead = OutboxDb::postgres(&target, LEASE).unwrap().in_cluster(a.cluster.clone());
    let mut standby = OutboxDb::postgres(&target, LEASE).unwrap().in_cluster(b.cluster.clone());
    let n: i64 = pgs
        .psql("INSERT INTO notifications (team, created_at, body) VALUES ('team1', 1, '{}') RETURNING id")
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lead.unqueued_notifications(10).unwrap().len(), 1);

    // Queued once per key, with the alerts they tell of and the nonce.
    let (b1, b2) = (body(1), body(2));
    let rows = [new_row(n, "sms", "n1:sms:a", &b1), new_row(n, "sms", "n1:sms:b", &b2)];
    let nonce = [("nonce-1".to_string(), 1, "张队长".to_string())];
    assert!(standby.enqueue(n, &rows, &nonce, 100).unwrap_err().is_fenced(), "a standby queues nothing");
    assert_eq!(lead.enqueue(n, &rows, &nonce, 100).unwrap(), 2);
    assert_eq!(lead.enqueue(n, &rows, &nonce, 200).unwrap(), 0, "the same keys are not queued twice");
    assert!(lead.unqueued_notifications(10).unwrap().is_empty());
    assert_eq!(lead.add_rows(&rows[..1], 300).unwrap().len(), 1);

    // Due in order; merged into one; sent with a receipt to wait for.
    let due = standby.due(&["sms"], 100, 10).unwrap();
    assert_eq!(due.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["n1:sms:a", "n1:sms:b"]);
    assert_eq!(lead.next_due(&["sms"]).unwrap(), Some(100));
    assert_eq!(lead.in_flight(100).unwrap(), 2);
    assert_eq!(lead.due_figures(100).unwrap(), (2, Some(100)));
    let (keep, other) = (due[0].id, due[1].id);
    assert_eq!(lead.queued_for("sms", "13800000101", keep).unwrap().len(), 1);
    let mut merged = b1.clone();
    merged.alert_ids.push(2);
    merged.merged = 2;
    assert!(lead.merge(keep, &merged, &[other]).unwrap());
    assert!(!lead.merge(keep, &merged, &[other]).unwrap(), "the other is merged already: nothing changes");
    lead.set_priority(keep, 4).unwrap();
    assert_eq!(lead.get(keep).unwrap().unwrap().priority, 4);
    assert!(standby.start(keep, 1, 400).unwrap_err().is_fenced(), "a standby sends nothing");
    let d = lead.start(keep, 1, 400).unwrap().expect("queued");
    assert_eq!(lead.start(keep, 1, 400).unwrap(), None, "started once");
    lead.finish(keep, d, &fin("sent", 400, Some(500)), true, 410).unwrap();
    let sent = lead.get(keep).unwrap().unwrap();
    assert_eq!(
        (sent.state.as_str(), sent.receipt.as_deref(), sent.sent_at),
        ("sent", Some("waiting"), Some(410))
    );
    assert_eq!(lead.spends("sms", "13800000101", 0).unwrap(), [410]);

    // The receipt, asked for and told (to the standby: providers call any node).
    assert!(lead.awaiting("sms").unwrap());
    assert_eq!(lead.checks_due("sms", 500, 10).unwrap().len(), 1);
    assert_eq!(standby.awaiting_row("sms", "biz-1", "").unwrap().map(|r| r.id), Some(keep));
    standby.set_receipt(keep, Some("delivered"), "DELIVRD", None, None, 520).unwrap();
    assert_eq!(lead.get(keep).unwrap().unwrap().receipt.as_deref(), Some("delivered"));
    assert!(!lead.awaiting("sms").unwrap());

    // Holds keep the later end; alarms are new once.
    lead.set_hold("sms", "13800000101", 9_000, "limit").unwrap();
    lead.set_hold("sms", "13800000101", 5_000, "limit again").unwrap();
    assert_eq!(lead.hold_of("sms", "13800000101", 0).unwrap(), Some((9_000, "limit again".to_string())));
    assert!(lead.set_alarm("sms", "refused", 600).unwrap());
    assert!(!lead.set_alarm("sms", "refused", 700).unwrap());
    assert_eq!(standby.alarms().unwrap(), [("sms".to_string(), 600, "refused".to_string())]);
    assert!(lead.clear_alarm("sms").unwrap());
    assert_eq!(lead.prune_budget(10_000).unwrap(), 2, "the spend and the hold");

    // Both alerts' histories name the row that carried them (and the one
    // merged into it); the nonce is used once,
    // on the standby.
    let history = standby.deliveries(&[1, 2]).unwrap();
    assert_eq!(
        history.iter().map(|d| (d.alert_id, d.row.id, d.merged_into)).collect::<Vec<_>>(),
        [(1, keep, None), (2, keep, None), (2, other, Some(keep))]
    );
    assert!(standby.nonce_unused("nonce-1", 1, "张队长").unwrap());
    assert!(!standby.nonce_unused("nonce-1", 2, "张队长").unwrap(), "issued for another alert");
    assert!(standby.use_nonce("nonce-1", 1, "张队长", 800).unwrap());
    assert!(!lead.use_nonce("nonce-1", 1, "张队长", 900).unwrap(), "used once");
    assert_eq!(pgs.psql("SELECT count(*) FROM deliveries WHERE outcome = 'sent'"), "1");
}

/// A node's alert stage and outbox stage on a PostgreSQL state, as the
/// daemon joins them (the manager wakes the outbox after each commit).
struct NodeStages {
    manager: std::sync::Arc<floodguard::alerts::AlertManager>,
    alerts: Option<floodguard::alerts::stage::Inbox>,
    stop: tokio_util::sync::CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl NodeStages {
    fn start(pgs: &Postgres, node: &Node, config: &floodguard::config::Config) -> NodeStages {
        use floodguard::alerts::stage::{AlertStage, Inbox};
        use floodguard::alerts::{AlertManager, Places};
        use floodguard::notify::stage::OutboxStage;
        use floodguard::notify::{Outbox, Wake};
        use std::sync::Arc;
        let target = Target::new(&pgs.url(), None).unwrap();
        let wake = Wake::default();
        let store = Store::postgres(&target, LEASE).unwrap();
        let manager = Arc::new(
            AlertManager::new(
                store,
                config.teams.clone(),
                Places::from_config(config),
                Arc::new(wake.clone()),
                None,
                None,
            )
            .unwrap()
            .in_cluster(node.cluster.clone()),
        );
        let outbox = Arc::new(
            Outbox::postgres(
                &target,
                node.cluster.clone(),
                config.daemon.channels.clone(),
                config.teams.clone(),
                Places::from_config(config),
                config.daemon.daemon.language,
                None,
            )
            .unwrap(),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let (inbox, rx) = Inbox::channel();
        let st = AlertStage {
            manager: manager.clone(),
            inbox: rx,
            probe: floodguard::stage::Probe::new("alerts"),
            committed: Box::new(|_| {}),
            disk: None,
            clock: floodguard::clock::Clock::wall(),
        };
        let s = stop.clone();
        let mut threads = vec![std::thread::spawn(move || st.run(s))];
        let ost = OutboxStage {
            outbox,
            wake: wake.0.clone(),
            probe: floodguard::stage::Probe::new("outbox"),
            drain_for: std::time::Duration::from_secs(2),
        };
        let s = stop.clone();
        threads.push(std::thread::spawn(move || ost.run(s).unwrap()));
        NodeStages { manager, alerts: Some(inbox), stop, threads }
    }

    fn judge(&self, transitions: &[floodguard::engine::Transition]) {
        use floodguard::engine::{Judged, TransitionSink};
        let judged = Judged { transitions: transitions.to_vec(), upto: None };
        self.alerts.as_ref().unwrap().deliver(judged).unwrap();
    }

    /// Stops both stages as SIGTERM does; they must return.
    fn stop(&mut self) {
        self.stop.cancel();
        self.alerts.take();
        for t in self.threads.drain(..) {
            t.join().expect("the stage stops");
        }
    }
}

impl Drop for NodeStages {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rise(site: &str, street: &str, at: i64) -> floodguard::engine::Transition {
    use floodguard::engine::{Change, SiteChange, Transition};
    Transition {
        at,
        change: Change::Site(SiteChange {
            site: site.into(),
            site_name: format!("{site}名").into(),
            street: street.into(),
            kind: floodguard::config::Kind::Waterlogging,
            rule: "depth".into(),
            rule_name: "积水深度".into(),
            from: None,
            to: Some(floodguard::level::Level::II),
            metric: Some("water_depth_cm".into()),
            value: Some(28.0),
            unit: "cm".into(),
            threshold: Some(27.0),
            trend: None,
            eta: None,
            card: None,
            suspect: None,
        }),
    }
}

/// (idempotency key, phone) of every SMS the peer took, and whether any
/// key came twice.
fn sms_taken(peer: &crate::support::peer::Peer) -> Vec<(String, String)> {
    peer.accepted("/sms")
        .iter()
        .filter(|r| r.is_send())
        .map(|r| (r.key.clone().unwrap_or_default(), r.to.clone()))
        .collect()
}

/// The sample district with SMS to the signed peer (no receipts: a send
/// cut off is queued again with its key), fast retries.
fn sms_config(peer: &crate::support::peer::Peer) -> (tempfile::TempDir, floodguard::config::Config) {
    let dir = crate::support::tempdir("cluster-outbox-");
    for f in ["sites.toml", "plan.toml", "teams.toml", "materials.toml"] {
        std::fs::copy(crate::support::floodguard::sample_config_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("floodguard.toml"),
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\n\
             fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n{}",
            dir.path().join("var").display(),
            peer.url("/sms"),
            crate::notify::FAST_RETRY
        ),
    )
    .unwrap();
    let config =
        floodguard::config::load_with_env(&dir.path().join("floodguard.toml"), &Default::default()).unwrap();
    (dir, config)
}

#[test]
fn only_the_leader_sends_and_the_next_leader_sends_only_what_is_new() {
    use std::collections::BTreeSet;
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let peer = rt.block_on(crate::support::peer::Peer::start());
    let pgs = Postgres::start();
    let (_dir, config) = sms_config(&peer);
    let mut a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let mut na = NodeStages::start(&pgs, &a, &config);
    let mut nb = NodeStages::start(&pgs, &b, &config);
    let t0 = floodguard::clock::wall_ns() - 5 * 60 * 1_000_000_000;

    // Both engines judge the rise: one alert, its SMS once per person.
    let first = [rise("BH-JS-01", "binhe", t0)];
    na.judge(&first);
    nb.judge(&first);
    wait_until("the leader's SMS", Duration::from_secs(20), || !sms_taken(&peer).is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let before = sms_taken(&peer);
    let keys: BTreeSet<&String> = before.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), before.len(), "no SMS twice: {before:?}");
    assert_eq!(nb.manager.alerts(true, 10).unwrap().len(), 1);

    // The leader stops; the standby leads, and its engine judged one more.
    na.stop();
    a.stop();
    wait_until("fg-b to lead", LEASE * 3, || b.cluster.term().is_some());
    nb.judge(&[rise("CD-JS-01", "chengdong", t0 + 60 * 1_000_000_000)]);
    wait_until("the new leader's SMS", Duration::from_secs(20), || sms_taken(&peer).len() > before.len());
    std::thread::sleep(Duration::from_secs(3));
    let after = sms_taken(&peer);
    let keys: BTreeSet<&String> = after.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), after.len(), "no SMS twice across the takeover: {after:?}");
    assert_eq!(&after[..before.len()], &before[..], "what the old leader sent is not sent again");
    assert_eq!(nb.manager.alerts(true, 10).unwrap().len(), 2);
    nb.stop();
}

/// The race the epoch on a row closes: a send whose start a deposed leader
/// committed — its outcome unknown — found `sending` after the new leader
/// took over and ran its recovery. Made to happen by writing the row as the
/// old leader left it once the new leader's outbox stage leads. The leader
/// resolves it while it runs (queued again with its key and sent, once),
/// and leaves alone a row started under its own epoch (its own send in
/// flight).
#[test]
fn a_send_a_deposed_leader_left_mid_way_after_the_takeover_is_resolved_while_the_leader_runs() {
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let peer = rt.block_on(crate::support::peer::Peer::start());
    let pgs = Postgres::start();
    let (_dir, config) = sms_config(&peer);
    let mut a = Node::start("fg-a", &pgs.url());
    wait_until("fg-a to lead", LEASE * 3, || a.cluster.term().is_some());
    let b = Node::start("fg-b", &pgs.url());
    wait_until("fg-b to see the leader", LEASE * 3, || b.cluster.status().leader.is_some());
    let mut nb = NodeStages::start(&pgs, &b, &config);
    let old = a.cluster.term().unwrap();
    a.stop();
    wait_until("fg-b to lead", LEASE * 3, || b.cluster.term().is_some());
    let new = b.cluster.term().unwrap();
    // The new leader's stage came to lead and ran its takeover recovery.
    std::thread::sleep(Duration::from_secs(2));
    let n = pgs.psql("INSERT INTO notifications (team, created_at, body, enqueued) VALUES ('team1', 1, '{}', 1) RETURNING id");
    let n = n.lines().next().unwrap();
    let now = floodguard::clock::wall_ns();
    let row = |key: &str, epoch: i64| {
        let json = serde_json::to_string(&body(7)).unwrap().replace('\'', "''");
        pgs.psql(&format!(
            "INSERT INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, attempts, next_attempt_at, created_at, priority, epoch)
             VALUES ({n}, 'sms', '13800000101', '张队长', 'team1', '{json}', '{key}', 'sending', 1, {now}, {now}, 3, {epoch})"
        ));
    };
    let late = format!("n{n}:sms:13800000101");
    row(&late, old);
    let own = format!("n{n}:sms:own-epoch");
    row(&own, new);
    wait_until("the deposed leader's send resolved and sent", Duration::from_secs(10), || {
        sms_taken(&peer).iter().any(|(k, _)| *k == late)
    });
    std::thread::sleep(Duration::from_secs(3));
    let taken: Vec<(String, String)> = sms_taken(&peer).into_iter().filter(|(k, _)| *k == late).collect();
    assert_eq!(taken.len(), 1, "sent once: {taken:?}");
    assert_eq!(pgs.psql(&format!("SELECT state FROM outbox WHERE idempotency_key = '{late}'")), "sent");
    assert_eq!(
        pgs.psql(&format!("SELECT state || ' ' || epoch FROM outbox WHERE idempotency_key = '{own}'")),
        format!("sending {new}"),
        "a send under the leader's own epoch is its own, in flight: not taken back"
    );
    nb.stop();
}
