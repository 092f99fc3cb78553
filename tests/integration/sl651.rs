//! The SL 651-2014 central station on a real daemon and InfluxDB 1.6.7,
//! driven by an RTU with its own encoder (`support::rtu`): timed, hourly
//! (5-minute blocks) and 加报 frames stored at their observation times, M2
//! confirmations byte-exact and only after the spool write, a rainstorm
//! over SL 651 raising the same level as the same rain over MQTT, a
//! retransmit confirmed again but judged once, bad frames counted by cause
//! while the link and the other stations go on.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone, Timelike};

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::Publisher;
use crate::support::rtu::{self, block, element, Link, Rtu};
use crate::support::{free_port, http_get, wait_for};

const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

fn start(broker: &Mosquitto, influx: &Influx) -> (Floodguard, u16) {
    let port = free_port();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.extra = format!("[sl651]\nlisten = \"127.0.0.1:{port}\"\ncenter = 1\nidle_timeout = \"1m\"\n");
    (Floodguard::start(o), port)
}

/// The sample sites' stations (config/sites.toml).
fn station(hex: &str, class: u8) -> Rtu {
    let mut a = [0u8; 5];
    for (i, b) in a.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    Rtu { centre: 1, station: a, password: 0x1234, class }
}

fn now_local() -> NaiveDateTime {
    chrono::Utc::now().with_timezone(&TZ).naive_local().with_second(0).unwrap().with_nanosecond(0).unwrap()
}

fn ns(t: NaiveDateTime) -> i64 {
    TZ.from_local_datetime(&t).unwrap().timestamp_nanos_opt().unwrap()
}

/// Sends a frame and checks the confirmation byte for byte: the centre's
/// send time is its clock, within a minute of ours.
fn confirmed(link: &mut Link, rtu: &Rtu, function: u8, serial: u16, frame: &[u8]) {
    link.send(frame);
    let reply = link.reply(Duration::from_secs(10)).expect("a confirmation");
    let sent = rtu::reply_time(&reply);
    let skew = (sent - chrono::Utc::now().with_timezone(&TZ).naive_local()).num_seconds().abs();
    assert!(skew < 60, "the reply's send time {sent} is the centre's clock");
    assert_eq!(reply, rtu.expected_confirmation(function, serial, sent), "M2 confirmation of {function:02X}");
}

async fn series(influx: &Influx, site: &str, field: &str) -> Vec<(String, f64)> {
    let v = influx
        .query("flood", &format!("SELECT {field} FROM telemetry WHERE site = '{site}' ORDER BY time"))
        .await;
    v["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap())).collect()
        })
        .unwrap_or_default()
}

async fn level(fg: &Floodguard, site: &str) -> Option<String> {
    let (_, body) = http_get(&fg.url(&format!("/api/v1/sites/{site}"))).await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["level"].as_str().map(str::to_string)
}

