//! The storm: many sites crossing levels at once while a burst of readings
//! arrives, through real Mosquitto → floodguard → InfluxDB 1.6.7, with the
//! sample teams told by an HTTP SMS peer and a real SMTP server — and the
//! faults of that hour: providers refusing, a stage wedged, `state.db`
//! locked by another process, the daemon killed. Each checks what a user
//! would: every reading stored once, the level changes a replay of the same
//! readings gives, no change told twice, and a daemon that stops on SIGTERM.

use std::time::{Duration, Instant};

use crate::support::burst::{self, Paths};
use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::Peer;
use crate::support::rawpub::RawPublisher;
use crate::support::smtp::Smtp;
use crate::support::{free_port, http_get, tempdir, wait_for};

const N: u64 = 200_000;
const TOKEN: &str = "stages-test-token-0123456789abcdef";

/// Readings that end a minute ago, one a minute per site.
fn base_ms(n: u64) -> i64 {
    chrono::Utc::now().timestamp_millis() - (burst::per_site(n) as i64 + 1) * 60_000
}

fn channels(sms_url: &str, smtp_url: &str) -> String {
    format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{sms_url}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\", request_id = \"{{id}}\" }}\n\
         [channels.email]\nsmtp_url = \"{smtp_url}\"\nfrom = \"某区防汛指挥部 <flood@example.gov.cn>\"\n\
         [channels.retry]\nmin = \"500ms\"\nmax = \"3s\"\ngive_up_after = \"1h\"\n"
    )
}

fn options(broker: &Mosquitto, influx: &Influx, channels: String) -> Options {
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.sites_toml = Some(burst::sites_toml());
    o.channels = channels;
    o.http_extra = format!("api_token = \"{TOKEN}\"\n");
    o
}

/// Publishes the burst from a thread as fast as the broker takes it.
async fn publish(port: u16, id: &str, n: u64, base: i64) -> f64 {
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::connect(port, &id);
        let sent = p.publish_all(burst::messages(n, base), 10_000, Duration::from_secs(180));
        p.disconnect();
        assert_eq!(sent.acked, n, "the broker acked every message");
        sent.rate()
    })
    .await
    .unwrap()
}

/// (count(seq), count(distinct(seq)), sum(water_depth_cm)) of the generated sites.
async fn stored(influx: &Influx) -> (i64, i64, f64) {
    let v = influx
        .query(
            "flood",
            "SELECT count(seq), count(distinct(seq)), sum(water_depth_cm) FROM telemetry WHERE site =~ /^S-/",
        )
        .await;
    let row = &v["results"][0]["series"][0]["values"][0];
    (row[1].as_i64().unwrap_or(0), row[2].as_i64().unwrap_or(0), row[3].as_f64().unwrap_or(0.0))
}

async fn wait_stored(influx: &Influx, n: u64, within: Duration) -> Duration {
    let t0 = Instant::now();
    wait_for("every reading in InfluxDB", within, || async {
        (stored(influx).await.0 >= n as i64).then_some(())
    })
    .await;
    t0.elapsed()
}

/// Every alert with its timeline: tens of megabytes of JSON after a storm,
/// which a loaded machine may take more than `http_get`'s 5 s to write.
async fn alerts(fg: &Floodguard) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().ok()?;
    let resp = client.get(fg.url("/api/v1/alerts?state=all&limit=100000")).send().await.ok()?;
    (resp.status() == 200).then_some(())?;
    resp.json().await.ok()
}

