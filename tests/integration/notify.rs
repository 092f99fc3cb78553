//! Notifications through the running daemon to real peers: aiosmtpd for
//! e-mail, an HTTP peer for SMS providers and group robots that checks
//! their signatures independently, outages, rate limits, a SIGKILL in the
//! middle of a burst, a storm, and the ack links.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options};
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::{Peer, ALIYUN_SECRET, DINGTALK_SECRET, TENCENT_SECRET};
use crate::support::publish::Publisher;
use crate::support::smtp::{Mode, Smtp};
use crate::support::{http_get, wait_for};

pub(crate) const TOKEN: &str = "notify-test-token-0123456789abcdef0123";
const SITE: &str = "人民路铁路桥下穿";

/// The sample teams with an `[alerting]` of the test's and, optionally,
/// robots for team1.
pub(crate) fn teams(alerting: &str, team1_robots: &str) -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    let start = text.find("[alerting]").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    let text = format!("{}{}{}", &text[..start], alerting.trim(), &text[end..]);
    let team2 = text.find("[[teams]]\nid = \"team2\"").unwrap();
    format!("{}{}\n\n{}", &text[..team2], team1_robots.trim(), &text[team2..])
}

/// Everything at once, told within a second.
pub(crate) const QUICK: &str = r#"
[alerting]
group_window = "1s"
group_wait = { IV = "0s", III = "0s", II = "0s", I = "0s" }
"#;

pub(crate) fn options(broker: &Mosquitto, channels: String, teams_toml: String) -> Options {
    let mut o = Options::new(broker.url());
    o.channels = channels;
    o.teams_toml = Some(teams_toml);
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    o
}

pub(crate) fn email_channel(smtp: &Smtp) -> String {
    format!(
        "[channels.email]\nsmtp_url = \"{}\"\nfrom = \"某区防汛指挥部 <flood@example.gov.cn>\"\n",
        smtp.url()
    )
}

pub(crate) fn http_sms(peer: &Peer, extra: &str) -> String {
    format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n{extra}",
        peer.url("/sms")
    )
}

pub(crate) const FAST_RETRY: &str =
    "[channels.retry]\nmin = \"500ms\"\nmax = \"3s\"\ngive_up_after = \"10m\"\n";

