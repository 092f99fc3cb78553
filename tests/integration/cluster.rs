//! The leader's lease and the fence on a real PostgreSQL 15: one leader at a
//! time, epochs that only grow, a deposed leader's writes refused by the
//! database, a frozen leader's transaction ended by the server, a restart
//! of PostgreSQL survived, districts side by side in one database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floodguard::cluster::{keeper, sql, Cluster};
use floodguard::state::pg::{self, Conn, Target};
use tokio_util::sync::CancellationToken;

use crate::support::postgres::Postgres;

pub(crate) const LEASE: Duration = Duration::from_secs(3);

pub(crate) struct Node {
    pub(crate) cluster: Arc<Cluster>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    pub(crate) fn start(name: &str, url: &str) -> Node {
        let cluster = Cluster::postgres(name.into(), LEASE);
        let stop = CancellationToken::new();
        let thread = keeper::spawn(cluster.clone(), Target::new(url, None).unwrap(), stop.clone()).unwrap();
        Node { cluster, stop, thread: Some(thread) }
    }

    pub(crate) fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// A table the leader writes, with the fence on it.
fn fenced_table(conn: &Conn) {
    conn.batch(&format!(
        "CREATE TABLE IF NOT EXISTS probe (id BIGSERIAL PRIMARY KEY, note TEXT); {}",
        sql::fence("probe")
    ))
    .unwrap();
}

/// Writes one row in a transaction under `epoch` (None: an operator's write).
fn write(conn: &Conn, epoch: Option<i64>, note: &str) -> Result<(), pg::Error> {
    match epoch {
        Some(e) => conn.batch(&sql::begin_fenced(e))?,
        None => conn.batch("BEGIN")?,
    }
    let r = conn.execute_pg("INSERT INTO probe (note) VALUES ($1)", &[&note]);
    match r {
        Ok(_) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn connect(url: &str) -> Conn {
    keeper::connect(&Target::new(url, None).unwrap(), LEASE).unwrap()
}

#[test]
fn one_leader_a_handover_at_a_clean_stop_and_the_old_epoch_fenced() {
    let pgs = Postgres::start();
    let url = pgs.url();
    let mut a = Node::start("a", &url);
    wait_until("a to lead", Duration::from_secs(10), || a.cluster.term().is_some());
    let b = Node::start("b", &url);
    wait_until("b to see a lead", Duration::from_secs(10), || {
        b.cluster.status().leader.as_deref() == Some("a")
    });
    let first = a.cluster.term().unwrap();
    // Several renewals later, still one leader, same epoch.
    std::thread::sleep(LEASE * 2);
    assert_eq!(a.cluster.term(), Some(first), "a keeps its lease by renewing it");
    assert_eq!(b.cluster.term(), None, "b stays a standby while a renews");
    assert_eq!(b.cluster.status().epoch, first);

    let conn = connect(&url);
    fenced_table(&conn);
    write(&conn, Some(first), "a leads").expect("the leader's write passes");

    // a stops cleanly: it gives the lease up and b takes it at once, at a
    // higher epoch.
    a.stop();
    let took = wait_until("b to lead", Duration::from_secs(5), || b.cluster.term().is_some());
    assert!(took < LEASE, "a released lease is taken without waiting for it to lapse ({took:?})");
    let second = b.cluster.term().unwrap();
    assert!(second > first, "epochs only grow: {first} then {second}");
    assert_eq!(b.cluster.takeovers(), 1);

    // The old epoch's writes are refused by the database; the new leader's
    // and an operator's (no epoch) pass.
    let e = write(&conn, Some(first), "a, deposed").unwrap_err();
    assert!(pg::is_fenced(&e), "refused as fenced: {e}");
    assert!(e.to_string().contains("fenced") || format!("{e:?}").contains("fenced"), "{e:?}");
    write(&conn, Some(second), "b leads").unwrap();
    write(&conn, None, "an operator's ack").unwrap();
    let notes = pgs.psql("SELECT string_agg(note, ',' ORDER BY id) FROM probe");
    assert_eq!(notes, "a leads,b leads,an operator's ack");
}

#[test]
fn a_crashed_leader_is_replaced_after_its_lease_and_a_frozen_transaction_cannot_block_it() {
    let pgs = Postgres::start();
    let url = pgs.url();
    let conn_a = connect(&url);
    fenced_table(&conn_a);
    let ms = LEASE.as_millis() as i64;
    // "a" takes the lease by hand and then freezes in the middle of a
    // transaction, holding the lease row FOR SHARE (as a SIGSTOPped leader).
    let row = conn_a.query_opt_pg(sql::ACQUIRE, &[&"a", &ms]).unwrap().expect("the first acquire takes it");
    let epoch_a: i64 = row.get(0);
    conn_a.batch(&sql::begin_fenced(epoch_a)).unwrap();
    conn_a.execute_pg("INSERT INTO probe (note) VALUES ('a, before freezing')", &[]).unwrap();
    let frozen_at = Instant::now();

    // "b" is a real keeper: it takes over once the lease lapsed, the server
    // having ended a's idle transaction (and its lock) meanwhile.
    let b = Node::start("b", &url);
    let waited = wait_until("b to lead", Duration::from_secs(15), || b.cluster.term().is_some());
    let after = frozen_at.elapsed();
    assert!(after >= LEASE - Duration::from_millis(200), "not before a's lease lapsed ({after:?})");
    assert!(waited < LEASE + Duration::from_secs(2), "within the lease and 2 s ({waited:?})");
    let epoch_b = b.cluster.term().unwrap();
    assert_eq!(epoch_b, epoch_a + 1);

    // a thaws: its transaction is gone (rolled back by the server), and a
    // new one under its epoch is refused.
    let thawed = conn_a.execute_pg("INSERT INTO probe (note) VALUES ('a, thawed')", &[]);
    assert!(thawed.is_err(), "the frozen transaction was ended by the server");
    let conn_a = connect(&url);
    let e = write(&conn_a, Some(epoch_a), "a, thawed again").unwrap_err();
    assert!(pg::is_fenced(&e), "{e}");
    // Nor can a renew its lease.
    assert!(conn_a.query_opt_pg(sql::RENEW, &[&"a", &epoch_a, &ms]).unwrap().is_none());
    assert_eq!(pgs.psql("SELECT count(*) FROM probe"), "0", "nothing of a's survived");
}

#[test]
fn a_postgres_restart_leaves_one_leader_and_the_leader_stops_acting_while_it_is_down() {
    let mut pgs = Postgres::start();
    let url = pgs.url();
    let a = Node::start("a", &url);
    let b = Node::start("b", &url);
    wait_until("a leader", Duration::from_secs(10), || {
        a.cluster.term().is_some() || b.cluster.term().is_some()
    });
    let (leader, standby) = if a.cluster.term().is_some() { (&a, &b) } else { (&b, &a) };
    let before = leader.cluster.term().unwrap();

    pgs.kill();
    let down = Instant::now();
    // Cut off from the database, the leader stops acting by its own clock
    // before its lease can lapse.
    let stopped = wait_until("the leader to stop acting", LEASE * 2, || leader.cluster.term().is_none());
    assert!(stopped <= LEASE, "stopped within the lease ({stopped:?})");
    assert!(standby.cluster.term().is_none());
    assert!(leader.cluster.status().problem.is_some(), "the keeper says why");
    std::thread::sleep(LEASE.saturating_sub(down.elapsed()) + Duration::from_millis(500));
    assert!(leader.cluster.unreachable().is_some(), "unreachable past the lease: /readyz says so");

    pgs.run();
    wait_until("one leader again", Duration::from_secs(15), || {
        a.cluster.term().is_some() || b.cluster.term().is_some()
    });
    std::thread::sleep(LEASE);
    let leaders = [&a, &b].iter().filter(|n| n.cluster.term().is_some()).count();
    assert_eq!(leaders, 1, "exactly one leader after the restart");
    let after = a.cluster.term().or(b.cluster.term()).unwrap();
    assert!(after > before, "a new term: {before} then {after}");
    assert_eq!(a.cluster.unreachable(), None);
    assert_eq!(b.cluster.unreachable(), None);
}

#[test]
fn districts_in_one_database_each_elect_their_own_leader() {
    let pgs = Postgres::start();
    let north_a = Node::start("north-a", &pgs.url_in_schema("north"));
    let south_a = Node::start("south-a", &pgs.url_in_schema("south"));
    let north_b = Node::start("north-b", &pgs.url_in_schema("north"));
    // North's two nodes start together: either may win its lease.
    let north_leads = || north_a.cluster.term().is_some() || north_b.cluster.term().is_some();
    wait_until("both districts to have a leader", Duration::from_secs(10), || {
        north_leads() && south_a.cluster.term().is_some()
    });
    std::thread::sleep(LEASE);
    let (leader, standby) =
        if north_a.cluster.term().is_some() { (&north_a, &north_b) } else { (&north_b, &north_a) };
    assert_eq!(standby.cluster.term(), None, "one leader per district");
    assert_eq!(standby.cluster.status().leader.as_deref(), Some(leader.cluster.node()));
    assert!(south_a.cluster.term().is_some(), "south's leader is not deposed by north's");
    let leases = pgs.psql(
        "SELECT string_agg(schemaname, ',' ORDER BY schemaname) FROM pg_tables WHERE tablename = 'fg_lease'",
    );
    assert_eq!(leases, "north,south", "each district's lease in its own schema");
}

#[test]
fn the_backend_speaks_the_same_sql_on_postgres() {
    use floodguard::state::db::{Backend, Fence};
    use floodguard::vals;
    let pgs = Postgres::start();
    let c = floodguard::state::open_postgres(&Target::new(&pgs.url(), None).unwrap(), LEASE).unwrap();
    c.batch("CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, s TEXT)")
        .unwrap();
    let id = c
        .insert("INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3) RETURNING id", &vals![7i64, 2.5, "水位"])
        .unwrap();
    c.insert(
        "INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3) RETURNING id",
        &vals![None::<i64>, None::<f64>, None::<String>],
    )
    .unwrap();
    let r = c.query_one("SELECT n, x, s FROM t WHERE id = ?1", &vals![id]).unwrap();
    assert_eq!((r.i64(0).unwrap(), r.f64(1).unwrap(), r.string(2).unwrap()), (7, 2.5, "水位".into()));
    let rows = c
        .query("SELECT n, x, s FROM t WHERE CAST(?1 AS BIGINT) IS NULL OR id > ?1 ORDER BY id", &vals![id])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].opt_i64(0).unwrap(), rows[0].opt_f64(1).unwrap()), (None, None));
    assert_eq!(c.execute("UPDATE t SET n = ?1 WHERE n IS NULL", &vals![true]).unwrap(), 1);
    assert!(c.query_one("SELECT n = 1 FROM t WHERE id = ?1", &vals![id + 1]).unwrap().bool(0).unwrap());
    c.begin(Fence::Open).unwrap();
    c.execute("DELETE FROM t", &[]).unwrap();
    c.rollback().unwrap();
    assert_eq!(c.query_one("SELECT COUNT(*) FROM t", &[]).unwrap().i64(0).unwrap(), 2);
    // The state's tables are there, at state.db's version, fenced.
    assert_eq!(floodguard::state::postgres_version(&c).unwrap(), floodguard::alerts::schema_versions());
    let fenced = pgs.psql("SELECT count(*) FROM pg_trigger WHERE tgname = 'fg_fence'");
    assert_eq!(
        fenced, "12",
        "alerts, events, notifications, pending_intents, outbox, deliveries, ack_tokens, points_pending, \
         outbox_alerts, budget_spends, budget_holds, channel_alarms"
    );
    // A second node opening the same database finds it made.
    floodguard::state::open_postgres(&Target::new(&pgs.url(), None).unwrap(), LEASE).unwrap();
}

