//! The outbox's bookkeeping on a real SQLite file and the merging of
//! messages; the sending itself is tested against real peers in
//! tests/integration/notify.rs.

use super::merge::{merge, merge_sms};
use super::message::Rendered;
use super::outbox::{Body, Finish, NewRow, OutboxDb};
use crate::config::Language;

fn db() -> (tempfile::TempDir, OutboxDb) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    crate::alerts::store::Store::open(&path).unwrap();
    let db = OutboxDb::open(&path).unwrap();
    (dir, db)
}

fn body(sms: &str, alert: i64) -> Body {
    Body {
        rendered: Rendered {
            subject: format!("subject {alert}"),
            text: format!("text {alert}"),
            html: format!("<p>{alert}</p>"),
            sms: sms.into(),
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

/// How an attempt ended, the fields a test cares about.
fn fin<'a>(state: &'a str, next: i64, outcome: &'a str, response: &'a str) -> Finish<'a> {
    Finish {
        state,
        next_attempt_at: next,
        outcome,
        response,
        provider_id: None,
        check_at: None,
        held: None,
        sent_bytes: 0,
        part_max: None,
    }
}

fn add(db: &mut OutboxDb, n: i64, key: &str, b: &Body, now: i64) -> usize {
    let row = NewRow {
        notification_id: n,
        channel: "sms",
        recipient: "13800000101",
        recipient_name: "张队长",
        team: "team1",
        body: b,
        key,
        priority: 0,
        fallback_of: None,
    };
    db.enqueue(n, &[row], &[], now).unwrap()
}

#[test]
fn a_row_goes_queued_sending_sent_and_is_queued_once_per_key() {
    let (_d, mut db) = db();
    let b = body("【某区防汛】Ⅲ级黄色预警", 1);
    assert_eq!(add(&mut db, 1, "n1:sms:13800000101", &b, 100), 1);
    assert_eq!(add(&mut db, 1, "n1:sms:13800000101", &b, 200), 0, "the same key is not queued twice");
    let due = db.due(&["sms"], 100, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert!(db.due(&["email"], 100, 10).unwrap().is_empty(), "another channel's worker does not see it");
    let row = &due[0];
    assert_eq!((row.state.as_str(), row.body.clone()), ("queued", b));
    let d = db.start(row.id, 1, 150).unwrap().expect("started");
    assert_eq!(db.in_flight(150).unwrap(), 1);
    assert!(db.start(row.id, 2, 151).unwrap().is_none(), "a row being sent is not started again");
    db.finish(row.id, d, &fin("sent", 160, "sent", "OK"), true, 160).unwrap();
    assert_eq!(db.in_flight(1_000).unwrap(), 0);
    let (r, err, sent_at) = db.recent(10).unwrap().remove(0);
    assert_eq!((r.state.as_str(), r.attempts, err, sent_at), ("sent", 1, None, Some(160)));
}

#[test]
fn a_send_cut_off_by_a_crash_is_queued_again_with_its_key() {
    let (_d, mut db) = db();
    add(&mut db, 1, "n1:sms:x", &body("a", 1), 100);
    let row = db.due(&["sms"], 100, 10).unwrap().remove(0);
    db.start(row.id, 1, 110).unwrap().unwrap();
    assert!(db.due(&["sms"], 200, 10).unwrap().is_empty());
    assert_eq!(db.requeue_sending(300).unwrap(), 1);
    let again = db.due(&["sms"], 300, 10).unwrap().remove(0);
    assert_eq!((again.id, again.key.as_str(), again.attempts), (row.id, "n1:sms:x", 1));
}

#[test]
fn a_retry_waits_and_a_hold_moves_the_time() {
    let (_d, mut db) = db();
    add(&mut db, 1, "k1", &body("a", 1), 100);
    let row = db.due(&["sms"], 100, 10).unwrap().remove(0);
    let d = db.start(row.id, 1, 100).unwrap().unwrap();
    db.finish(row.id, d, &fin("queued", 500, "retry", "HTTP 500"), false, 120).unwrap();
    assert!(db.due(&["sms"], 499, 10).unwrap().is_empty());
    assert_eq!(db.next_due(&["sms"]).unwrap(), Some(500));
    db.hold(row.id, 900).unwrap();
    assert_eq!(db.next_due(&["sms"]).unwrap(), Some(900));
    let (_, err, _) = db.recent(1).unwrap().remove(0);
    assert_eq!(err.as_deref(), Some("HTTP 500"));
}

#[test]
fn merging_needs_every_row_still_queued() {
    let (_d, mut db) = db();
    for (n, key) in [(1, "k1"), (2, "k2"), (3, "k3")] {
        add(&mut db, n, key, &body(key, n), 100);
    }
    let rows = db.due(&["sms"], 100, 10).unwrap();
    let (first, second, third) = (&rows[0], &rows[1], &rows[2]);
    let others = db.queued_for("sms", "13800000101", third.id).unwrap();
    assert_eq!(others.iter().map(|r| r.id).collect::<Vec<_>>(), [first.id, second.id]);
    assert!(db.merge(third.id, &body("merged", 3), &[first.id, second.id]).unwrap());
    let due = db.due(&["sms"], 100, 10).unwrap();
    assert_eq!(due.len(), 1, "the merged rows are gone from the queue");
    assert_eq!(due[0].body.rendered.sms, "merged");
    // A stale copy of a merged row must neither merge nor be sent.
    assert!(!db.merge(first.id, &body("stale", 1), &[third.id]).unwrap());
    assert!(db.start(first.id, 1, 100).unwrap().is_none());
    assert_eq!(db.due(&["sms"], 100, 10).unwrap()[0].body.rendered.sms, "merged", "nothing changed");
}

#[test]
fn an_ack_link_nonce_is_used_once() {
    let (_d, db) = db();
    db.add_nonce("n1", 7, "张队长", 100).unwrap();
    assert!(db.nonce_unused("n1", 7, "张队长").unwrap());
    assert!(!db.nonce_unused("never-made", 7, "张队长").unwrap());
    assert!(db.use_nonce("n1", 7, "张队长", 200).unwrap());
    assert!(!db.use_nonce("n1", 7, "张队长", 201).unwrap(), "second use refused");
    assert!(!db.nonce_unused("n1", 7, "张队长").unwrap());
}

#[test]
fn an_ack_link_nonce_works_only_for_its_alert_and_member() {
    // With a known secret, one real link's nonce re-signed for another alert
    // or name must not ack it.
    let (_d, db) = db();
    db.add_nonce("n2", 7, "张队长", 100).unwrap();
    assert!(!db.nonce_unused("n2", 8, "张队长").unwrap(), "another alert");
    assert!(!db.nonce_unused("n2", 7, "李四").unwrap(), "another member");
    assert!(!db.use_nonce("n2", 8, "张队长", 200).unwrap());
    assert!(!db.use_nonce("n2", 7, "李四", 200).unwrap());
    assert!(db.use_nonce("n2", 7, "张队长", 200).unwrap(), "still good for its own");
}

#[test]
fn merged_sms_keeps_the_newest_link_whole_and_the_district_once() {
    let a = "【某区防汛】Ⅲ级黄色预警 城东街道 人民路铁路桥下穿，积水深度 21 cm。确认收到：http://hq/ack/AAA";
    let b =
        "【某区防汛】Ⅲ级黄色预警 城东街道 解放路菜市场低洼段，积水深度 22 cm。确认收到：http://hq/ack/BBB";
    let sms = merge_sms("（合并 2 条）", [a, b].into_iter(), true);
    assert_eq!(
        sms,
        "（合并 2 条）【某区防汛】Ⅲ级黄色预警 城东街道 人民路铁路桥下穿，积水深度 21 cm；\
         Ⅲ级黄色预警 城东街道 解放路菜市场低洼段，积水深度 22 cm。确认收到：http://hq/ack/BBB"
    );
    let many: Vec<String> = (0..20)
        .map(|k| format!("【某区防汛】积水点{k} 很长的一段说明文字重复再重复。确认收到：http://hq/ack/L{k}"))
        .collect();
    let sms = merge_sms("（合并 20 条）", many.iter().map(String::as_str), true);
    assert_eq!(sms.chars().count(), super::message::SMS_MAX_CHARS);
    assert!(sms.ends_with("…。确认收到：http://hq/ack/L19"), "{sms}");
}

#[test]
fn merged_bodies_list_every_alert_in_order() {
    let m = merge(&[body("a", 1), body("b", 2), body("c", 1)], Language::ZhCn);
    assert_eq!(m.alert_ids, [1, 2]);
    assert_eq!(m.rendered.subject, "（合并 3 条）subject 1");
    assert_eq!(m.rendered.text, "text 1\n----\ntext 2\n----\ntext 1");
    assert_eq!(m.rendered.markdown, "**（合并 3 条）**\n\nmd 1\n\n---\n\nmd 2\n\n---\n\nmd 1");
}

#[test]
fn waiting_counts_queued_and_in_flight_rows_with_the_oldest_time() {
    let (_d, mut db) = db();
    assert!(db.waiting().unwrap().is_empty());
    add(&mut db, 1, "n1:sms:x", &body("a", 1), 100);
    add(&mut db, 2, "n2:sms:x", &body("b", 2), 300);
    add(&mut db, 3, "n3:sms:x", &body("c", 3), 500);
    let first = db.due(&["sms"], 100, 1).unwrap().remove(0);
    let d = db.start(first.id, 1, 110).unwrap().unwrap();
    assert_eq!(db.waiting().unwrap(), vec![("sms".to_string(), 3, 100)], "one in flight, two queued");
    db.finish(first.id, d, &fin("sent", 120, "sent", "OK"), true, 120).unwrap();
    assert_eq!(db.waiting().unwrap(), vec![("sms".to_string(), 2, 300)], "a sent row no longer waits");
}

#[test]
fn merging_a_merged_message_again_counts_what_it_stood_for_and_stays_bounded() {
    let mut held = merge(&[body("a", 1), body("b", 2)], Language::ZhCn);
    assert_eq!(held.merged, 2);
    for i in 0..500 {
        let mut next = body(&format!("第{i}条"), 3 + i);
        next.rendered.text = "长".repeat(400);
        next.rendered.html = format!("<p>{}</p>", "长".repeat(400));
        held = merge(&[held, next], Language::ZhCn);
    }
    assert_eq!(held.merged, 502);
    assert!(held.rendered.sms.starts_with("（合并 502 条）"), "{}", held.rendered.sms);
    assert_eq!(held.rendered.sms.matches("合并").count(), 1, "{}", held.rendered.sms);
    assert!(
        held.rendered.subject.starts_with("（合并 502 条）")
            && held.rendered.subject.matches("合并").count() == 1
    );
    assert!(
        held.rendered.markdown.starts_with("**（合并 502 条）**")
            && held.rendered.markdown.matches("合并").count() == 1
    );
    assert!(held.rendered.text.len() < 40 * 1024 && held.rendered.html.len() < 40 * 1024);
    assert!(held.rendered.text.ends_with("（其余见指挥中心页面）"));
    assert_eq!(held.alert_ids.len(), 502, "every alert still named");
    assert!(held.rendered.sms.chars().count() <= super::message::SMS_MAX_CHARS);
}

#[test]
fn what_the_provider_took_counts_against_the_budget_and_a_restart_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    crate::alerts::store::Store::open(&path).unwrap();
    {
        let mut db = OutboxDb::open(&path).unwrap();
        for (n, t) in [(1, 100), (2, 200), (3, 300)] {
            add(&mut db, n, &format!("k{n}"), &body("a", n), t);
            let row = db.due(&["sms"], t, 1).unwrap().remove(0);
            let d = db.start(row.id, 1, t).unwrap().unwrap();
            let taken = n != 2; // the second was refused: no spend
            let f =
                if taken { fin("sent", t, "sent", "OK") } else { fin("failed", t, "failed", "bad number") };
            db.finish(row.id, d, &f, taken, t).unwrap();
        }
        db.set_hold("sms", "13800000101", 5_000, "触发小时级流控Permits:5").unwrap();
        db.set_hold("sms", "13800000101", 4_000, "shorter").unwrap();
    }
    // Another connection, as after a restart.
    let db = OutboxDb::open(&path).unwrap();
    assert_eq!(db.spends("sms", "13800000101", 0).unwrap(), [100, 300]);
    assert_eq!(db.spends("sms", "13800000101", 100).unwrap(), [300], "since is exclusive");
    assert!(db.spends("email", "13800000101", 0).unwrap().is_empty());
    let (until, reason) = db.hold_of("sms", "13800000101", 1_000).unwrap().unwrap();
    assert_eq!(until, 5_000, "a hold only grows");
    assert_eq!(reason, "shorter");
    assert!(db.hold_of("sms", "13800000101", 5_000).unwrap().is_none(), "over");
    assert_eq!(db.prune_budget(250).unwrap(), 1);
    assert_eq!(db.spends("sms", "13800000101", 0).unwrap(), [300]);
}

#[test]
fn an_unknown_send_is_resolved_by_its_receipt_and_never_resent_when_taken() {
    let (_d, mut db) = db();
    add(&mut db, 1, "k1", &body("a", 1), 100);
    add(&mut db, 2, "k2", &body("b", 2), 100);
    let rows = db.due(&["sms"], 100, 10).unwrap();
    for r in &rows {
        let d = db.start(r.id, 1, 100).unwrap().unwrap();
        let f = Finish { check_at: Some(110), ..fin("unknown", 100, "unknown", "connection closed") };
        db.finish(r.id, d, &f, true, 100).unwrap();
    }
    assert_eq!(db.checks_due("sms", 109, 10).unwrap().len(), 0);
    let due = db.checks_due("sms", 110, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!((due[0].state.as_str(), due[0].receipt.as_deref()), ("unknown", Some("waiting")));
    // The first: the provider has it, delivered.
    db.set_receipt(due[0].id, Some("delivered"), "DELIVRD", Some("biz-1"), None, 120).unwrap();
    let first = db.get(due[0].id).unwrap().unwrap();
    assert_eq!(
        (first.state.as_str(), first.receipt.as_deref(), first.check_at),
        ("sent", Some("delivered"), None)
    );
    assert_eq!(first.provider_id.as_deref(), Some("biz-1"));
    assert!(!db.resend(first.id, 130).unwrap(), "a message the provider took is never queued again");
    // The second: never taken.
    assert!(db.resend(due[1].id, 130).unwrap());
    let again = db.due(&["sms"], 130, 10).unwrap();
    assert_eq!((again.len(), again[0].key.as_str()), (1, "k2"), "same key");
    assert!(db.awaiting_row("sms", "biz-1", "k1").unwrap().is_none(), "no longer waiting");
}

#[test]
fn a_crash_mid_send_is_asked_about_or_queued_again_or_for_a_call_left_alone() {
    let (_d, mut db) = db();
    let mk = |db: &mut OutboxDb, n: i64, channel: &'static str| {
        let row = NewRow {
            notification_id: n,
            channel,
            recipient: "13800000101",
            recipient_name: "张队长",
            team: "team1",
            body: &body("a", n),
            key: &format!("k{n}"),
            priority: 4,
            fallback_of: None,
        };
        db.add_rows(&[row], 100).unwrap()[0]
    };
    let sms = mk(&mut db, 1, "sms");
    let voice = mk(&mut db, 2, "voice");
    let email = mk(&mut db, 3, "email");
    for id in [sms, voice, email] {
        db.start(id, 1, 100).unwrap().unwrap();
    }
    assert_eq!(db.recover_sending(&["sms"], &["voice"], 200).unwrap(), 3);
    let (s, v, e) =
        (db.get(sms).unwrap().unwrap(), db.get(voice).unwrap().unwrap(), db.get(email).unwrap().unwrap());
    assert_eq!((s.state.as_str(), s.check_at), ("unknown", Some(200)), "asked about");
    assert_eq!(
        (v.state.as_str(), v.receipt.as_deref(), v.check_at),
        ("unknown", Some("unknown"), None),
        "never called twice"
    );
    assert_eq!(e.state, "queued", "sent again, same key");
}

#[test]
fn a_reroute_and_the_trail_of_an_alert() {
    let (_d, mut db) = db();
    add(&mut db, 1, "n1:sms:13800000101", &body("a", 7), 100);
    let sms = db.due(&["sms"], 100, 1).unwrap().remove(0);
    let email = NewRow {
        notification_id: 1,
        channel: "email",
        recipient: "leader@example.gov.cn",
        recipient_name: "张队长",
        team: "team1",
        body: &body("a", 7),
        key: "f1:email:leader@example.gov.cn",
        priority: 4,
        fallback_of: Some(sms.id),
    };
    let ids = db.add_rows(&[email], 110).unwrap();
    assert_eq!(
        db.add_rows(&[NewRow { key: "f1:email:leader@example.gov.cn", ..email_row() }], 120).unwrap(),
        ids,
        "same key: same row"
    );
    assert!(db.reroute(sms.id, ids[0], "budget spent → email", 110).unwrap());
    assert!(db.due(&["sms"], 200, 10).unwrap().is_empty(), "the SMS is not sent");
    let siblings = db.siblings(1, "张队长", sms.id).unwrap();
    assert_eq!(siblings.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>(), ["email"]);
    assert_eq!(db.fallbacks_of(sms.id).unwrap().len(), 1);
    let trail = db.deliveries(&[7]).unwrap();
    assert_eq!(trail.len(), 2);
    assert_eq!((trail[0].row.state.as_str(), trail[0].rerouted_to), ("rerouted", Some(ids[0])));
    assert_eq!(trail[1].row.fallback_of, Some(sms.id));
    assert!(db.deliveries(&[8]).unwrap().is_empty());
}

fn email_row() -> NewRow<'static> {
    static B: std::sync::OnceLock<Body> = std::sync::OnceLock::new();
    NewRow {
        notification_id: 1,
        channel: "email",
        recipient: "leader@example.gov.cn",
        recipient_name: "张队长",
        team: "team1",
        body: B.get_or_init(|| body("a", 7)),
        key: "",
        priority: 4,
        fallback_of: None,
    }
}