/// Waits until the alert history shows `want` (as `burst::live` reads it),
/// or fails showing the first difference.
async fn wait_paths(fg: &Floodguard, want: &Paths, within: Duration, what: impl Fn(&Paths) -> bool) {
    let t0 = Instant::now();
    loop {
        let got = alerts(fg).await.map(|a| burst::live(&a)).unwrap_or_default();
        if what(&got) {
            return;
        }
        if t0.elapsed() > within {
            eprintln!("{}", stage_report(fg).await);
            let diff = want.iter().find(|(k, v)| got.get(*k) != Some(*v));
            let (fw, fg) = (burst::finals(want), burst::finals(&got));
            let finals_differ = fw.iter().filter(|(k, v)| fg.get(*k) != Some(*v)).count();
            panic!(
                "alert history differs from replay after {within:?}: {} of {} (site, rule) pairs, {} of {} changes, {finals_differ} final levels differ; first: {:?} → live {:?}",
                got.len(),
                want.len(),
                burst::changes(&got),
                burst::changes(want),
                diff,
                diff.and_then(|(k, _)| got.get(k))
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a failing storm test shows: each stage's metrics, `/readyz`, and the
/// daemon's warnings and errors.
async fn stage_report(fg: &Floodguard) -> String {
    let metrics = fg.metrics().await.unwrap_or_default();
    let stages: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("stage_")
                    || l.contains("spool")
                    || l.contains("outbox")
                    || l.contains("readings_total"))
        })
        .collect();
    let log = fg.log();
    // The whole log, for reading after a failure (CI keeps target/).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/stages");
    let _ = std::fs::create_dir_all(&dir);
    let file =
        dir.join(format!("{}.log", std::thread::current().name().unwrap_or("storm").replace("::", "-")));
    let _ = std::fs::write(&file, &log);
    let problems: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(40).collect();
    let info: Vec<&str> = log.lines().filter(|l| l.contains("INFO")).take(60).collect();
    format!(
        "== the daemon's log: {}\n== metrics\n{}\n== /readyz\n{:?}\n== warnings and errors\n{}\n== first info lines\n{}",
        file.display(),
        stages.join("\n"),
        fg.readyz().await,
        problems.join("\n"),
        info.join("\n")
    )
}

/// Polls `/readyz` in the background; the longest time it kept failing.
struct ReadyWatch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<(Duration, Vec<String>)>,
}