#[test]
fn state_migrate_copies_state_db_into_postgres_once() {
    use floodguard::alerts::model::{Alert, AlertKind, Event};
    use floodguard::alerts::store::Store;
    let pgs = Postgres::start();
    let dir = crate::support::tempdir("migrate-");
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    for f in ["sites.toml", "plan.toml", "teams.toml", "materials.toml"] {
        std::fs::copy(crate::support::floodguard::sample_config_dir().join(f), cfg.join(f)).unwrap();
    }
    let data = dir.path().join("var");
    std::fs::write(
        cfg.join("floodguard.toml"),
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[state]\nbackend = \"postgres\"\nurl = \"{}\"\n[cluster]\nnode_id = \"fg-a\"\n\
             [channels.sms]\nprovider = \"http\"\nurl = \"http://127.0.0.1:9/sms\"\n\
             fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\" }}\n",
            data.display(),
            pgs.url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let mut store = Store::open(&data.join("state.db")).unwrap();
    store
        .transaction(|tx| {
            for i in 0..3 {
                let a = Alert {
                    kind: Some(AlertKind::Site),
                    site: format!("CD-JS-0{i}"),
                    site_name: "人民路下穿".into(),
                    site_kind: "waterlogging".into(),
                    street: "chengdong".into(),
                    rule: "depth".into(),
                    rule_name: "积水深度".into(),
                    unit: "cm".into(),
                    value: Some(27.5),
                    started_at: 1_000 + i,
                    updated_at: 1_000 + i,
                    ..Alert::default()
                };
                let id = tx.insert_alert(&a)?;
                tx.add_event(id, &Event::new(1_000 + i, "firing", None))?;
            }
            tx.set_cursor("engine", 4, 4096)?;
            Ok::<_, rusqlite::Error>(())
        })
        .unwrap();
    drop(store);
    // Issue 12's tables: a WITHOUT ROWID table and one without a key.
    let raw = rusqlite::Connection::open(data.join("state.db")).unwrap();
    raw.execute_batch(
        "INSERT INTO outbox_alerts (alert_id, outbox_id) VALUES (2, 7), (1, 7);
         INSERT INTO budget_spends (channel, recipient, at, outbox_id) VALUES ('sms', '13800000000', 5, 7);",
    )
    .unwrap();
    drop(raw);
    let run = || {
        std::process::Command::new(crate::support::floodguard::BIN)
            .args(["state", "migrate", "--to", "postgres", "-c"])
            .arg(cfg.join("floodguard.toml"))
            .output()
            .unwrap()
    };
    let out = run();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("engine:fg-a"), "{text}");
    assert_eq!(pgs.psql("SELECT count(*) FROM alerts"), "3");
    assert_eq!(
        pgs.psql("SELECT string_agg(site, ',' ORDER BY id) FROM alerts"),
        "CD-JS-00,CD-JS-01,CD-JS-02"
    );
    assert_eq!(pgs.psql("SELECT count(*) FROM events"), "3");
    assert_eq!(
        pgs.psql("SELECT name || ' ' || segment || ' ' || \"offset\" FROM cursors"),
        "engine:fg-a 4 4096"
    );
    assert_eq!(pgs.psql("SELECT value FROM alerts WHERE id = 2"), "27.5");
    assert_eq!(
        pgs.psql("SELECT string_agg(alert_id || '/' || outbox_id, ',' ORDER BY alert_id) FROM outbox_alerts"),
        "1/7,2/7"
    );
    assert_eq!(pgs.psql("SELECT recipient || ' ' || at FROM budget_spends"), "13800000000 5");
    // New rows go on after the copied ids.
    let next = pgs.psql(
        "INSERT INTO alerts (kind, site, site_name, site_kind, street, rule, rule_name, state, unit, started_at, updated_at, escalation_step)
         VALUES ('site', 'x', 'x', 'x', 'x', 'x', 'x', 'pending', 'cm', 1, 1, 0) RETURNING id",
    );
    assert_eq!(next.lines().next().unwrap(), "4");
    // Twice: refused, nothing changed.
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(text.contains("refusing to mix two histories"), "{text}");
    assert_eq!(pgs.psql("SELECT count(*) FROM alerts"), "4");
}
