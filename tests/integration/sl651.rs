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