fn rfc3339(t: NaiveDateTime) -> String {
    TZ.from_local_datetime(&t).unwrap().with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_reports_are_stored_confirmed_and_judged_like_mqtt() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let (mut fg, port) = start(&broker, &influx);
    fg.wait_connected().await;
    let now = now_local();

    // A timed report (32) from XC-SW-01's river station: Z and VT.
    let river2 = station("0020000002", b'H');
    let mut link = Link::connect(port).unwrap_or_else(|e| panic!("{e}; log:\n{}", fg.log()));
    let t = now - chrono::Duration::minutes(10);
    let body = river2.body(1, now, &[(t, [element(0x39, 4, 3, 3.456), element(0x38, 2, 2, 12.45)].concat())]);
    confirmed(&mut link, &river2, 0x32, 1, &river2.frame(0x32, &body));
    // 204-like: confirmed means spooled; InfluxDB has it shortly after.
    wait_for("XC-SW-01's level from SL 651", Duration::from_secs(20), || async {
        (series(&influx, "XC-SW-01", "level_m").await == vec![(rfc3339(t), 3.456)]).then_some(())
    })
    .await;

    // The page and the API say where the site's readings came from.
    let (_, body) = http_get(&fg.url("/api/v1/sites/XC-SW-01")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["source"]["protocol"], "sl651", "{v}");
    assert!(v["source"]["from"].as_str().unwrap().starts_with("station 0020000002 from 127.0.0.1:"), "{v}");

    // An hourly report (34) from BH-SW-01: a DRZ1 block of 12 levels, the
    // first at the group's observation time, 5 minutes apart.
    let river = station("0020000001", b'H');
    let t0 = now - chrono::Duration::minutes(70 + i64::from(now.minute() % 5));
    let levels: Vec<f64> = (0..12).map(|i| 4.0 + f64::from(i) / 100.0).collect();
    let body = river.body(7, now, &[(t0, [block(0xF5, &levels), element(0x38, 2, 2, 12.61)].concat())]);
    confirmed(&mut link, &river, 0x34, 7, &river.frame(0x34, &body));
    let want: Vec<(String, f64)> =
        (0..12).map(|i| (rfc3339(t0 + chrono::Duration::minutes(5 * i)), levels[i as usize])).collect();
    wait_for("BH-SW-01's 5-minute levels", Duration::from_secs(20), || async {
        (series(&influx, "BH-SW-01", "level_m").await == want).then_some(())
    })
    .await;

    // A rainstorm: 加报 (33) frames from CD-YL-01's gauge, 20 mm each ten
    // minutes; the same rain over MQTT at BH-YL-01.
    let gauge = station("0010000001", b'P');
    let mqtt = Publisher::connect(&broker.url(), "sl651-test-mqtt");
    let mut frames = Vec::new();
    for k in 0..4u16 {
        let at = now - chrono::Duration::minutes(40 - 10 * i64::from(k));
        let total = 20.0 * f64::from(k + 1);
        let body = gauge.body(
            100 + k,
            now,
            &[(at, [element(0x20, 3, 1, 20.0), element(0x26, 3, 1, total)].concat())],
        );
        let frame = gauge.frame(0x33, &body);
        confirmed(&mut link, &gauge, 0x33, 100 + k, &frame);
        frames.push(frame);
        let payload = format!(r#"{{"ts":{},"rain_mm":20,"rain_total_mm":{total}}}"#, ns(at) / 1_000_000);
        mqtt.send("flood/BH-YL-01/telemetry", payload.into_bytes()).await;
    }
    wait_for("80 mm in 40 min: Ⅱ, over SL 651 as over MQTT", Duration::from_secs(20), || async {
        let (a, b) = (level(&fg, "CD-YL-01").await, level(&fg, "BH-YL-01").await);
        (a.as_deref() == Some("II") && b == a).then_some(())
    })
    .await;

    // The last frame again, twice (its confirmation lost): confirmed again,
    // judged once (120 mm would be Ⅰ).
    for _ in 0..2 {
        confirmed(&mut link, &gauge, 0x33, 103, &frames[3]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(level(&fg, "CD-YL-01").await.as_deref(), Some("II"), "a retransmit is not judged twice");
    assert_eq!(series(&influx, "CD-YL-01", "rain_mm").await.len(), 4, "nor stored twice");

    // Bad input on the same link: no confirmation, counted by cause, and
    // the link goes on.
    let mut bad_crc = gauge.frame(0x32, &gauge.body(200, now, &[(now, element(0x20, 3, 1, 1.0))]));
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0x55;
    link.send(&bad_crc);
    assert_eq!(link.reply(Duration::from_millis(700)), None, "no confirmation of a bad CRC");
    let stranger = station("0099999999", b'P');
    link.send(&stranger.frame(0x32, &stranger.body(1, now, &[(now, element(0x20, 3, 1, 1.0))])));
    assert_eq!(link.reply(Duration::from_millis(700)), None, "no confirmation for an unknown station");
    let other_centre = Rtu { centre: 9, ..station("0010000001", b'P') };
    link.send(&other_centre.frame(0x32, &other_centre.body(2, now, &[(now, element(0x20, 3, 1, 1.0))])));
    assert_eq!(link.reply(Duration::from_millis(700)), None, "no confirmation for another centre's frame");
    link.send(b"\x00\xffnoise before a frame");
    let keep_alive = gauge.frame(0x2F, &[0x00, 0x09, 0x26, 0x07, 0x21, 0x14, 0x05, 0x00]);
    link.send(&keep_alive);
    assert_eq!(link.reply(Duration::from_millis(700)), None, "a keep-alive needs no reply");
    let t = now - chrono::Duration::minutes(1);
    let body = river2.body(2, now, &[(t, element(0x39, 4, 3, 3.5))]);
    confirmed(&mut link, &river2, 0x32, 2, &river2.frame(0x32, &body));

    let m = fg.metrics().await.unwrap();
    for want in [
        "floodguard_sl651_frames_total{function=\"33\"} 6",
        "floodguard_sl651_frames_total{function=\"2F\"} 1",
        "floodguard_sl651_confirmations_total 9",
        "floodguard_sl651_errors_total{cause=\"bad_crc\"} 1",
        "floodguard_sl651_errors_total{cause=\"unknown_station\"} 1",
        "floodguard_sl651_errors_total{cause=\"wrong_centre\"} 1",
        "floodguard_sl651_errors_total{cause=\"garbage\"} 1",
    ] {
        assert!(
            m.contains(want),
            "{want} in\n{}",
            m.lines().filter(|l| l.contains("sl651")).collect::<Vec<_>>().join("\n")
        );
    }
    drop(link);
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// 50 river stations of their own, for the load test.
fn many_sites(n: usize) -> String {
    let mut s =
        std::fs::read_to_string(crate::support::floodguard::sample_config_dir().join("sites.toml")).unwrap();
    for i in 0..n {
        s.push_str(&format!(
            "\n[[sites]]\nid = \"S-R{i:03}\"\nname = \"测站{i}\"\nkind = \"river\"\ncategory = \"river\"\n\
             street = \"binhe\"\nlocation = {{ lat = 30.57, lon = 114.31 }}\n\
             params = {{ warning_level_m = 4.50, guarantee_level_m = 5.20 }}\nsl651_station = \"003000{i:04}\"\n"
        ));
    }
    s
}

/// A triangle wave across the river thresholds (4.2 / 4.5 / 5.0 / 5.2 m).
fn stage_m(k: usize) -> f64 {
    let t = k % 28;
    4.0 + 0.1 * (if t <= 14 { t } else { 28 - t }) as f64
}

/// 500 RTU links idling on keep-alives while 50 stations send 30 timed
/// reports each, levels crossing Ⅳ … Ⅰ and back: every reading stored,
/// the alert history equal to a replay of the same readings, and SIGTERM
/// with every link open ends the daemon in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_links_and_fifty_reporting_stations_lose_nothing() {
    const SENDERS: usize = 50;
    const FRAMES: usize = 30;
    const IDLE: usize = 500;
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let port = free_port();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.sites_toml = Some(many_sites(SENDERS));
    o.extra = format!("[sl651]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout = \"5m\"\n");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let rss = |pid: u32| -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: f64 = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        kb / 1024.0
    };
    let pid = fg.pid().unwrap();
    let before = rss(pid);

    let keep_alive = |i: usize| {
        let rtu = station(&format!("004000{i:04}"), b'P');
        rtu.frame(0x2F, &[(i >> 8) as u8, i as u8, 0x26, 0x07, 0x21, 0x14, 0x05, 0x00])
    };
    let idle: Vec<Link> = tokio::task::spawn_blocking(move || {
        (0..IDLE)
            .map(|i| {
                let mut l = Link::connect(port).unwrap();
                l.send(&keep_alive(i));
                l
            })
            .collect()
    })
    .await
    .unwrap();
    wait_for("500 links open", Duration::from_secs(20), || async {
        (fg.metric("floodguard_sl651_connections").await? >= IDLE as f64).then_some(())
    })
    .await;
    let with_links = rss(pid);

    // The readings, also as line protocol for the replay.
    let now = now_local();
    let base = now - chrono::Duration::minutes(FRAMES as i64 + 5);
    let mut lp = String::new();
    for k in 0..FRAMES {
        for i in 0..SENDERS {
            let t = ns(base + chrono::Duration::minutes(k as i64));
            lp.push_str(&format!("telemetry,site=S-R{i:03} level_m={},battery_v=12.5 {t}\n", stage_m(k)));
        }
    }
    let dir = crate::support::tempdir("sl651-load-");
    let lp_path = dir.path().join("load.lp");
    std::fs::write(&lp_path, lp).unwrap();
    let replayed = crate::support::burst::replayed(&lp_path, &fg.config_path());
    assert!(crate::support::burst::changes(&replayed) >= 200, "a storm of level changes: {replayed:?}");

    let t0 = std::time::Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            tokio::task::spawn_blocking(move || {
                let rtu = station(&format!("003000{i:04}"), b'H');
                let mut link = Link::connect(port).unwrap();
                for k in 0..FRAMES {
                    let at = base + chrono::Duration::minutes(k as i64);
                    let body = rtu.body(
                        k as u16,
                        now,
                        &[(at, [element(0x39, 4, 3, stage_m(k)), element(0x38, 2, 2, 12.5)].concat())],
                    );
                    confirmed(&mut link, &rtu, 0x32, k as u16, &rtu.frame(0x32, &body));
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let took = t0.elapsed();
    wait_for("every reported level in InfluxDB", Duration::from_secs(60), || async {
        let n = influx.count("flood", "SELECT count(level_m) FROM telemetry WHERE site =~ /^S-R/").await;
        (n == (SENDERS * FRAMES) as i64).then_some(())
    })
    .await;
    let alerts = || async {
        let (_, body) = http_get(&fg.url("/api/v1/alerts?state=all&limit=100000")).await?;
        serde_json::from_str::<serde_json::Value>(&body).ok()
    };
    wait_for("the alert history equal to the replay", Duration::from_secs(60), || async {
        let live = crate::support::burst::live(&alerts().await?);
        let live: crate::support::burst::Paths =
            live.into_iter().filter(|((s, _), _)| s.starts_with("S-R")).collect();
        (live == replayed).then_some(())
    })
    .await;
    println!(
        "sl651 load: {SENDERS} stations × {FRAMES} frames confirmed in {took:.1?} ({:.0} frames/s) beside {IDLE} idle links; \
         RSS {before:.1} MB → {with_links:.1} MB with the links ({:.1} KB a link)",
        (SENDERS * FRAMES) as f64 / took.as_secs_f64(),
        (with_links - before) * 1024.0 / IDLE as f64
    );
    let t = std::time::Instant::now();
    assert_eq!(
        fg.terminate(Duration::from_secs(15)),
        Some(0),
        "SIGTERM with 550 links open; log:\n{}",
        fg.log()
    );
    println!("stopped in {:.1?}", t.elapsed());
    drop(idle);
}

/// Killed after a frame's readings were spooled and before its
/// confirmation went out: the RTU sends it again after the restart, gets
/// its confirmation, and the reading is stored and judged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_spool_and_confirmation_stores_and_judges_the_resend_once() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let wedges = crate::support::tempdir("sl651-wedge-");
    let port = free_port();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.extra = format!("[sl651]\nlisten = \"127.0.0.1:{port}\"\n");
    o.env.push(("FLOODGUARD_TEST_WEDGE_DIR".into(), wedges.path().display().to_string()));
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let gauge = station("0010000001", b'P');
    let now = now_local();
    // 60 mm in ten minutes: Ⅱ (judged twice it would be 120 mm: Ⅰ).
    let at = now - chrono::Duration::minutes(5);
    let frame = gauge.frame(
        0x33,
        &gauge.body(42, now, &[(at, [element(0x20, 3, 1, 60.0), element(0x26, 3, 1, 560.0)].concat())]),
    );
    std::fs::write(wedges.path().join("sl651"), "").unwrap();
    let mut link = Link::connect(port).unwrap();
    link.send(&frame);
    wait_for("the frame's rain in InfluxDB (spooled)", Duration::from_secs(20), || async {
        (series(&influx, "CD-YL-01", "rain_mm").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(link.reply(Duration::from_millis(500)), None, "not confirmed yet");
    fg.kill9();
    std::fs::remove_file(wedges.path().join("sl651")).unwrap();
    fg.start_again();
    fg.wait_connected().await;
    let mut link = Link::connect(port).unwrap();
    confirmed(&mut link, &gauge, 0x33, 42, &frame);
    wait_for("CD-YL-01 at Ⅱ", Duration::from_secs(20), || async {
        (level(&fg, "CD-YL-01").await.as_deref() == Some("II")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(level(&fg, "CD-YL-01").await.as_deref(), Some("II"), "judged once");
    assert_eq!(series(&influx, "CD-YL-01", "rain_mm").await, vec![(rfc3339(at), 60.0)], "stored once");
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// `floodguard simulate --sl651`: the sample's rain and river stations as
/// RTUs beside the MQTT sites; every frame confirmed, and the rain the
/// scenario made for a gauge is the rain stored for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_drives_the_central_station_with_the_storm() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let (mut fg, port) = start(&broker, &influx);
    fg.wait_connected().await;
    let dir = crate::support::tempdir("sl651-sim-");
    let lp = dir.path().join("storm.lp");
    let t0 = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let (config, lp, url) = (fg.config_path(), lp.clone(), broker.url());
        move || {
            std::process::Command::new(crate::support::floodguard::BIN)
                .args([
                    "simulate",
                    "--scenario",
                    "rainstorm",
                    "--skip",
                    "60m",
                    "--duration",
                    "80m",
                    "--speed",
                    "240",
                ])
                .args(["--broker", &url, "--sl651", &format!("127.0.0.1:{port}"), "--output"])
                .arg(&lp)
                .arg("-c")
                .arg(&config)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    println!("simulate took {:.1?}: {err}", t0.elapsed());
    let line = err.lines().find(|l| l.contains("SL 651 frames")).unwrap_or_else(|| panic!("{err}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let (sent, confirmed): (u64, u64) = (words[1].parse().unwrap(), words[5].parse().unwrap());
    assert!(sent > 0 && sent == confirmed, "every frame confirmed: {err}");
    // The scenario's rain at CD-YL-01 (an SL 651 gauge) and at the MQTT sites.
    let text = std::fs::read_to_string(&lp).unwrap();
    let rain_of = |site: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("telemetry,site={site} ")))
            .filter_map(|l| {
                l.split(' ').nth(1)?.split(',').find_map(|f| f.strip_prefix("rain_mm="))?.parse::<f64>().ok()
            })
            .sum()
    };
    let want = rain_of("CD-YL-01");
    assert!(want > 0.0, "the storm rains on CD-YL-01");
    wait_for("CD-YL-01's rain stored as the scenario made it", Duration::from_secs(30), || async {
        let v = influx.query("flood", "SELECT sum(rain_mm) FROM telemetry WHERE site = 'CD-YL-01'").await;
        let got = v["results"][0]["series"][0]["values"][0][1].as_f64().unwrap_or(0.0);
        ((got - want).abs() < 0.05).then_some(())
    })
    .await;
    let m = fg.metrics().await.unwrap();
    assert!(m.contains("floodguard_sl651_frames_total{function=\"33\"}"), "加报 frames came");
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// RTUs on UDP: a datagram's frame stored and confirmed to its sender,
/// byte for byte (ended by ESC, `keep_link`); a bad one in the same
/// datagram counted, the good kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_reports_are_confirmed_to_their_sender() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let udp_port = free_port();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.extra = format!("[sl651]\nudp_listen = \"127.0.0.1:{udp_port}\"\nkeep_link = true\n");
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let river = station("0020000002", b'H');
    let now = now_local();
    let t = now - chrono::Duration::minutes(3);
    let good = river.frame(0x32, &river.body(5, now, &[(t, element(0x39, 4, 3, 3.21))]));
    let mut bad = river.frame(0x32, &river.body(6, now, &[(t, element(0x39, 4, 3, 9.99))]));
    bad[20] ^= 0x01;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket.send_to(&[bad, good].concat(), ("127.0.0.1", udp_port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf).expect("a confirmation datagram");
    let reply = buf[..n].to_vec();
    assert_eq!(reply, river.expected_reply(0x32, 5, rtu::reply_time(&reply), 0x1B), "ESC: keep the link");
    wait_for("the UDP report in InfluxDB", Duration::from_secs(20), || async {
        (series(&influx, "XC-SW-01", "level_m").await == vec![(rfc3339(t), 3.21)]).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_sl651_errors_total{cause=\"bad_crc\"}").await, Some(1.0));
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}

/// An M3 transfer of an hourly report in three packets, the second lost on
/// the way: the centre asks for it (NAK, packet 2), and once it comes
/// confirms the whole report, whose 5-minute levels are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_m3_transfer_is_reassembled_after_asking_for_its_missing_packet() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let (mut fg, port) = start(&broker, &influx);
    fg.wait_connected().await;
    let river = station("0020000001", b'H');
    let now = now_local();
    let t0 = now - chrono::Duration::minutes(70 + i64::from(now.minute() % 5));
    let levels: Vec<f64> = (0..12).map(|i| 3.5 + f64::from(i) / 100.0).collect();
    let body = river.body(77, now, &[(t0, [block(0xF5, &levels), element(0x38, 2, 2, 12.61)].concat())]);
    let cut = [0, body.len() / 3, 2 * body.len() / 3, body.len()];
    let parts: Vec<Vec<u8>> =
        (0..3).map(|i| river.packet(0x34, 3, i as u16 + 1, &body[cut[i]..cut[i + 1]])).collect();
    let mut link = Link::connect(port).unwrap();
    link.send(&parts[0]);
    link.send(&parts[2]);
    let nak = link.reply_of(28, Duration::from_secs(10)).expect("a NAK for the missing packet");
    assert_eq!(&nak[..2], &[0x7E, 0x7E]);
    assert_eq!(&nak[2..7], &river.station, "downlink: station first");
    assert_eq!(nak[13], 0x16, "SYN");
    assert_eq!(u16::from(nak[15] & 0x0F) << 8 | u16::from(nak[16]), 2, "asks for packet 2");
    assert_eq!(nak[25], 0x15, "ends with NAK");
    assert_eq!(u16::from_be_bytes([nak[26], nak[27]]), rtu::crc16(&nak[..26]));
    link.send(&parts[1]);
    let reply = link.reply(Duration::from_secs(10)).expect("the confirmation of the whole report");
    assert_eq!(reply, river.expected_confirmation(0x34, 77, rtu::reply_time(&reply)));
    let want: Vec<(String, f64)> =
        (0..12).map(|i| (rfc3339(t0 + chrono::Duration::minutes(5 * i)), levels[i as usize])).collect();
    wait_for("the transfer's 5-minute levels", Duration::from_secs(20), || async {
        (series(&influx, "BH-SW-01", "level_m").await == want).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_sl651_errors_total{cause=\"m3_missing\"}").await, Some(1.0));
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0));
}
