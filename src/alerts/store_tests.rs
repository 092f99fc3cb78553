//! The alert store on SQLite: round trips, migrations, concurrent opening.
use super::super::model::{AlertState, Matchers};
use super::*;

#[test]
fn processes_opening_a_new_database_at_once_both_get_the_schema() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Store::open(&p).map(|s| s.schema_version().unwrap()))
            })
            .collect();
        for t in opened {
            assert_eq!(t.join().unwrap().unwrap(), MIGRATIONS.len());
        }
    }
}

#[test]
fn alerts_round_trip_with_their_timeline() {
    let mut s = Store::memory().unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
    let a = Alert {
        kind: Some(AlertKind::Site),
        site: "CD-JS-01".into(),
        site_name: "人民路铁路桥下穿".into(),
        site_kind: "waterlogging".into(),
        street: "chengdong".into(),
        rule: "depth".into(),
        rule_name: "积水深度".into(),
        state: AlertState::Firing,
        level: Some(Level::III),
        value: Some(21.5),
        threshold: Some(20.0),
        unit: "cm".into(),
        started_at: 5,
        updated_at: 5,
        next_escalation_at: Some(99),
        ..Alert::default()
    };
    let id = s
        .transaction(|tx| -> Result<i64> {
            let id = tx.insert_alert(&a)?;
            tx.add_event(id, &Event::new(5, "firing", Some(Level::III)))?;
            tx.add_event(id, &Event::new(6, "acked", None).by(Some("张队长"), Some("到场")))?;
            Ok(id)
        })
        .unwrap();
    let got = s.alert(id).unwrap().unwrap();
    assert_eq!(got.site_name, "人民路铁路桥下穿");
    assert_eq!(got.level, Some(Level::III));
    assert_eq!(got.next_escalation_at, Some(99));
    assert_eq!(got.timeline.len(), 2);
    assert_eq!(got.timeline[1].by.as_deref(), Some("张队长"));
    assert_eq!(s.active().unwrap().len(), 1);
    let mut resolved = got.clone();
    resolved.state = AlertState::Resolved;
    resolved.resolved_at = Some(10);
    s.transaction(|tx| -> Result<()> { tx.update_alert(&resolved) }).unwrap();
    assert!(s.active().unwrap().is_empty());
    assert_eq!(s.between(0, 100).unwrap().len(), 1);
    assert!(s.between(11, 100).unwrap().is_empty());
}

#[test]
fn a_failed_transaction_leaves_nothing() {
    let mut s = Store::memory().unwrap();
    let r: Result<()> = s.transaction(|tx| {
        tx.insert_alert(&Alert { state: AlertState::Firing, ..Alert::default() })?;
        Err(rusqlite::Error::InvalidQuery.into())
    });
    assert!(r.is_err());
    assert!(s.active().unwrap().is_empty());
}

#[test]
fn a_stored_silence_that_cannot_be_read_silences_nothing() {
    let s = Store::memory().unwrap();
    s.db()
        .execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at)
             VALUES ('{\"site\": 42, \"colour\": \"blue\"}', 0, 100, 'a', 'b', 0)",
            &[],
        )
        .unwrap();
    let got = s.silences(Some(50)).unwrap();
    assert_eq!(got.len(), 1, "it is listed (and reported)");
    assert!(got[0].matchers.unreadable);
    assert!(!got[0].matchers.is_empty(), "not taken for empty matchers");
    let alert =
        Alert { site: "BH-BZ-01".into(), rule: "forebay".into(), street: "binhe".into(), ..Alert::default() };
    assert!(!crate::alerts::decide::matches(&got[0].matchers, &alert), "fails closed: it matches no alert");
}

#[test]
fn silences_expire() {
    let mut s = Store::memory().unwrap();
    let m = Matchers { site: Some("BH-BZ-01".into()), ..Matchers::default() };
    let sil = Silence {
        id: 0,
        matchers: m,
        starts_at: 0,
        ends_at: 100,
        created_by: "a".into(),
        comment: "检修".into(),
        from_config: false,
    };
    let id = s.transaction(|tx| -> Result<i64> { tx.insert_silence(&sil, 0) }).unwrap();
    assert_eq!(s.silences(Some(50)).unwrap().len(), 1);
    assert!(s.transaction(|tx| -> Result<bool> { tx.expire_silence(id, 60) }).unwrap());
    assert!(s.silences(Some(61)).unwrap().is_empty());
    assert_eq!(s.silences(None).unwrap()[0].ends_at, 60);
    assert!(!s.transaction(|tx| -> Result<bool> { tx.expire_silence(id, 70) }).unwrap(), "already over");
}

#[test]
fn reopening_a_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.transaction(|tx| -> Result<i64> {
            tx.insert_alert(&Alert { state: AlertState::Firing, ..Alert::default() })
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.active().unwrap().len(), 1);
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
}

#[test]
fn the_upgrade_takes_robot_keys_out_of_stored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        // A state.db of the release before: schema 3, a robot row with its URL and key.
        let c = rusqlite::Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 3).unwrap();
        let body = r#"{"rendered":{"subject":"s","text":"t","html":"h","sms":"m","markdown":"md","params":{}},"to":"https://oapi.dingtalk.com/robot/send?access_token=KEY123","secret":"SECsign","alert_ids":[1]}"#;
        c.execute(
            "INSERT INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, next_attempt_at, created_at, last_error)
             VALUES (1, 'dingtalk', 'team1#0', '城东（群）', 'team1', ?1, 'k1', 'queued', 0, 0, 'error sending request for url (https://oapi.dingtalk.com/robot/send?access_token=KEY123)')",
            [body],
        )
        .unwrap();
        c.execute(
            "INSERT INTO outbox (notification_id, channel, recipient, recipient_name, team, body, idempotency_key, state, next_attempt_at, created_at)
             VALUES (1, 'sms', '13800000101', '张', 'team1', '{\"rendered\":{\"subject\":\"\",\"text\":\"\",\"html\":\"\",\"sms\":\"x\",\"markdown\":\"\",\"params\":{}},\"to\":\"13800000101\",\"alert_ids\":[1]}', 'k2', 'queued', 0, 0)",
            [],
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let all: String = c
        .query_row("SELECT group_concat(body || coalesce(last_error, ''), '|') FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(!all.contains("KEY123") && !all.contains("SECsign"), "{all}");
    let db = crate::notify::outbox::OutboxDb::open(&path).unwrap();
    let rows = db.due(&["dingtalk", "sms"], 1, 10).unwrap();
    assert_eq!(rows[0].body.to, "robot:team1#0", "the robot row names its robot");
    assert_eq!(rows[0].body.secret, None);
    assert_eq!(rows[1].body.to, "13800000101", "other rows as they were");
}
