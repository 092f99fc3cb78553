//! Two floodguard daemons on one PostgreSQL 15 state under a storm of level
//! changes — 30 extra waterlogging points in the three streets each
//! climbing Ⅳ→Ⅲ→Ⅱ→Ⅰ and falling back, thousands of readings — with the
//! leader SIGKILLed in the middle of it. Real Mosquitto, the signed SMS
//! peer, aiosmtpd for e-mail.
//!
//! What the storm calls for is derived from the alerts and their level
//! changes on record after it (the events table, written by whoever led)
//! and the sample district's routing, stated here on its own (teams by
//! street, members by level) — not from the outbox. What arrived is read at
//! the SMS peer and the SMTP server; each message's idempotency key (the
//! SMS `request_id`, the mail's Message-ID) names the notification it
//! carries, whose intents say which alerts at which level it told.
//!
//! Checked: the standby leads within lease + 2 s; every rise of every alert
//! reached every member the routing names, by SMS and by e-mail, exactly
//! once; no recipient told the same change twice under two keys; each site
//! alert's timeline is the storm's Ⅳ Ⅲ Ⅱ Ⅰ Ⅱ Ⅲ Ⅳ, no step missing or
//! doubled across the takeover; an unacked alert's repeats and escalations
//! come at their due times across the takeover (late only by the
//! leaderless interval, never restarted from zero, never doubled); an ack
//! through the standby's HTTP API stops the leader's repeats and
//! escalations of that alert; both daemons stop on SIGTERM with exit 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::notify::{email_channel, http_sms, options, teams, TOKEN};
use crate::support::floodguard::{sample_config_dir, Floodguard};
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::Peer;
use crate::support::postgres::Postgres;
use crate::support::publish::Publisher;
use crate::support::smtp::Smtp;
use crate::support::told::{alert_id, alerts, arrivals, rank, routed, told, Alert, Told};
use crate::support::{http_get, wait_for};

const LEASE_S: u64 = 3;
/// `repeat` and `escalate_after` at Ⅲ in the test's `[alerting]`.
const REPEAT: Duration = Duration::from_secs(6);
const ESCALATE: Duration = Duration::from_secs(10);
/// How late a follow-up may come after its due time (the follow-up tick,
/// a loaded debug build on two cores).
const SLACK: Duration = Duration::from_secs(3);

