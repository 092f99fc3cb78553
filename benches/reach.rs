//! Notifications that reach a person, measured: a 50-alert storm for one
//! street against the SMS budget, and the time from a Ⅰ crossing to the
//! first phone call when nobody acknowledges.
//!
//! `cargo bench --bench reach` (after scripts/test.sh installed the
//! services). The real daemon, Mosquitto, aiosmtpd and the HTTP peer
//! playing the providers (Aliyun SMS with receipts, Aliyun voice).
//!
//! Time is compressed 60× for the budget only: the SMS windows are
//! Aliyun's (1 a minute, 5 an hour, 10 a day) with each window 60 times
//! shorter — an "hour" is 60 s — so an hour of storm runs in a minute.
//! The storm: 50 waterlogging points of one street (城东) cross Ⅲ at random
//! times over that "hour", 10 of them go on to Ⅱ; the street's team (a
//! leader from Ⅳ, a member from Ⅲ, the street director from Ⅱ) is told.
//! Figures: the most SMS any recipient got in any "hour", against the
//! budget of 5; how many of the alerts that concerned a recipient reached
//! them named (in an SMS text, an e-mail, or the page behind a digest's
//! one ack-all link); fallbacks to e-mail.
//!
//! Beside the storm, 10 probes in streets of their own cross Ⅰ and nobody
//! acks: the time from the crossing reading to the SingleCallByTts request
//! is measured against `voice_after` (10 s here; real time, not
//! compressed).

mod common;
#[path = "../tests/integration/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::floodguard::{Floodguard, Options};
use support::mosquitto::Mosquitto;
use support::peer::{Peer, ALIYUN_SECRET};
use support::publish::Publisher;
use support::smtp::Smtp;

const STORM: usize = 50;
const RISE: usize = 10;
const PROBES: usize = 10;
/// An "hour" of the compressed budget.
const HOUR: Duration = Duration::from_secs(60);
const VOICE_AFTER: Duration = Duration::from_secs(10);
const TOKEN: &str = "bench-token-0123456789abcdef0123456789";

/// (phone, name, min level) of the storm street's team.
const PEOPLE: [(&str, &str, &str); 3] = [
    ("13900000001", "城东队长", "IV"),
    ("13900000002", "城东队员", "III"),
    ("13900000003", "城东街道主任", "II"),
];

fn sites_toml() -> String {
    let mut streets: Vec<String> = vec!["chengdong".into()];
    streets.extend((0..PROBES).map(|i| format!("probe{i}")));
    let sites = (0..STORM)
        .map(|k| (format!("CD-ST-{k:02}"), "chengdong".to_string()))
        .chain((0..PROBES).map(|i| (format!("P-{i:02}"), format!("probe{i}"))));
    common::sites_toml(&streets, sites)
}