#[test]
fn a_merged_row_tells_of_every_alert_and_alarms_are_remembered() {
    let (_d, mut db) = db();
    for (n, key) in [(1, "k1"), (2, "k2")] {
        add(&mut db, n, key, &body(key, n), 100);
    }
    let rows = db.due(&["sms"], 100, 10).unwrap();
    let merged = merge(&[rows[0].body.clone(), rows[1].body.clone()], Language::ZhCn);
    assert!(db.merge(rows[1].id, &merged, &[rows[0].id]).unwrap());
    let trail = db.deliveries(&[1]).unwrap();
    assert_eq!(trail.len(), 2, "the merged row, and the digest that carries it");
    assert_eq!(trail[0].merged_into, Some(rows[1].id));
    assert!(db.set_alarm("sms", "SignatureDoesNotMatch", 100).unwrap());
    assert!(!db.set_alarm("sms", "again", 200).unwrap(), "told once");
    assert_eq!(db.alarms().unwrap(), [("sms".to_string(), 100, "SignatureDoesNotMatch".to_string())]);
    assert!(db.clear_alarm("sms").unwrap());
    assert!(!db.clear_alarm("sms").unwrap());
}

#[test]
fn a_digest_sms_names_every_alert_and_acks_them_all() {
    let texts: Vec<String> = (0..60)
        .map(|k| format!("【某区防汛】Ⅲ级黄色预警 城东街道 积水点{k:02}，积水深度 21 cm（阈值 20 cm）。确认收到：http://hq/ack/L{k}"))
        .collect();
    let labels: Vec<String> = (0..60).map(|k| format!("Ⅲ 积水点{k:02}")).collect();
    let sms = super::merge::merge_sms_all(
        "（合并 60 条）",
        texts.iter().map(String::as_str),
        &labels,
        true,
        Some("http://hq/ack/ALL"),
    );
    assert!(sms.chars().count() <= super::message::SMS_MAX_CHARS, "{}", sms.chars().count());
    assert!(sms.starts_with("（合并 60 条）【某区防汛】Ⅲ 积水点00、Ⅲ 积水点01"), "{sms}");
    assert!(sms.ends_with("等 60 处。确认全部：http://hq/ack/ALL"), "{sms}");
    let named = (0..60).filter(|k| sms.contains(&format!("积水点{k:02}"))).count();
    assert!(named >= 25, "as many names as fit ({named})");
    let few = super::merge::merge_sms_all(
        "（合并 2 条）",
        texts[..2].iter().map(String::as_str),
        &labels[..2],
        true,
        Some("http://hq/ack/ALL"),
    );
    assert!(
        few.contains("积水深度 21 cm") && few.ends_with("。确认全部：http://hq/ack/ALL"),
        "texts when they fit: {few}"
    );
}
