//! What a storm's messages told whom, and what the record says they should
//! have (`cluster_storm.rs`): each SMS's and mail's idempotency key names
//! the notification it carries (the log of the alert manager), whose
//! intents say which alert at which level; the alerts' timelines come from
//! the events table; the sample district's routing is stated here on its
//! own, apart from `alerts::route`.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use super::peer::Peer;
use super::postgres::Postgres;
use super::smtp::Smtp;

/// The sample district's people as the routing should pick them, stated
/// independently of `alerts::route`: (team, streets it covers, member,
/// lowest level, phone, e-mail). The district's alerts go to the team
/// covering every street.
const PEOPLE: [(&str, &[&str], &str, &str, &str, Option<&str>); 13] = [
    ("team1", &["chengdong"], "张队长", "IV", "13800000101", Some("team1-leader@example.gov.cn")),
    ("team1", &["chengdong"], "李队员", "III", "13800000102", None),
    (
        "team1",
        &["chengdong"],
        "城东街道 王主任",
        "II",
        "13800000103",
        Some("chengdong-director@example.gov.cn"),
    ),
    ("team2", &["binhe"], "赵队长", "IV", "13800000201", Some("team2-leader@example.gov.cn")),
    ("team2", &["binhe"], "钱队员", "III", "13800000202", None),
    ("team2", &["binhe"], "滨河街道 孙主任", "II", "13800000203", Some("binhe-director@example.gov.cn")),
    ("team3", &["xincheng"], "周队长", "IV", "13800000301", Some("team3-leader@example.gov.cn")),
    ("team3", &["xincheng"], "吴队员", "III", "13800000302", None),
    (
        "team3",
        &["xincheng"],
        "新城街道 郑主任",
        "II",
        "13800000303",
        Some("xincheng-director@example.gov.cn"),
    ),
    ("hq", &["chengdong", "binhe", "xincheng"], "区值班员", "IV", "13800000901", Some("duty@example.gov.cn")),
    (
        "hq",
        &["chengdong", "binhe", "xincheng"],
        "区防汛办 刘主任",
        "III",
        "13800000902",
        Some("flood-office@example.gov.cn"),
    ),
    (
        "hq",
        &["chengdong", "binhe", "xincheng"],
        "区指挥部 陈副指挥",
        "II",
        "13800000903",
        Some("hq-deputy@example.gov.cn"),
    ),
    (
        "hq",
        &["chengdong", "binhe", "xincheng"],
        "区指挥部 林指挥",
        "I",
        "13800000904",
        Some("hq-commander@example.gov.cn"),
    ),
];

pub fn rank(level: &str) -> u8 {
    match level {
        "IV" => 1,
        "III" => 2,
        "II" => 3,
        "I" => 4,
        _ => 0,
    }
}

/// The addresses (phones and e-mails) the routing names for an alert of
/// `kind` in `street` at `level`.
pub fn routed(kind: &str, street: &str, level: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (_, streets, _, min, phone, email) in PEOPLE {
        let covers = match kind {
            "district" => ["chengdong", "binhe", "xincheng"].iter().all(|s| streets.contains(s)),
            _ => streets.contains(&street),
        };
        if covers && rank(min) <= rank(level) {
            out.push(phone.to_string());
            out.extend(email.map(str::to_string));
        }
    }
    out
}

/// One thing a message told one recipient.
#[derive(Debug, Clone)]
pub struct Told {
    #[allow(dead_code)] // shown when an assertion fails
    pub key: String,
    pub to: String,
    pub alert: i64,
    pub kind: String,
    pub level: String,
    pub role: Option<String>,
    /// When the alert manager made the intent (ns).
    pub created: i64,
    pub at: Instant,
}

/// The notification log: id → body.
fn notifications(pgs: &Postgres) -> BTreeMap<i64, Value> {
    pgs.psql("SELECT json_build_object('id', id, 'body', body::json) FROM notifications")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_i64().unwrap(), v["body"].clone())
        })
        .collect()
}

/// Rows folded into another (a digest): the kept row's key → the
/// notifications of those folded into it.
fn merged(pgs: &Postgres) -> BTreeMap<String, Vec<i64>> {
    let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in pgs
        .psql("SELECT k.idempotency_key || ' ' || o.notification_id FROM outbox o JOIN outbox k ON k.id = o.merged_into")
        .lines()
    {
        let (k, n) = l.rsplit_once(' ').unwrap();
        m.entry(k.to_string()).or_default().push(n.parse().unwrap());
    }
    m
}

