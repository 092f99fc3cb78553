//! The daily pruning on a real PostgreSQL 15 state: the leader, under its
//! epoch, removes what ended before the retention and keeps what is recent
//! or still open — the same rows as on SQLite (`alerts::prune`'s unit
//! test); a standby removes nothing, nor does an epoch that no longer leads.

use std::time::Duration;

use floodguard::alerts::prune::{self, Pruned, State};
use floodguard::alerts::store::Store;
use floodguard::state::db::{Backend, Fence};
use floodguard::state::pg::Target;
use floodguard::vals;

use crate::cluster::{wait_until, Node, LEASE};
use crate::support::postgres::Postgres;

const DAY: i64 = 24 * 3600 * 1_000_000_000;
const NOW: i64 = 1000 * DAY;
const RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Old and recent, ended and open rows of every pruned table.
fn fill(db: &dyn Backend) {
    let old = NOW - 500 * DAY;
    let recent = NOW - 10 * DAY;
    let run = |sql: &str, p: &[floodguard::state::db::Value]| {
        db.execute(sql, p).unwrap_or_else(|e| panic!("{sql}: {e}"));
    };
    let alert = |id: i64, state: &str, started: i64, resolved: Option<i64>| {
        run(
            "INSERT INTO alerts (id, kind, site, site_name, site_kind, street, rule, rule_name, state, unit,
                started_at, updated_at, resolved_at, escalation_step)
             VALUES (?1, 'site', 'CD-JS-01', 'x', 'waterlogging', 'chengdong', 'depth', 'd', ?2, 'cm', ?3, ?3, ?4, 0)",
            &vals![id, state, started, resolved],
        );
        run("INSERT INTO events (alert_id, ts, event) VALUES (?1, ?2, 'firing')", &vals![id, started]);
    };
    alert(1, "resolved", old, Some(old + DAY)); // gone
    alert(2, "resolved", old, Some(recent)); // overlaps the retained period: kept
    alert(3, "firing", old, None); // active: kept whatever its age
    for (id, created) in [(1, old), (2, recent), (3, old)] {
        run(
            "INSERT INTO notifications (id, team, created_at, body, enqueued) VALUES (?1, 'cd', ?2, '{}', 1)",
            &vals![id as i64, created],
        );
    }
    for (id, n, state, created) in [(10, 1, "sent", old), (11, 2, "sent", recent), (12, 3, "queued", old)] {
        run(
            "INSERT INTO outbox (id, notification_id, channel, recipient, recipient_name, team, body,
                idempotency_key, state, next_attempt_at, created_at)
             VALUES (?1, ?2, 'sms', '138', '张', 'cd', '{}', ?3, ?4, ?5, ?5)",
            &vals![id as i64, n as i64, format!("k{id}"), state, created],
        );
        run(
            "INSERT INTO deliveries (outbox_id, attempt, started_at) VALUES (?1, 1, ?2)",
            &vals![id as i64, created],
        );
    }
    for (nonce, created, used) in [
        ("used-old", old, Some(old + DAY)),
        ("used-recent", old, Some(recent)),
        ("unused-old", old, None),
        ("unused-recent", recent, None),
    ] {
        run(
            "INSERT INTO ack_tokens (nonce, alert_id, member, created_at, used_at) VALUES (?1, 2, 'a', ?2, ?3)",
            &vals![nonce, created, used],
        );
    }
    for (id, ends) in [(1, old + DAY), (2, NOW)] {
        run(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at)
             VALUES (?1, '{}', ?2, ?3, 'a', 'b', ?2)",
            &vals![id as i64, old, ends],
        );
    }
}

fn column(db: &dyn Backend, sql: &str) -> Vec<String> {
    db.query(sql, &[]).unwrap().iter().map(|r| r.string(0).unwrap()).collect()
}

fn counts(db: &dyn Backend) -> Vec<i64> {
    ["alerts", "events", "notifications", "outbox", "deliveries", "ack_tokens", "silences"]
        .iter()
        .map(|t| db.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[]).unwrap().i64(0).unwrap())
        .collect()
}

#[test]
fn the_leader_prunes_what_ended_before_the_retention_and_a_standby_nothing() {
    let pgs = Postgres::start();
    let url = pgs.url();
    let target = Target::new(&url, None).unwrap();
    let a = Node::start("a", &url);
    wait_until("a to lead", Duration::from_secs(10), || a.cluster.term().is_some());
    let b = Node::start("b", &url);
    wait_until("b to see a lead", Duration::from_secs(10), || {
        b.cluster.status().leader.as_deref() == Some("a")
    });
    let db = floodguard::state::open_postgres(&target, LEASE).unwrap();
    fill(&db);
    let all = counts(&db);
    assert_eq!(all, [3, 3, 3, 3, 3, 4, 2]);

    // The standby leaves the pruning to the leader.
    let standby = State::Postgres { target: Box::new(target.clone()), cluster: b.cluster.clone() };
    assert_eq!(prune::once(&standby, RETENTION, NOW).unwrap(), None);
    assert_eq!(counts(&db), all, "a standby deletes nothing");

    // An epoch that does not lead is refused by the database, first write on.
    let epoch = a.cluster.term().unwrap();
    let cutoff = NOW - 400 * DAY;
    let e = prune::prune(&db, Fence::Leader(epoch + 1), cutoff, 0).unwrap_err();
    assert!(e.is_fenced(), "refused as fenced: {e}");
    assert_eq!(counts(&db), all, "a fenced prune deletes nothing");

    // The leader prunes, under its epoch.
    let leader = State::Postgres { target: Box::new(target.clone()), cluster: a.cluster.clone() };
    let p = prune::once(&leader, RETENTION, NOW).unwrap().expect("the leader prunes");
    assert_eq!(
        p,
        Pruned {
            outbox: 1,
            deliveries: 1,
            notifications: 1,
            ack_tokens: 2,
            alerts: 1,
            events: 1,
            silences: 1
        }
    );
    assert_eq!(column(&db, "SELECT CAST(id AS TEXT) FROM alerts ORDER BY id"), ["2", "3"]);
    assert_eq!(column(&db, "SELECT CAST(id AS TEXT) FROM outbox ORDER BY id"), ["11", "12"]);
    assert_eq!(column(&db, "SELECT CAST(id AS TEXT) FROM notifications ORDER BY id"), ["2", "3"]);
    assert_eq!(column(&db, "SELECT nonce FROM ack_tokens ORDER BY nonce"), ["unused-recent", "used-recent"]);
    assert_eq!(column(&db, "SELECT CAST(id AS TEXT) FROM silences ORDER BY id"), ["2"]);
    assert_eq!(counts(&db), [2, 2, 2, 2, 2, 2, 1]);
    // A second prune finds nothing more.
    assert_eq!(prune::once(&leader, RETENTION, NOW).unwrap().map(|p| p.total()), Some(0));
    // The report of the retained period reads the alerts it read before.
    let store = Store::postgres(&target, LEASE).unwrap();
    let seen: Vec<i64> = store.between(NOW - 400 * DAY, NOW).unwrap().iter().map(|a| a.id).collect();
    assert_eq!(seen, [2, 3]);
}