impl ReadyWatch {
    fn start(url: String) -> ReadyWatch {
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let (mut longest, mut since, mut problems) = (Duration::ZERO, None::<Instant>, Vec::new());
            while !s.is_cancelled() {
                match http_get(&url).await {
                    Some((200, _)) => since = None,
                    other => {
                        let t = *since.get_or_insert_with(Instant::now);
                        longest = longest.max(t.elapsed());
                        if let Some((_, body)) = other {
                            if problems.len() < 20 && !problems.contains(&body) {
                                problems.push(body);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (longest, problems)
        });
        ReadyWatch { stop, task }
    }

    async fn finish(self) -> (Duration, Vec<String>) {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

/// The burst through the whole pipeline with working providers: every
/// reading stored once, the alert history equal to a replay, /readyz
/// failing no longer than the backlog took to drain, SIGTERM in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_burst_is_stored_judged_and_told_and_the_daemon_still_stops() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let smtp = Smtp::start();
    let mut fg = Floodguard::start(options(&broker, &influx, channels(&peer.url("/sms"), &smtp.url())));
    fg.wait_connected().await;
    let dir = tempdir("storm-");
    let lp = dir.path().join("storm.lp");
    let base = base_ms(N);
    let sum = burst::write_line_protocol(&lp, N, base);
    let replayed = burst::replayed(&lp, &fg.config_path());
    assert!(burst::changes(&replayed) > 10_000, "a storm of level changes: {}", burst::changes(&replayed));

    let watch = ReadyWatch::start(fg.url("/readyz"));
    let t0 = Instant::now();
    let rate = publish(broker.port, "storm-pub", N, base).await;
    let published = t0.elapsed();
    wait_stored(&influx, N, Duration::from_secs(180)).await;
    let drained = t0.elapsed();
    wait_paths(&fg, &replayed, Duration::from_secs(120), |got| got == &replayed).await;
    let (not_ready, problems) = watch.finish().await;
    if std::env::var_os("STAGES_DEBUG").is_some() {
        println!("{}", stage_report(&fg).await);
    }
    println!(
        "storm: {N} readings published in {published:.1?} ({rate:.0} msgs/s), all stored after {drained:.1?}; \
         {} level changes as replayed; /readyz failed for at most {not_ready:.1?} {problems:?}",
        burst::changes(&replayed)
    );

    let (count, distinct, got_sum) = stored(&influx).await;
    assert_eq!((count, distinct), (N as i64, N as i64), "every reading once");
    assert!((got_sum - sum).abs() < 1e-6 * sum, "sum {got_sum} vs published {sum}");
    let all = alerts(&fg).await.unwrap();
    assert_eq!(burst::told_twice(&all), None);
    assert!(
        not_ready <= drained,
        "/readyz failed for {not_ready:?}, longer than the {drained:?} the backlog took"
    );
    // The teams were told (and the providers saw it).
    wait_for("SMS and e-mail out", Duration::from_secs(60), || async {
        (!peer.accepted("/sms").is_empty() && !smtp.mails().is_empty()).then_some(())
    })
    .await;
    let stop = Instant::now();
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0), "SIGTERM ends it with 0; log:\n{}", fg.log());
    println!("stopped in {:.1?}", stop.elapsed());
}

/// The same burst with the SMS gateway and the SMTP server refusing
/// connections the whole time: SIGTERM right after the burst ends the
/// daemon in time; after a restart every reading is stored once, the alert
/// history is a replay's change for change (the engine resumes from its
/// snapshot), no change is told twice, and every message still waits to be
/// sent — none given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_refusing_through_a_storm_delay_messages_lose_nothing_and_sigterm_still_works() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let closed = free_port();
    let sms = format!("http://127.0.0.1:{closed}/sms");
    let smtp = format!("smtp://127.0.0.1:{closed}");
    let mut fg = Floodguard::start(options(&broker, &influx, channels(&sms, &smtp)));
    fg.wait_connected().await;
    let dir = tempdir("storm-refused-");
    let lp = dir.path().join("storm.lp");
    let base = base_ms(N);
    let sum = burst::write_line_protocol(&lp, N, base);
    let replayed = burst::replayed(&lp, &fg.config_path());

    publish(broker.port, "storm-pub-refused", N, base).await;
    let t = Instant::now();
    assert_eq!(
        fg.terminate(Duration::from_secs(10 + 5)),
        Some(0),
        "SIGTERM right after the burst; log:\n{}",
        fg.log()
    );
    println!("stopped {:.1?} after SIGTERM, right after the burst", t.elapsed());

    fg.start_again();
    fg.wait_connected().await;
    wait_stored(&influx, N, Duration::from_secs(180)).await;
    let (count, distinct, got_sum) = stored(&influx).await;
    assert_eq!((count, distinct), (N as i64, N as i64), "every reading once");
    assert!((got_sum - sum).abs() < 1e-6 * sum, "sum {got_sum} vs published {sum}");
    // The engine resumed from its snapshot: the history is the replay's,
    // change for change, as if it had never stopped.
    wait_paths(&fg, &replayed, Duration::from_secs(120), |got| got == &replayed).await;
    let all = alerts(&fg).await.unwrap();
    assert_eq!(burst::told_twice(&all), None);
    // Everything waits for the providers; nothing was given up.
    let client = reqwest::Client::new();
    let outbox: serde_json::Value = client
        .get(fg.url("/api/v1/outbox?limit=1000"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = outbox["messages"].as_array().unwrap();
    assert!(!messages.is_empty(), "messages were made");
    for m in messages {
        assert!(matches!(m["state"].as_str(), Some("queued" | "sending" | "merged")), "{m}");
    }
    let sent = fg.metric("floodguard_notifications_sent_total{channel=\"sms\",result=\"retry\"}").await;
    assert!(sent.unwrap_or(0.0) > 0.0, "SMS were tried and are retried");
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// The alert stage wedged on purpose (a test hook): /readyz names it within
/// 10 s, intake keeps storing every reading meanwhile; released, every
/// reading is judged and the history equals a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_alert_stage_fails_readiness_by_name_while_intake_stores_and_catches_up_after() {
    const M: u64 = 50_000;
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let wedges = tempdir("wedge-");
    let mut o = options(&broker, &influx, channels("http://127.0.0.1:9/sms", "smtp://127.0.0.1:9"));
    o.env.push(("FLOODGUARD_TEST_WEDGE_DIR".into(), wedges.path().display().to_string()));
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let dir = tempdir("storm-wedged-");
    let lp = dir.path().join("storm.lp");
    let base = base_ms(M);
    burst::write_line_protocol(&lp, M, base);
    let replayed = burst::replayed(&lp, &fg.config_path());
    assert!(burst::changes(&replayed) > 1_000);

    let wedge = wedges.path().join("alerts");
    std::fs::write(&wedge, "").unwrap();
    publish(broker.port, "storm-pub-wedged", M, base).await;
    let t = Instant::now();
    let body = wait_for("/readyz to name the wedged stage", Duration::from_secs(10), || async {
        let (code, body) = fg.readyz().await?;
        (code == 503 && body["stages"]["alerts"]["ok"] == false).then_some(body)
    })
    .await;
    println!("/readyz named the alert stage {:.1?} after the burst: {body}", t.elapsed());
    assert!(body["problems"].to_string().contains("stage alerts stalled"), "{body}");
    // Intake and storage go on.
    wait_stored(&influx, M, Duration::from_secs(60)).await;
    assert!(wedge.exists());
    assert_eq!(fg.readyz().await.unwrap().0, 503, "still wedged");

    std::fs::remove_file(&wedge).unwrap();
    wait_paths(&fg, &replayed, Duration::from_secs(120), |got| got == &replayed).await;
    wait_for("/readyz well again", Duration::from_secs(30), || async {
        (fg.readyz().await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(burst::told_twice(&alerts(&fg).await.unwrap()), None);
    assert_eq!(stored(&influx).await.1, M as i64);
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// `state.db` locked by another process for 20 s while a point rises to Ⅱ:
/// the alert is late, not lost, and each phone gets its SMS once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_db_locked_for_20_s_during_a_rise_to_ii_delays_the_alert_and_tells_it_once() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let mut o = Options::new(broker.url());
    o.channels = channels(&peer.url("/sms"), "smtp://127.0.0.1:9");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let db = fg.data_dir().join("state.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(20));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let locked_at = Instant::now();
    let p = crate::support::publish::Publisher::connect(&broker.url(), "pub-locked");
    for _ in 0..2 {
        p.send("flood/CD-JS-01/telemetry", br#"{"water_depth_cm":28.0}"#.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = wait_for("/readyz to name the alert stage and the lock", Duration::from_secs(15), || async {
        let (code, body) = fg.readyz().await?;
        (code == 503 && body["stages"]["alerts"]["ok"] == false && body.to_string().contains("locked"))
            .then_some(body)
    })
    .await;
    println!("/readyz during the lock: {body}");
    assert!(peer.requests().is_empty(), "nothing told while nothing is on record");
    holder.join().unwrap();
    println!("lock held {:.1?}", locked_at.elapsed());
    let sms = wait_for("the Ⅱ notice", Duration::from_secs(30), || async {
        let r = peer.accepted("/sms");
        (!r.is_empty()).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = alerts(&fg).await.unwrap();
    let site: Vec<_> = a["alerts"].as_array().unwrap().iter().filter(|a| a["site"] == "CD-JS-01").collect();
    assert_eq!(site.len(), 1, "one alert: {site:?}");
    assert_eq!(site[0]["level"], "II");
    let mut per_phone = std::collections::BTreeMap::new();
    for r in peer.accepted("/sms") {
        *per_phone.entry(r.to.clone()).or_insert(0) += 1;
    }
    println!("after the lock: {} SMS, per phone {per_phone:?}", sms.len());
    assert!(per_phone.values().all(|n| *n == 1), "each phone told once: {per_phone:?}");
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// SIGKILL in the middle of the storm: after the restart every reading is
/// stored once, the alert history is a replay's change for change (from the
/// last snapshot the engine judges again what is on record, quietly), and no
/// level change is on record twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_storm_loses_no_reading_and_records_no_change_twice() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let mut fg =
        Floodguard::start(options(&broker, &influx, channels(&peer.url("/sms"), "smtp://127.0.0.1:9")));
    fg.wait_connected().await;
    let dir = tempdir("storm-killed-");
    let lp = dir.path().join("storm.lp");
    let base = base_ms(N);
    let sum = burst::write_line_protocol(&lp, N, base);
    let replayed = burst::replayed(&lp, &fg.config_path());

    let port = broker.port;
    let publisher = tokio::spawn(publish(port, "storm-pub-killed", N, base));
    wait_for("half the burst taken", Duration::from_secs(120), || async {
        (fg.metric("floodguard_readings_total").await? >= N as f64).then_some(())
    })
    .await;
    fg.kill9();
    publisher.await.unwrap();
    fg.start_again();
    fg.wait_connected().await;
    wait_stored(&influx, N, Duration::from_secs(180)).await;
    let (count, distinct, got_sum) = stored(&influx).await;
    assert_eq!((count, distinct), (N as i64, N as i64), "every reading once");
    assert!((got_sum - sum).abs() < 1e-6 * sum, "sum {got_sum} vs published {sum}");
    // The engine resumed from its snapshot: the history is the replay's,
    // change for change, as if it had never stopped.
    wait_paths(&fg, &replayed, Duration::from_secs(120), |got| got == &replayed).await;
    assert_eq!(burst::told_twice(&alerts(&fg).await.unwrap()), None);
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// The storm pushed over HTTP as Telegraf would (`/write`, gzip, four
/// senders at once, each with its own sites in order) while the SMTP server
/// refuses: every 204 is a durable write — every reading stored once, the
/// alert history equal to a replay, SMS out — and SIGTERM right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_pushed_over_http_is_stored_and_judged_and_the_daemon_still_stops() {
    const M: u64 = 60_000;
    const SENDERS: u64 = 4;
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let refused = format!("smtp://127.0.0.1:{}", free_port());
    let mut o = options(&broker, &influx, channels(&peer.url("/sms"), &refused));
    o.http_extra.push_str(&format!("ingest_token = \"{}\"\n", crate::push::INGEST));
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let dir = tempdir("storm-push-");
    let lp = dir.path().join("storm.lp");
    let base = base_ms(M);
    let sum = burst::write_line_protocol(&lp, M, base);
    let replayed = burst::replayed(&lp, &fg.config_path());
    assert!(burst::changes(&replayed) > 5_000, "a storm of level changes: {}", burst::changes(&replayed));

    // Each sender takes the sites ≡ k (mod SENDERS), in the file's order, in
    // requests of 1,500 lines: a site's readings arrive in order.
    let text = std::fs::read_to_string(&lp).unwrap();
    let mut per_sender: Vec<Vec<&str>> = vec![Vec::new(); SENDERS as usize];
    for (i, line) in text.lines().enumerate() {
        per_sender[(i as u64 % burst::SITES % SENDERS) as usize].push(line);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for lines in per_sender {
        let bodies: Vec<Vec<u8>> =
            lines.chunks(1500).map(|c| crate::push::gzip((c.join("\n") + "\n").as_bytes())).collect();
        let url = fg.url("/write?db=flood&precision=ns");
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for body in bodies {
                let r = http
                    .post(&url)
                    .header("Authorization", format!("Token {}", crate::push::INGEST))
                    .header("Content-Encoding", "gzip")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pushed = t0.elapsed();
    wait_stored(&influx, M, Duration::from_secs(180)).await;
    wait_paths(&fg, &replayed, Duration::from_secs(120), |got| got == &replayed).await;
    println!(
        "push storm: {M} readings pushed in {pushed:.1?} ({:.0} readings/s acknowledged), {} level changes",
        M as f64 / pushed.as_secs_f64(),
        burst::changes(&replayed)
    );
    let (count, distinct, got_sum) = stored(&influx).await;
    assert_eq!((count, distinct), (M as i64, M as i64), "every reading once");
    assert!((got_sum - sum).abs() < 1e-6 * sum, "sum {got_sum} vs pushed {sum}");
    assert_eq!(burst::told_twice(&alerts(&fg).await.unwrap()), None);
    wait_for("SMS out while SMTP refuses", Duration::from_secs(60), || async {
        (!peer.accepted("/sms").is_empty()).then_some(())
    })
    .await;
    assert_eq!(fg.terminate(Duration::from_secs(10 + 5)), Some(0), "SIGTERM; log:\n{}", fg.log());
}