/// Two readings (the plan's sustain) of a depth at a site.
pub(crate) async fn depth(p: &Publisher, site: &str, cm: f64) {
    for _ in 0..2 {
        p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// The address inside `Name <address>`.
pub(crate) fn address(to: &str) -> String {
    to.rsplit('<').next().unwrap_or(to).trim_end_matches('>').trim().to_string()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Messages accepted per recipient.
fn per_recipient(reqs: &[crate::support::peer::Req]) -> BTreeMap<String, Vec<&crate::support::peer::Req>> {
    let mut m: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in reqs {
        m.entry(r.to.clone()).or_default().push(r);
    }
    m
}

pub(crate) async fn alert_of(fg: &Floodguard, site: &str) -> Value {
    let (code, body) = http_get(&fg.url("/api/v1/alerts?state=all")).await.unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["site"] == site && a["rule"] == "depth")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_iii_crossing_mails_exactly_the_members_the_rules_name_while_sms_is_down() {
    let broker = Mosquitto::start();
    let smtp = Smtp::start();
    let peer = Peer::start().await;
    // The SMS gateway is down the whole test: e-mail must not wait for it.
    peer.behave(|b| b.fail_until = Some(Instant::now() + Duration::from_secs(3600)));
    let channels = format!("{}{}{FAST_RETRY}", email_channel(&smtp), http_sms(&peer, ""));
    let fg = Floodguard::start(options(&broker, channels, teams(QUICK, "")));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-mail");
    let crossed = Instant::now();
    depth(&p, "CD-JS-01", 21.0).await;

    let mails = wait_for("three mails", Duration::from_secs(20), || async {
        let m = smtp.mails();
        (m.len() >= 3).then_some(m)
    })
    .await;
    let took = crossed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = if smtp.mails().len() > mails.len() { smtp.mails() } else { mails };
    // Ⅲ in 城东: team1 from Ⅳ (张队长) and Ⅲ (李队员, no e-mail), the
    // district HQ's duty officer (Ⅳ) and flood office (Ⅲ); not the street
    // director (Ⅱ) nor the commanders (Ⅱ, Ⅰ).
    let to: BTreeSet<String> = mails.iter().map(|m| address(&m.to)).collect();
    assert_eq!(
        to,
        set(["duty@example.gov.cn", "flood-office@example.gov.cn", "team1-leader@example.gov.cn"])
    );
    assert_eq!(mails.len(), 3, "one mail each: {:?}", mails.iter().map(|m| &m.to).collect::<Vec<_>>());
    let leader = mails.iter().find(|m| m.to.contains("team1-leader")).unwrap();
    assert_eq!(leader.to, "张队长 <team1-leader@example.gov.cn>");
    assert_eq!(leader.from, "某区防汛指挥部 <flood@example.gov.cn>");
    assert_eq!(leader.subject, format!("【某区防汛】Ⅲ级黄色预警 城东街道 {SITE} 21 cm"));
    for part in [
        "积水深度 21 cm（阈值 20 cm）",
        "责任单位：",
        "抢险队到场排水，交警现场疏导交通",
        "措施：启动移动泵车强排；下穿通道入口显示屏发布“积水慢行”；安排专人现场值守",
        "到岗时限：30 分钟",
    ] {
        assert!(leader.text.contains(part), "{part:?} in the plain text:\n{}", leader.text);
    }
    assert!(leader.html.contains("Ⅲ级") && leader.html.contains(SITE), "{}", leader.html);
    println!("Ⅲ crossing → 3 mails in {took:?} while the SMS gateway answered 500");

    let sms_tries = peer.requests().iter().filter(|r| r.path == "/sms").count();
    assert!(sms_tries >= 4, "SMS was tried for the four recipients ({sms_tries} requests)");
    assert!(peer.accepted("/sms").is_empty());
    // What the operator sees: SMS waiting and getting older, nothing else.
    let sms_waiting = fg.metric("floodguard_outbox_waiting{channel=\"sms\"}").await;
    assert_eq!(sms_waiting, Some(4.0), "four SMS wait for the gateway");
    assert_eq!(fg.metric("floodguard_outbox_waiting{channel=\"email\"}").await, Some(0.0));
    let age = fg.metric("floodguard_outbox_oldest_waiting_seconds").await.unwrap();
    assert!(age >= 2.0, "the oldest SMS has waited since the crossing ({age} s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_drills_a_team_over_starttls_and_implicit_tls_with_auth() {
    let pki = crate::support::pki::pki();
    let dir = crate::support::tempdir("smtp-pki-");
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key, ca) =
        (w("server.pem", &pki.server_cert), w("server.key", &pki.server_key), w("ca.pem", &pki.ca));
    let broker = Mosquitto::start();
    for mode in [Mode::StartTls, Mode::Smtps] {
        let smtp = Smtp::start_with(mode, Some((&cert, &key)), Some(("floodguard", "mail-pw")));
        let channels =
            format!("{}username = \"floodguard\"\nca_file = \"{}\"\n", email_channel(&smtp), ca.display());
        let fg = Floodguard::start(options(&broker, channels, teams(QUICK, "")));
        let run = |password: &str| {
            std::process::Command::new(crate::support::floodguard::BIN)
                .args(["notify-test", "--team", "team1", "-c"])
                .arg(fg.config_path())
                .env("FLOODGUARD__CHANNELS__EMAIL__PASSWORD", password)
                .output()
                .unwrap()
        };
        let out = run("mail-pw");
        let table = String::from_utf8_lossy(&out.stdout);
        println!("{mode:?}:\n{table}");
        assert!(out.status.success(), "{mode:?}: {table}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(table.starts_with("成员"), "{table}");
        assert!(table.contains("张队长") && table.contains("✔ 已送达"), "{table}");
        assert!(table.contains("共 2 条，送达 2 条，失败 0 条"), "two members of team1 have e-mail: {table}");
        let mails = smtp.mails();
        let to: BTreeSet<String> = mails.iter().map(|m| address(&m.to)).collect();
        assert_eq!(to, set(["chengdong-director@example.gov.cn", "team1-leader@example.gov.cn"]));
        assert!(
            mails.iter().all(|m| m.subject.contains("演练")),
            "{:?}",
            mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );

        let out = run("wrong");
        let table = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "a refused login fails the drill: {table}");
        assert!(table.contains("✘"), "{table}");
        assert_eq!(smtp.mails().len(), 2, "nothing got through with the wrong password");
    }
}

/// team1's two robots on the peer.
fn robots(peer: &Peer) -> String {
    format!(
        "[[teams.robots]]\nkind = \"wecom\"\nurl = \"{}\"\n\n[[teams.robots]]\nkind = \"dingtalk\"\nurl = \"{}\"\nsecret = \"{DINGTALK_SECRET}\"\n",
        peer.url("/wecom?key=abc"),
        peer.url("/dingtalk?access_token=abc")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_sms_and_robots_outlast_a_30_s_outage_each_delivered_once_and_signed() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let channels = format!(
        "[channels.sms]\nprovider = \"aliyun\"\nurl = \"{}\"\nkey_id = \"testid\"\nkey_secret = \"{ALIYUN_SECRET}\"\n\
         sign_name = \"某区防汛\"\ntemplate = \"SMS_154950909\"\n{FAST_RETRY}",
        peer.url("/aliyun")
    );
    let fg = Floodguard::start(options(&broker, channels, teams(QUICK, &robots(&peer))));
    fg.wait_connected().await;
    let back_at = Instant::now() + Duration::from_secs(30);
    peer.behave(|b| b.fail_until = Some(back_at));
    let p = Publisher::connect(&broker.url(), "pub-notify-aliyun");
    depth(&p, "CD-JS-01", 21.0).await;

    let phones = set(["13800000101", "13800000102", "13800000901", "13800000902"]);
    wait_for("every SMS and robot message after the outage", Duration::from_secs(60), || async {
        let sms: BTreeSet<String> = peer.accepted("/aliyun").iter().map(|r| r.to.clone()).collect();
        (sms == phones && !peer.accepted("/wecom").is_empty() && !peer.accepted("/dingtalk").is_empty())
            .then_some(())
    })
    .await;
    let done = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let all = peer.requests();
    let during: usize = all.iter().filter(|r| r.at < back_at).count();
    assert!(during >= 6, "it kept trying through the outage ({during} requests)");
    assert!(all.iter().all(|r| r.signature_ok), "every request was signed right");
    let sms = peer.accepted("/aliyun");
    for (phone, got) in per_recipient(&sms) {
        assert_eq!(got.len(), 1, "{phone} got one SMS, not {}", got.len());
        let params: Value = serde_json::from_str(&got[0].text).unwrap();
        assert_eq!(params["site"], SITE);
        assert_eq!(params["level"], "Ⅲ级黄色");
        assert_eq!(params["street"], "城东街道");
        assert!(got[0].key.as_deref().is_some_and(|k| !k.is_empty()), "OutId carries the idempotency key");
    }
    for robot in ["/wecom", "/dingtalk"] {
        let got = peer.accepted(robot);
        assert_eq!(got.len(), 1, "{robot}: one message");
        assert!(got[0].text.contains(SITE) && got[0].text.contains("Ⅲ级黄色"), "{}", got[0].text);
        assert!(got[0].text.len() <= 4096);
    }
    println!(
        "outage 30 s: {during} refused attempts, all {} messages delivered {:?} after it ended, none twice",
        sms.len() + 2,
        done.saturating_duration_since(back_at)
    );
    let (code, body) = http_get(&fg.url("/metrics")).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("floodguard_notifications_sent_total{channel=\"sms\",result=\"sent\"} 4"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tencent_sms_is_signed_and_fills_the_template_in_order() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let channels = format!(
        "[channels.sms]\nprovider = \"tencent\"\nurl = \"{}\"\nkey_id = \"AKIDtest\"\nkey_secret = \"{TENCENT_SECRET}\"\n\
         sign_name = \"某区防汛\"\ntemplate = \"1110\"\napp_id = \"1400006666\"\nregion = \"ap-guangzhou\"\n\
         template_params = [\"street\", \"site\", \"level\"]\n",
        peer.url("/tencent")
    );
    let fg = Floodguard::start(options(&broker, channels, teams(QUICK, "")));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-tencent");
    depth(&p, "CD-JS-01", 21.0).await;
    let got = wait_for("four SMS", Duration::from_secs(20), || async {
        let a = peer.accepted("/tencent");
        (a.len() >= 4).then_some(a)
    })
    .await;
    assert!(got.iter().all(|r| r.signature_ok), "TC3 signatures check out");
    let phones: BTreeSet<String> = got.iter().map(|r| r.to.clone()).collect();
    assert_eq!(phones, set(["+8613800000101", "+8613800000102", "+8613800000901", "+8613800000902"]));
    let params: Value = serde_json::from_str(&got[0].text).unwrap();
    assert_eq!(params, serde_json::json!(["城东街道", SITE, "Ⅲ级黄色"]));
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["SmsSdkAppId"], "1400006666");
    assert_eq!(got[0].headers.get("x-tc-action").map(String::as_str), Some("SendSms"));
    drop(fg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_robot_and_a_paced_phone_get_merged_messages() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    // The robot says 45009 (too fast) three times; SMS at most every 5 s.
    peer.behave(|b| b.wecom_limited = 3);
    let channels = format!(
        "{}[channels.robots]\nper_minute = 20\nthrottled_for = \"3s\"\n{FAST_RETRY}",
        http_sms(&peer, "min_interval = \"5s\"\n")
    );
    let wecom_only =
        format!("[[teams.robots]]\nkind = \"wecom\"\nurl = \"{}\"\n", peer.url("/wecom?key=abc"));
    let fg = Floodguard::start(options(&broker, channels, teams(QUICK, &wecom_only)));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-merge");
    let sites = [("CD-JS-01", SITE), ("CD-JS-02", "解放路菜市场低洼段"), ("CD-JS-03", "")];
    for (site, _) in sites {
        depth(&p, site, 21.0).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let names: Vec<String> = {
        let (_, body) = http_get(&fg.url("/api/v1/sites")).await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        sites
            .iter()
            .map(|(id, _)| {
                v["sites"].as_array().unwrap().iter().find(|s| s["id"] == *id).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let got = wait_for("the robot's merged message", Duration::from_secs(40), || async {
        let a = peer.accepted("/wecom");
        a.iter().any(|r| names.iter().all(|n| r.text.contains(n.as_str()))).then_some(a)
    })
    .await;
    let refused = peer.requests().iter().filter(|r| r.path == "/wecom" && !r.accepted).count();
    assert_eq!(refused, 3, "three 45009 answers");
    assert_eq!(
        got.len(),
        1,
        "after backing off, one message carries all three: {:#?}",
        got.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert!(got[0].text.contains("合并"), "{}", got[0].text);

    tokio::time::sleep(Duration::from_secs(6)).await;
    let sms = peer.accepted("/sms");
    let leader: Vec<_> = sms.iter().filter(|r| r.to == "13800000101").collect();
    assert!(leader.len() < 3, "paced: fewer SMS than notifications ({})", leader.len());
    for n in &names {
        assert!(leader.iter().any(|r| r.text.contains(n.as_str())), "{n} reached 张队长: {leader:#?}");
    }
    assert!(leader.iter().all(|r| r.text.chars().count() <= 300));
    drop(fg);
}

/// team1 with `n` members, the other sample teams without members' phones
/// (robots keep them valid): one crossing is a burst of `n` SMS.
fn big_team(n: usize) -> String {
    let mut t = String::from(
        "[alerting]\ngroup_window = \"1s\"\ngroup_wait = { IV = \"0s\", III = \"0s\", II = \"0s\", I = \"0s\" }\n\n\
         [[teams]]\nid = \"team1\"\nname = \"一队\"\nstreets = [\"chengdong\"]\nmin_level = \"IV\"\n\n",
    );
    for k in 0..n {
        t += &format!(
            "[[teams.members]]\nname = \"队员{k:02}\"\nrole = \"member\"\nphone = \"1390000{k:04}\"\n\n"
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_burst_of_sends_neither_repeats_nor_loses_a_message() {
    const N: usize = 40;
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    peer.behave(|b| b.delay = Duration::from_millis(150));
    let mut fg = Floodguard::start(options(&broker, http_sms(&peer, "min_interval = \"0s\"\n"), big_team(N)));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-kill");
    depth(&p, "CD-JS-01", 21.0).await;
    wait_for("a third of the burst", Duration::from_secs(20), || async {
        (peer.accepted("/sms").len() >= N / 3).then_some(())
    })
    .await;
    fg.kill9();
    let at_kill = peer.accepted("/sms").len();
    fg.start_again();
    fg.wait_connected().await;
    wait_for("every member's SMS", Duration::from_secs(60), || async {
        let phones: BTreeSet<String> = peer.accepted("/sms").iter().map(|r| r.to.clone()).collect();
        (phones.len() == N).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sms = peer.accepted("/sms");
    let mut repeats = 0;
    for (phone, got) in per_recipient(&sms) {
        let keys: BTreeSet<_> = got.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
        assert_eq!(keys.len(), 1, "{phone}: one message, not {keys:?}");
        repeats += got.len() - 1;
    }
    // At most the request in flight at the kill comes again, with its key,
    // which the provider drops as a repeat.
    assert!(repeats <= 1, "{repeats} repeated requests");
    println!("SIGKILL after {at_kill} of {N} SMS; after restart all {N} delivered, {repeats} repeated request (same key)");
}

/// The sample sites plus `n` more waterlogging points in 城东.
pub(crate) fn many_sites(n: usize) -> String {
    let mut t = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    for k in 0..n {
        t += &format!(
            "\n[[sites]]\nid = \"CD-ST-{k:02}\"\nname = \"积水点{k:02}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"chengdong\"\nlocation = {{ lat = {:.4}, lon = 114.3400 }}\n",
            30.5900 + k as f64 * 0.0002
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_50_crossings_is_one_summary_per_recipient_per_channel() {
    let broker = Mosquitto::start();
    let smtp = Smtp::start();
    let peer = Peer::start().await;
    let channels = format!("{}{}", email_channel(&smtp), http_sms(&peer, ""));
    let window = r#"
[alerting]
group_window = "10s"
group_wait = { IV = "10s", III = "10s", II = "10s", I = "10s" }
"#;
    let wecom_only =
        format!("[[teams.robots]]\nkind = \"wecom\"\nurl = \"{}\"\n", peer.url("/wecom?key=abc"));
    let mut o = options(&broker, channels, teams(window, &wecom_only));
    o.sites_toml = Some(many_sites(50));
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-storm");
    let start = Instant::now();
    for k in 0..50 {
        let topic = format!("flood/CD-ST-{k:02}/telemetry");
        p.send(&topic, br#"{"water_depth_cm":21}"#.to_vec()).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for k in 0..50 {
        let topic = format!("flood/CD-ST-{k:02}/telemetry");
        p.send(&topic, br#"{"water_depth_cm":21.5}"#.to_vec()).await;
    }
    assert!(start.elapsed() < Duration::from_secs(8), "the storm fits in the window");
    // 50 points at Ⅲ (and the street at Ⅱ: ≥ 3 points at Ⅲ): team1 and the
    // district HQ down to their Ⅱ members.
    let phones =
        set(["13800000101", "13800000102", "13800000103", "13800000901", "13800000902", "13800000903"]);
    let emails = set([
        "chengdong-director@example.gov.cn",
        "duty@example.gov.cn",
        "flood-office@example.gov.cn",
        "hq-deputy@example.gov.cn",
        "team1-leader@example.gov.cn",
    ]);
    wait_for("the summaries", Duration::from_secs(40), || async {
        let sms: BTreeSet<String> = peer.accepted("/sms").iter().map(|r| r.to.clone()).collect();
        let mails: BTreeSet<String> = smtp.mails().iter().map(|m| address(&m.to)).collect();
        (sms == phones && mails == emails && !peer.accepted("/wecom").is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let sms = peer.accepted("/sms");
    for (phone, got) in per_recipient(&sms) {
        assert_eq!(
            got.len(),
            1,
            "{phone}: one SMS, got {:#?}",
            got.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
        assert!(got[0].text.contains("50 处"), "a summary: {}", got[0].text);
        assert!(got[0].text.chars().count() <= 300, "{}", got[0].text);
    }
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        emails.len(),
        "one mail each: {:?}",
        mails.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    let leader = mails.iter().find(|m| m.to.contains("team1-leader")).unwrap();
    for k in [0, 17, 49] {
        assert!(
            leader.text.contains(&format!("积水点{k:02}")),
            "the mail lists every point:\n{}",
            leader.text
        );
    }
    let robot = peer.accepted("/wecom");
    assert_eq!(robot.len(), 1, "one robot message");
    assert!(robot[0].text.len() <= 4096);
    println!(
        "50 crossings → {} SMS, {} mails, 1 robot message; SMS: {}",
        sms.len(),
        mails.len(),
        sms[0].text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_link_acks_once_and_a_reused_expired_or_forged_one_is_refused() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let channels = format!(
        "{}[channels.ack]\nbase_url = \"https://flood.example.gov.cn\"\nsecret = \"ack-test-secret-0123456789abcdef0123456789\"\nttl = \"6s\"\n",
        http_sms(&peer, "")
    );
    let fg = Floodguard::start(options(&broker, channels, teams(QUICK, "")));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-notify-ack");
    depth(&p, "CD-JS-01", 21.0).await;
    let sms = wait_for("four SMS", Duration::from_secs(20), || async {
        let a = peer.accepted("/sms");
        (a.len() >= 4).then_some(a)
    })
    .await;
    let sent = Instant::now();
    let link = |phone: &str| {
        let text = &sms.iter().find(|r| r.to == phone).unwrap().text;
        let at = text.find("https://flood.example.gov.cn/ack/").unwrap_or_else(|| panic!("a link in {text}"));
        text[at + "https://flood.example.gov.cn".len()..].to_string()
    };
    let (leader, member, duty) = (link("13800000101"), link("13800000102"), link("13800000901"));
    assert_ne!(leader, member, "each recipient has a link of their own");
    let client = reqwest::Client::new();
    let get = |path: String| {
        let c = client.clone();
        let url = fg.url(&path);
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A POST with the page's one-time form token (and an Origin, as browsers send).
    let post_with = |path: String, note: &str, form: Option<String>, origin: &str| {
        let c = client.clone();
        let url = fg.url(&path);
        let mut fields = vec![("note", note.to_string())];
        if let Some(f) = form {
            fields.push(("form", f));
        }
        let origin = origin.to_string();
        async move {
            let r = c.post(url).header("origin", origin).form(&fields).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let form_of = |page: &str| -> Option<String> {
        let at = page.find("name=\"form\" value=\"")? + "name=\"form\" value=\"".len();
        Some(page[at..at + page[at..].find('"')?].to_string())
    };
    let own = format!("http://127.0.0.1:{}", fg.http_port);
    let post = |path: String, note: &'static str| {
        let own = own.clone();
        async move {
            let (_, page) = get(path.clone()).await;
            post_with(path, note, form_of(&page), &own).await
        }
    };

    let (code, page) = get(leader.clone()).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(SITE) && page.contains("Ⅲ级 黄色") && page.contains("张队长"), "{page}");
    assert!(page.contains("确认收到（签收）") && page.contains("<form method=\"post\""), "{page}");
    // CSRF: no form token, another site's Origin, a token used up — refused,
    // and the link is not spent by them.
    let form = form_of(&page).expect("the form carries a one-time token");
    assert_eq!(post_with(leader.clone(), "x", None, &own).await.0, 403, "without the form token");
    assert_eq!(post_with(leader.clone(), "x", Some(form.clone()), "https://evil.example").await.0, 403);
    assert_eq!(post_with(leader.clone(), "x", Some(form), &own).await.0, 403, "burnt by the cross-site try");
    assert_ne!(alert_of(&fg, "CD-JS-01").await["state"], "acked", "nothing acked by those");
    let (code, page) = post(leader.clone(), "已出发").await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("已确认"), "{page}");
    let a = alert_of(&fg, "CD-JS-01").await;
    assert_eq!(a["state"], "acked");
    assert_eq!(a["acked_by"], "张队长");
    let ev = a["timeline"].as_array().unwrap().iter().find(|e| e["event"] == "acked").cloned().unwrap();
    assert_eq!((ev["by"].as_str(), ev["note"].as_str()), (Some("张队长"), Some("已出发")));

    assert_eq!(post(leader.clone(), "").await.0, 409, "the same link twice");
    assert_eq!(get(leader.clone()).await.0, 409, "a used link shows nothing to confirm");
    let (code, page) = post(member, "").await;
    assert_eq!(code, 409, "another member's link finds it acked already: {page}");
    assert!(page.contains("张队长"), "{page}");

    let mut forged = duty.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(get(forged).await.0, 404, "a forged token");
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(sent.elapsed())).await;
    let (code, page) = get(duty).await;
    assert_eq!(code, 410, "an expired token: {page}");
    assert!(page.contains("链接已过期"), "{page}");
}