/// `n{id}:{channel}:{to}` → id.
fn notification_of(key: &str) -> i64 {
    key.strip_prefix('n')
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a notification's key: {key}"))
}

/// What each message that arrived told its recipient: (key, to, at) of
/// every SMS and mail, through the notifications its key names.
pub fn told(arrived: &[(String, String, Instant)], pgs: &Postgres) -> Vec<Told> {
    let log = notifications(pgs);
    let folded = merged(pgs);
    let mut out = Vec::new();
    for (key, to, at) in arrived {
        let mut ids = vec![notification_of(key)];
        ids.extend(folded.get(key).into_iter().flatten());
        for id in ids {
            let n = log.get(&id).unwrap_or_else(|| panic!("{key}: notification {id} not on record"));
            for i in n["intents"].as_array().unwrap() {
                let names = i["recipients"].as_array().unwrap().iter().any(|r| {
                    r["phone"].as_str() == Some(to.as_str()) || r["email"].as_str() == Some(to.as_str())
                });
                if names {
                    out.push(Told {
                        key: key.clone(),
                        to: to.clone(),
                        alert: i["alert"]["id"].as_i64().unwrap(),
                        kind: i["kind"].as_str().unwrap().to_string(),
                        level: i["alert"]["level"].as_str().unwrap_or("").to_string(),
                        role: i["escalation_role"].as_str().map(str::to_string),
                        created: i["created_at"].as_i64().unwrap(),
                        at: *at,
                    });
                }
            }
        }
    }
    out
}

/// Every SMS and mail that arrived: (idempotency key, recipient, when).
pub fn arrivals(peer: &Peer, smtp: &Smtp) -> Vec<(String, String, Instant)> {
    let mut v: Vec<(String, String, Instant)> =
        peer.accepted("/sms").into_iter().map(|r| (r.key.unwrap_or_default(), r.to, r.at)).collect();
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    for m in smtp.mails() {
        let key = m.message_id.trim_start_matches('<').trim_end_matches('>').trim_end_matches("@floodguard");
        let ago = wall.duration_since(m.stored_at).unwrap_or_default();
        v.push((key.to_string(), address(&m.to), now - ago));
    }
    v
}

pub struct Alert {
    pub kind: String,
    pub site: String,
    pub street: String,
    /// (event, level) of its level changes, in order.
    pub changes: Vec<(String, String)>,
    /// The levels of its rises (firing, escalated), each with whether the
    /// alert manager held the notice back (a street at its sites' level,
    /// a silence, a site offline: the `held`, `silenced`, `inhibited` or
    /// `folded` event right after it).
    pub rises: Vec<(String, bool)>,
}

pub fn alerts(pgs: &Postgres) -> BTreeMap<i64, Alert> {
    let mut out: BTreeMap<i64, Alert> = pgs
        .psql("SELECT json_build_object('id', id, 'kind', kind, 'site', site, 'street', street) FROM alerts")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (
                v["id"].as_i64().unwrap(),
                Alert {
                    kind: s("kind"),
                    site: s("site"),
                    street: s("street"),
                    changes: vec![],
                    rises: vec![],
                },
            )
        })
        .collect();
    for l in pgs
        .psql(
            "SELECT alert_id || ' ' || event || ' ' || COALESCE(level, '-') FROM events
             WHERE event IN ('firing', 'escalated', 'deescalated', 'resolved', 'held', 'silenced', 'inhibited', 'folded')
             ORDER BY id",
        )
        .lines()
    {
        let mut it = l.split(' ');
        let (id, event, level) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let a = out.get_mut(&id.parse().unwrap()).unwrap();
        match event {
            "firing" | "escalated" => a.rises.push((level.into(), false)),
            "held" | "silenced" | "inhibited" | "folded" => {
                if let Some((l, held)) = a.rises.last_mut() {
                    *held |= l == level && a.changes.last().is_some_and(|(e, _)| e == "firing" || e == "escalated");
                }
                continue;
            }
            _ => {}
        }
        a.changes.push((event.into(), level.into()));
    }
    out
}

pub fn alert_id(pgs: &Postgres, site: &str) -> i64 {
    pgs.psql(&format!("SELECT id FROM alerts WHERE site = '{site}' AND rule = 'depth' ORDER BY id LIMIT 1"))
        .parse()
        .unwrap_or_else(|_| panic!("no alert at {site}"))
}

/// The address inside `Name <address>`.
fn address(to: &str) -> String {
    to.rsplit('<').next().unwrap_or(to).trim_end_matches('>').trim().to_string()
}