fn teams_toml() -> String {
    let mut t = String::from(
        "[alerting]\ngroup_window = \"1s\"\ngroup_wait = { IV = \"1s\", III = \"1s\", II = \"0s\", I = \"0s\" }\n\
         storm_gap = \"2s\"\nrepeat = { IV = \"1h\", III = \"1h\", II = \"1h\", I = \"1h\" }\n\
         escalate_after = { IV = \"1h\", III = \"1h\", II = \"1h\", I = \"1h\" }\n\
         chain = [\"leader\"]\nvoice_after = \"10s\"\n\n\
         [[teams]]\nid = \"cd\"\nname = \"城东队\"\nstreets = [\"chengdong\"]\n\n",
    );
    for (phone, name, level) in PEOPLE {
        let role = if level == "IV" { "leader" } else { "member" };
        t.push_str(&format!(
            "[[teams.members]]\nname = \"{name}\"\nrole = \"{role}\"\nphone = \"{phone}\"\nemail = \"{phone}@example.gov.cn\"\n\
             min_level = \"{level}\"\nchannels = [\"sms\"]\n\n"
        ));
    }
    for i in 0..PROBES {
        t.push_str(&format!(
            "[[teams]]\nid = \"p{i}\"\nname = \"探针队{i}\"\nstreets = [\"probe{i}\"]\n\n\
             [[teams.members]]\nname = \"探针队长{i}\"\nrole = \"leader\"\nphone = \"1380000{i:04}\"\n\n"
        ));
    }
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Two readings (the plan's sustain) of a depth.
async fn depth(p: &Publisher, site: &str, cm: f64) -> Instant {
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes()).await;
    t
}

async fn get(url: &str) -> String {
    let r = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
    r.text().await.unwrap()
}

async fn run() {
    let broker = Mosquitto::start();
    let smtp = Smtp::start();
    let peer = Peer::start().await;
    let mut o = Options::new(broker.url());
    o.sites_toml = Some(sites_toml());
    o.teams_toml = Some(teams_toml());
    o.plan_toml = Some(common::plan_toml("CD-ST-49"));
    o.materials_toml = Some(String::new());
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    o.channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{sms}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n\
         budget = [{{ max = 1, per = \"1s\" }}, {{ max = 5, per = \"60s\" }}, {{ max = 10, per = \"1440s\" }}]\n\n\
         [channels.email]\nsmtp_url = \"{smtp}\"\nfrom = \"某区防汛指挥部 <flood@example.gov.cn>\"\n\n\
         [channels.voice]\nprovider = \"aliyun\"\nurl = \"{voice}\"\nkey_id = \"testid\"\nkey_secret = \"{ALIYUN_SECRET}\"\n\
         template = \"TTS_171115123\"\nresult_poll = \"2s\"\n\n\
         [channels.ack]\nbase_url = \"http://127.0.0.1\"\nsecret = \"bench-ack-secret-0123456789abcdef012345\"\n",
        sms = peer.url("/sms"),
        smtp = smtp.url(),
        voice = peer.url("/dyvms"),
    );
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let storm = Publisher::connect(&broker.url(), "bench-reach-storm");
    let probe = Publisher::connect(&broker.url(), "bench-reach-probe");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The storm over one "hour", the probes beside it.
    let start = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut plan: Vec<(Duration, String, f64)> = (0..STORM)
        .map(|k| {
            (Duration::from_millis(next() % (HOUR.as_millis() as u64 - 5_000)), format!("CD-ST-{k:02}"), 21.0)
        })
        .collect();
    for k in 0..RISE {
        let at = plan[k].0 + Duration::from_secs(3);
        plan.push((at, format!("CD-ST-{k:02}"), 28.0));
    }
    plan.sort_by_key(|p| p.0);
    let probes = tokio::spawn({
        let probe_start = start;
        async move {
            let mut crossed = Vec::new();
            for i in 0..PROBES {
                // At every phase of the alert stage's one-second tick.
                let at = Duration::from_secs(5)
                    + Duration::from_secs(4) * i as u32
                    + Duration::from_millis(i as u64 * 97);
                tokio::time::sleep((probe_start + at).saturating_duration_since(Instant::now())).await;
                crossed.push(depth(&probe, &format!("P-{i:02}"), 45.0).await);
            }
            // Dropped right after its last publish, the publisher could
            // lose it: keep it until the caller is done.
            (crossed, probe)
        }
    });
    for (at, site, cm) in &plan {
        tokio::time::sleep((start + *at).saturating_duration_since(Instant::now())).await;
        depth(&storm, site, *cm).await;
    }
    let (crossed, _probe) = probes.await.unwrap();
    // Let the held digests and the last calls go: until nothing waits for
    // the people of the storm (two "hours" at most).
    tokio::time::sleep(VOICE_AFTER).await;
    let settle = Instant::now();
    loop {
        let outbox: serde_json::Value =
            serde_json::from_str(&get(&fg.url("/api/v1/outbox?limit=1000")).await).unwrap_or_default();
        let waiting = outbox["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| PEOPLE.iter().any(|p| m["to"] == p.1))
            .filter(|m| matches!(m["state"].as_str(), Some("queued" | "sending")))
            .count();
        if waiting == 0 || settle.elapsed() > 2 * HOUR {
            println!(
                "  settled {:.0} s after the storm ({waiting} messages still waiting)",
                settle.elapsed().as_secs_f64() + VOICE_AFTER.as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // 1. Messages per recipient per "hour".
    let sms = peer.accepted("/sms");
    let mails = smtp.mails();
    let outbox: serde_json::Value =
        serde_json::from_str(&get(&fg.url("/api/v1/outbox?limit=1000")).await).unwrap_or_default();
    let rows = outbox["messages"].as_array().cloned().unwrap_or_default();
    println!("reach: a {STORM}-alert storm in one street over one \"hour\" (budget windows compressed 60×: 1/s, 5/60 s, 10/1440 s)");
    for (phone, name, level) in PEOPLE {
        let mine: Vec<_> = sms.iter().filter(|r| r.to == phone).collect();
        let most = mine
            .iter()
            .map(|r| mine.iter().filter(|s| s.at >= r.at && s.at.duration_since(r.at) < HOUR).count())
            .max()
            .unwrap_or(0);
        let my_rows: Vec<&serde_json::Value> = rows.iter().filter(|m| m["to"] == name).collect();
        let alerts: BTreeSet<i64> = my_rows
            .iter()
            .flat_map(|m| m["alert_ids"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_i64())
            .collect();
        let notices = my_rows.iter().filter(|m| m["channel"] == "sms").count();
        let rerouted = my_rows.iter().filter(|m| m["state"] == "rerouted").count();
        let my_mails: Vec<_> = mails.iter().filter(|m| m.to.contains(phone)).collect();
        // Which of the alerts reached them named: site names in the SMS
        // texts and e-mails, and in the pages behind the digests' links.
        let mut seen = String::new();
        for r in &mine {
            seen.push_str(&r.text);
            if let Some(at) = r.text.find("/ack/") {
                let token: String = r.text[at + 5..].chars().take_while(|c| !c.is_whitespace()).collect();
                seen.push_str(&get(&fg.url(&format!("/ack/{token}"))).await);
            }
        }
        for m in &my_mails {
            seen.push_str(&m.text);
        }
        let in_text: String = mine.iter().map(|r| r.text.as_str()).collect();
        let names: BTreeMap<i64, String> = {
            let all: serde_json::Value =
                serde_json::from_str(&get(&fg.url("/api/v1/alerts?state=all&limit=1000")).await)
                    .unwrap_or_default();
            all["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| Some((a["id"].as_i64()?, a["site_name"].as_str()?.to_string())))
                .collect()
        };
        let site_alerts: Vec<(&i64, &String)> = alerts
            .iter()
            .filter_map(|a| names.get_key_value(a))
            .filter(|(_, n)| n.starts_with("积水点"))
            .collect();
        let named = site_alerts.iter().filter(|(_, n)| seen.contains(n.as_str())).count();
        let unnamed: Vec<&String> =
            site_alerts.iter().filter(|(_, n)| !seen.contains(n.as_str())).map(|(_, n)| *n).collect();
        if !unnamed.is_empty() {
            println!("    not named to {name}: {unnamed:?}");
        }
        let named_text = site_alerts.iter().filter(|(_, n)| in_text.contains(n.as_str())).count();
        println!(
            "  {name} (from {level}): {} SMS for {notices} notices, at most {most} in any \"hour\" (budget 5); \
             {named}/{} point alerts named ({named_text} in SMS texts, the rest behind the digests' ack-all links \
             and in e-mails); {rerouted} Ⅱ notices the SMS budget could not carry went by e-mail ({} e-mails)",
            mine.len(),
            site_alerts.len(),
            my_mails.len()
        );
    }

    // 2. A Ⅰ nobody acks: the first call.
    let calls = peer.accepted("/dyvms");
    let mut after: Vec<f64> = Vec::new();
    for (i, t) in crossed.iter().enumerate() {
        let phone = format!("1380000{i:04}");
        match calls.iter().filter(|c| c.to == phone).map(|c| c.at).min() {
            Some(c) => after.push(c.duration_since(*t).as_secs_f64()),
            None => println!("  probe {i} was not called"),
        }
    }
    after.sort_by(f64::total_cmp);
    if after.is_empty() {
        println!("  no calls placed");
    } else {
        println!(
            "  Ⅰ crossing → SingleCallByTts, nobody acking ({} of {PROBES} probes called; voice_after {} s, goal voice_after + 5 s): \
             min {:.2} s  p50 {:.2} s  max {:.2} s",
            after.len(),
            VOICE_AFTER.as_secs(),
            after[0],
            percentile(&after, 0.5),
            after[after.len() - 1]
        );
    }
    println!(
        "  calls placed in all: {} (each probe's leader once)",
        calls.iter().filter(|c| c.action == "SingleCallByTts").count()
    );
}

fn main() {
    common::bench_main("reach", run);
}