/// Everything told at once; short follow-ups at Ⅲ (the storm's points pass
/// Ⅲ in about a second, the long-standing alerts stay there).
const ALERTING: &str = r#"
[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
repeat = { IV = "1h", III = "6s", II = "1h", I = "1h" }
escalate_after = { IV = "1h", III = "10s", II = "1h", I = "1h" }
chain = ["leader", "street_director", "district_hq"]
"#;

const STREETS: [(&str, &str); 3] = [("chengdong", "CD"), ("binhe", "BH"), ("xincheng", "XC")];
const PER_STREET: usize = 10;
/// Each storm point's depths and the levels they are (thresholds Ⅳ 10,
/// Ⅲ 20, Ⅱ 27, Ⅰ 40 cm, deadband 3 cm).
const STEPS: [(f64, Option<&str>); 8] = [
    (12.0, Some("IV")),
    (22.0, Some("III")),
    (30.0, Some("II")),
    (45.0, Some("I")),
    (30.0, Some("II")),
    (22.0, Some("III")),
    (12.0, Some("IV")),
    (2.0, None),
];
const TICK: Duration = Duration::from_millis(100);
/// Ticks per step (every active point reports each tick) and between two
/// points' starts.
const STEP_TICKS: usize = 12;
const STAGGER_TICKS: usize = 3;

/// The alert that stays unacked at Ⅲ through the takeover, and the one
/// acked on the standby.
const KEPT: &str = "BH-JS-01";
const ACKED: &str = "XC-JS-01";

fn storm_sites() -> Vec<(String, &'static str)> {
    (0..PER_STREET * STREETS.len())
        .map(|k| {
            let (street, prefix) = STREETS[k % STREETS.len()];
            (format!("{prefix}-ST-{:02}", k / STREETS.len()), street)
        })
        .collect()
}

fn sites_toml() -> String {
    let mut t = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    for (k, (id, street)) in storm_sites().iter().enumerate() {
        t += &format!(
            "\n[[sites]]\nid = \"{id}\"\nname = \"风暴积水点{k:02}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"{street}\"\nlocation = {{ lat = {:.4}, lon = 114.3400 }}\n",
            30.5900 + k as f64 * 0.0002
        );
    }
    t
}

fn node(broker: &Mosquitto, peer: &Peer, smtp: &Smtp, pgs: &Postgres, name: &str) -> Floodguard {
    let sms = http_sms(peer, "budget = [{ max = 100000, per = \"1m\" }]\n");
    let channels = format!(
        "{}{sms}[channels.retry]\nmin = \"300ms\"\nmax = \"2s\"\ngive_up_after = \"10m\"\n",
        email_channel(smtp)
    );
    let mut o = options(broker, channels, teams(ALERTING, ""));
    o.sites_toml = Some(sites_toml());
    o.extra = format!(
        "[state]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"{name}\"\nlease = \"{LEASE_S}s\"\n",
        pgs.url()
    );
    Floodguard::start(o)
}

async fn leads(fg: &Floodguard) -> bool {
    match http_get(&fg.url("/api/v1/cluster")).await {
        Some((200, body)) => serde_json::from_str::<Value>(&body).is_ok_and(|v| v["role"] == "leader"),
        _ => false,
    }
}

async fn depth(p: &Publisher, site: &str, cm: f64) {
    for _ in 0..2 {
        p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// Publishes the storm from `start`: every tick each point in its window
/// reports its step's depth (and battery). Returns how many readings.
async fn storm(
    p: &Publisher,
    sites: &[(String, &str)],
    kill_at_tick: usize,
    mut kill: impl FnMut(),
) -> usize {
    let ticks = (sites.len() - 1) * STAGGER_TICKS + STEPS.len() * STEP_TICKS + 1;
    let started = tokio::time::Instant::now();
    let mut n = 0;
    for tick in 0..ticks {
        if tick == kill_at_tick {
            kill();
        }
        for (k, (site, _)) in sites.iter().enumerate() {
            let Some(t) = tick.checked_sub(k * STAGGER_TICKS) else { continue };
            let Some((cm, _)) = STEPS.get(t / STEP_TICKS) else { continue };
            let payload = format!(r#"{{"water_depth_cm":{cm},"battery_v":3.{}}}"#, 60 + (tick % 30));
            p.send(&format!("flood/{site}/telemetry"), payload.into_bytes()).await;
            n += 1;
        }
        tokio::time::sleep_until(started + TICK * (tick as u32 + 1)).await;
    }
    n
}

async fn ack_on(fg: &Floodguard, id: i64) -> u16 {
    reqwest::Client::new()
        .post(fg.url(&format!("/api/v1/alerts/{id}/ack")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"by": "区值班员", "note": "已派人到场"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Whether the follow-up sent at `at`, due at `due`, came on time: not
/// before it, and late only by the leaderless interval.
fn on_time(at: Instant, due: Instant, gap: (Instant, Instant)) -> bool {
    let latest = if due >= gap.0 && due <= gap.1 { gap.1 } else { due };
    at + Duration::from_millis(800) >= due && at <= latest + SLACK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_with_the_leader_sigkilled_is_told_once_in_full_and_followed_up_on_time() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let smtp = Smtp::start();
    let pgs = Postgres::start();
    let mut a = node(&broker, &peer, &smtp, &pgs, "fg-a");
    wait_for("fg-a to lead", Duration::from_secs(30), || async { leads(&a).await.then_some(()) }).await;
    let mut b = node(&broker, &peer, &smtp, &pgs, "fg-b");
    a.wait_connected().await;
    b.wait_connected().await;
    assert!(!leads(&b).await, "fg-b is the standby");
    let p = Publisher::connect(&broker.url(), "pub-cluster-storm");

    // The alert that stays unacked at Ⅲ: its first notice sets the clock of
    // its repeats and escalations.
    depth(&p, KEPT, 22.0).await;
    let kept_first = wait_for("the kept alert's first SMS", Duration::from_secs(20), || async {
        peer.accepted("/sms").first().map(|r| r.at)
    })
    .await;

    // The storm; the leader SIGKILLed in its middle.
    let sites = storm_sites();
    let kill_tick = ((sites.len() - 1) * STAGGER_TICKS + STEPS.len() * STEP_TICKS) / 2;
    let mut killed = None;
    let readings = storm(&p, &sites, kill_tick, || {
        a.kill9();
        killed = Some(Instant::now());
    })
    .await;
    let killed = killed.unwrap();
    let took = wait_for("fg-b to lead", Duration::from_secs(LEASE_S + 10), || async {
        leads(&b).await.then_some(killed.elapsed())
    })
    .await;
    // `leads` is polled after the storm: the takeover itself is judged by
    // the lease row's acquired_at against the kill below.
    let led_at = pgs.psql(
        "SELECT (EXTRACT(EPOCH FROM clock_timestamp() - acquired_at) * 1000)::BIGINT FROM fg_lease WHERE node = 'fg-b'",
    );
    let since_takeover = Duration::from_millis(led_at.parse::<u64>().unwrap());
    let takeover = Instant::now() - since_takeover;
    let failover = takeover.saturating_duration_since(killed);
    println!(
        "storm: {readings} readings over {} points; leader SIGKILLed mid-storm, fg-b led {failover:?} later (lease {LEASE_S} s; seen by polling after {took:?})",
        sites.len()
    );
    assert!(failover <= Duration::from_secs(LEASE_S + 2), "took over {failover:?} after the kill");

    // The killed node comes back as the standby; an alert raised now is
    // acked through its API after its first repeat, before its escalation.
    a.start_again();
    a.wait_connected().await;
    depth(&p, ACKED, 22.0).await;
    let acked_id = wait_for("the second alert", Duration::from_secs(20), || async {
        let (code, body) = http_get(&a.url("/api/v1/alerts?active=true")).await?;
        (code == 200 && body.contains(ACKED)).then(|| alert_id(&pgs, ACKED))
    })
    .await;
    assert!(!leads(&a).await, "the restarted node is the standby");
    tokio::time::sleep(REPEAT + Duration::from_secs(2)).await;
    assert_eq!(ack_on(&a, acked_id).await, 200, "ack on the standby");
    let acked_at = Instant::now();
    let acked_wall = floodguard::clock::wall_ns();
    // Long enough for two more repeats and an escalation of it, had it
    // not been acked (the kept one's go on: the control).
    tokio::time::sleep(ESCALATE + Duration::from_secs(4)).await;

    // The two long alerts fall back; what is queued goes out.
    depth(&p, KEPT, 2.0).await;
    depth(&p, ACKED, 2.0).await;
    let mut last = (0, Instant::now());
    let all = wait_for("the outbox to settle", Duration::from_secs(90), || {
        let now = arrivals(&peer, &smtp);
        let settled = now.len() == last.0 && last.1.elapsed() > Duration::from_secs(4);
        if now.len() != last.0 {
            last = (now.len(), Instant::now());
        }
        async move { settled.then_some(now) }
    })
    .await;

    // Nothing twice by idempotency key: a key that came twice is a request
    // in flight at the SIGKILL, sent again by the new leader with its key
    // (a provider drops it; aiosmtpd cannot).
    let mut by_key: BTreeMap<(&str, &str), Vec<Instant>> = BTreeMap::new();
    for (k, to, at) in &all {
        by_key.entry((k, to)).or_default().push(*at);
    }
    let again: Vec<_> = by_key.iter().filter(|(_, v)| v.len() > 1).collect();
    for ((k, to), v) in &again {
        // (The server stamps a mail when it stored it: a moment after
        // the old leader handed it over.)
        assert!(
            v.len() == 2 && v[0] <= takeover && v[1] + Duration::from_millis(500) >= takeover,
            "{k} to {to} came {} times, not once before the takeover and once after: {:?}",
            v.len(),
            v.iter().map(|at| at.saturating_duration_since(killed)).collect::<Vec<_>>()
        );
    }
    assert!(again.len() <= 4, "more resent than could be in flight at the kill: {again:?}");
    let sms_n = all.iter().filter(|(k, ..)| k.contains(":sms:")).count();
    println!(
        "{} SMS and {} mails, {} keys resent after the kill (in flight then)",
        sms_n,
        all.len() - sms_n,
        again.len()
    );
    let unique: Vec<(String, String, Instant)> = {
        let mut seen = BTreeSet::new();
        all.iter().filter(|(k, to, _)| seen.insert((k.clone(), to.clone()))).cloned().collect()
    };
    let told = told(&unique, &pgs);
    let alerts = alerts(&pgs);

    // Each storm point's alert: one alert, its whole staircase, in order.
    let want: Vec<(String, String)> = STEPS
        .iter()
        .enumerate()
        .map(|(i, (_, l))| {
            let event = match (i, l) {
                (0, _) => "firing",
                (_, None) => "resolved",
                (i, Some(l)) if rank(l) > rank(STEPS[i - 1].1.unwrap_or("")) => "escalated",
                _ => "deescalated",
            };
            (event.to_string(), l.unwrap_or("-").to_string())
        })
        .collect();
    let want: Vec<(String, String)> =
        want.into_iter().map(|(e, l)| if e == "resolved" { (e, "-".into()) } else { (e, l) }).collect();
    for (site, _) in &sites {
        let of: Vec<&Alert> = alerts.values().filter(|a| a.site == *site).collect();
        assert_eq!(of.len(), 1, "{site}: one alert, not {}", of.len());
        let got: Vec<(String, String)> = of[0]
            .changes
            .iter()
            .map(|(e, l)| (e.clone(), if e == "resolved" { "-".into() } else { l.clone() }))
            .collect();
        assert_eq!(got, want, "{site}: its timeline");
    }
    // Street and district alerts: each change a change (no level twice in a
    // row), rises up and falls down.
    for (id, a) in &alerts {
        let mut prev = 0;
        for (e, l) in &a.changes {
            let r = rank(l);
            match e.as_str() {
                "firing" => assert_eq!(prev, 0, "alert {id}: fired twice: {:?}", a.changes),
                "escalated" => assert!(r > prev, "alert {id}: {:?}", a.changes),
                "deescalated" => assert!(r < prev && r > 0, "alert {id}: {:?}", a.changes),
                _ => {}
            }
            prev = r;
        }
    }

    // Every rise told to everyone the routing names, by SMS and e-mail,
    // once per rise; no recipient told a change twice.
    let mut told_count: BTreeMap<(String, i64, String), usize> = BTreeMap::new();
    for t in told.iter().filter(|t| t.kind == "firing" || t.kind == "escalated") {
        *told_count.entry((t.to.clone(), t.alert, t.level.clone())).or_default() += 1;
    }
    let mut missing = Vec::new();
    let mut twice = Vec::new();
    let mut called_for = 0;
    for (id, a) in &alerts {
        let mut rises: BTreeMap<&str, usize> = BTreeMap::new();
        for (l, held) in &a.rises {
            if !held {
                *rises.entry(l).or_default() += 1;
            }
        }
        for (level, n) in rises {
            for to in routed(&a.kind, &a.street, level) {
                called_for += n;
                let got = told_count.get(&(to.clone(), *id, level.to_string())).copied().unwrap_or(0);
                if got < n {
                    missing
                        .push(format!("{to}: alert {id} ({} {}) at {level}: {got} of {n}", a.kind, a.site));
                }
                if got > n {
                    twice.push(format!("{to}: alert {id} ({} {}) at {level}: {got} for {n}", a.kind, a.site));
                }
            }
        }
    }
    let held: usize = alerts.values().map(|a| a.rises.iter().filter(|(_, h)| *h).count()).sum();
    println!(
        "{called_for} rise notices called for by {} alerts' timelines and the routing ({held} rises held back by the alert manager)",
        alerts.len()
    );
    assert!(
        alerts.values().filter(|a| a.kind == "site").all(|a| a.rises.iter().all(|(_, h)| !h)),
        "no site alert's rise held back"
    );
    if let Some(first) = missing.first() {
        // What the record says of the first alert missing a notice.
        let id: i64 = first.split("alert ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        eprintln!(
            "alert {id}'s events: {}\nwhat it was told: {:#?}\nkill {:?} ago, takeover {:?} ago",
            pgs.psql(&format!(
                "SELECT string_agg(event || ' ' || COALESCE(level, '-') || ' @' || ts, ', ' ORDER BY id) FROM events WHERE alert_id = {id}"
            )),
            told.iter().filter(|t| t.alert == id).collect::<Vec<_>>(),
            killed.elapsed(),
            takeover.elapsed()
        );
    }
    assert!(missing.is_empty(), "not told ({}): {missing:#?}", missing.len());
    assert!(twice.is_empty(), "told twice ({}): {twice:#?}", twice.len());
    // Nobody told of the same alert, kind, level and tier twice within a
    // repeat interval (two keys for one follow-up: two leaders, or one
    // restarted from zero), by when the follow-ups were made (mails arrive
    // in bursts behind a storm's).
    let mut made: BTreeMap<(String, i64, String, String, Option<String>), BTreeSet<i64>> = BTreeMap::new();
    for t in told.iter().filter(|t| t.kind == "repeat" || t.kind == "escalation") {
        made.entry((t.to.clone(), t.alert, t.kind.clone(), t.level.clone(), t.role.clone()))
            .or_default()
            .insert(t.created);
    }
    for (k, times) in &made {
        let times: Vec<&i64> = times.iter().collect();
        for w in times.windows(2) {
            let apart = Duration::from_nanos((w[1] - w[0]) as u64);
            assert!(apart + Duration::from_secs(1) >= REPEAT, "{k:?} made twice {apart:?} apart");
        }
    }
    let mut sorted = told.clone();
    sorted.sort_by_key(|t| t.at);

    // The kept alert's follow-ups across the takeover, at its leader
    // (赵队长) and the tiers: repeats every REPEAT from the first notice,
    // escalations at ESCALATE and 2 × ESCALATE, each once.
    let kept = alert_id(&pgs, KEPT);
    let gap = (killed, takeover);
    let leader_phone = "13800000201";
    let repeats: Vec<Instant> = sorted
        .iter()
        .filter(|t| t.alert == kept && t.kind == "repeat" && t.to == leader_phone)
        .map(|t| t.at)
        .collect();
    assert!(repeats.len() >= 4, "the kept alert repeated: {repeats:?}");
    let secs = |at: &Instant| format!("{:.1}", at.saturating_duration_since(kept_first).as_secs_f64());
    println!(
        "kept alert: repeats at {} s after its first notice (kill at {}, takeover at {})",
        repeats.iter().map(secs).collect::<Vec<_>>().join(", "),
        secs(&killed),
        secs(&takeover)
    );
    // Each follow-up is due REPEAT (ESCALATE) after the one before it, the
    // first after the first notice (`decide::next_repeat`: from when the
    // last one went).
    let mut prev = kept_first;
    for (i, at) in repeats.iter().enumerate() {
        let due = prev + REPEAT;
        assert!(
            on_time(*at, due, gap),
            "repeat {i} of the kept alert at {:?} after its first notice, due at {:?} (kill at {:?}, takeover at {:?})",
            at.duration_since(kept_first),
            due.duration_since(kept_first),
            killed.duration_since(kept_first),
            takeover.duration_since(kept_first)
        );
        prev = *at;
    }
    let escalations: Vec<(&str, &str, Instant)> = sorted
        .iter()
        // Timed by SMS (the mails of a storm queue at the SMTP server).
        .filter(|t| t.alert == kept && t.kind == "escalation" && !t.to.contains('@'))
        .map(|t| (t.role.as_deref().unwrap_or(""), t.to.as_str(), t.at))
        .collect();
    let mut prev = kept_first;
    for role in ["street_director", "district_hq"] {
        let of: Vec<(&str, Instant)> =
            escalations.iter().filter(|(r, ..)| *r == role).map(|(_, to, at)| (*to, *at)).collect();
        assert!(!of.is_empty(), "the kept alert escalated to {role}: {escalations:?}");
        let due = prev + ESCALATE;
        for (to, at) in &of {
            assert!(
                on_time(*at, due, gap),
                "escalation to {role} ({to}) at {:?}, due {:?} (kill {:?}, takeover {:?})",
                at.duration_since(kept_first),
                due.duration_since(kept_first),
                killed.duration_since(kept_first),
                takeover.duration_since(kept_first)
            );
        }
        let tos: BTreeSet<&str> = of.iter().map(|(to, _)| *to).collect();
        assert_eq!(tos.len(), of.len(), "escalated to {role} once per person: {of:?}");
        prev = of.iter().map(|(_, at)| *at).min().unwrap();
    }

    // The alert acked on the standby: no repeat or escalation of it after
    // the ack, while the kept one went on being repeated.
    let after_ack: Vec<&Told> = sorted
        .iter()
        .filter(|t| t.alert == acked_id && (t.kind == "repeat" || t.kind == "escalation"))
        // By when the leader made it (a mail made before may arrive after).
        .filter(|t| t.created > acked_wall)
        .collect();
    assert!(after_ack.is_empty(), "followed up after the ack on the standby: {after_ack:#?}");
    let before_ack = sorted
        .iter()
        .filter(|t| t.alert == acked_id && t.kind == "repeat" && t.created <= acked_wall)
        .count();
    assert!(before_ack > 0, "the acked alert was repeated before its ack");
    assert!(
        repeats.iter().any(|at| *at > acked_at + REPEAT),
        "the kept alert was still repeated after the other's ack (the control)"
    );

    assert_eq!(a.terminate(Duration::from_secs(20)), Some(0), "fg-a stops on SIGTERM");
    assert_eq!(b.terminate(Duration::from_secs(20)), Some(0), "fg-b stops on SIGTERM");
}
