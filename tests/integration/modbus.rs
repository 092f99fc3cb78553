//! Modbus TCP polling on a real daemon and InfluxDB 1.6.7, against a real
//! Modbus server (pymodbus, `support::modbus`) holding the sample pump
//! station's register map (the commented `[[modbus.devices]]` block of
//! config/floodguard.toml): registers, bits and coils become readings in
//! InfluxDB and on the site's page; pump 2's fault coil raises the plan's
//! pump-fault level; a read the device refuses is counted as an exception
//! while its other readings go on; a device that never answers is counted
//! as timeouts; the server stopped, the site goes stale by the plan's
//! `stale_after` and no readings are made up; started again, readings
//! resume; SIGTERM ends the daemon at once with a request in flight.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::modbus::{ModbusServer, Tables};
use crate::support::mosquitto::Mosquitto;
use crate::support::{http_get, wait_for};

const DEVICE: &str = "BH-BZ-01-plc";

/// The sample's commented device, uncommented, polling `address` every second.
fn sample_device(address: &str) -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("floodguard.toml")).unwrap();
    let start = text.find("# [[modbus.devices]]").expect("the sample Modbus device");
    let end = start + text[start..].find("# ]\n").expect("its end") + 4;
    let block: String =
        text[start..end].lines().map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l))).collect();
    for key in ["address = \"192.168.10.21:502\"", "interval = \"10s\""] {
        assert!(block.contains(key), "{key} in the sample");
    }
    block.replace("192.168.10.21:502", address).replace("interval = \"10s\"", "interval = \"1s\"")
}

/// The sample plan with pump stations stale after 4 s instead of 10 min.
fn plan() -> String {
    let text = std::fs::read_to_string(sample_config_dir().join("plan.toml")).unwrap();
    assert!(text.contains("stale_after = \"10m\""));
    text.replacen("stale_after = \"10m\"", "stale_after = \"4s\"", 1)
}

async fn site(fg: &Floodguard, id: &str) -> Option<Value> {
    let (code, body) = http_get(&fg.url(&format!("/api/v1/sites/{id}"))).await?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

fn value(v: &Value, metric: &str) -> Value {
    v["values"][metric]["value"].clone()
}

/// Equal as JSON, numbers as numbers (InfluxDB writes 2.0 as 2).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The newest point of a site in InfluxDB, field → value, and its time.
async fn last_point(influx: &Influx, site: &str) -> Option<(String, serde_json::Map<String, Value>)> {
    let v = influx
        .query("flood", &format!("SELECT * FROM telemetry WHERE site = '{site}' ORDER BY time DESC LIMIT 1"))
        .await;
    let s = &v["results"][0]["series"][0];
    let cols = s["columns"].as_array()?;
    let row = s["values"][0].as_array()?;
    let fields: serde_json::Map<String, Value> =
        cols.iter().zip(row).map(|(c, v)| (c.as_str().unwrap().to_string(), v.clone())).collect();
    Some((fields["time"].as_str()?.to_string(), fields))
}

async fn points(influx: &Influx, site: &str) -> i64 {
    influx
        .count("flood", &format!("SELECT count(forebay_level_m) FROM telemetry WHERE site = '{site}'"))
        .await
}

async fn metric(fg: &Floodguard, sample: &str) -> f64 {
    fg.metric(sample).await.unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plc_registers_and_coils_are_stored_judged_and_go_stale_when_it_stops() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let mut plc = ModbusServer::start(Tables {
        // Forebay 2.00 m (u16 × 0.01); status word: bit 2 = pump 3 running.
        holding: vec![(0, 200), (10, 0b0100)],
        // Flow 4.5 m³/s as f32 CDAB (0x4090_0000, low word first); 380.2 V;
        // pump currents 121.5 A, 0 A, 119.8 A.
        input: vec![(0, 0x0000), (1, 0x4090), (2, 3802), (3, 1215), (4, 0), (5, 1198)],
        coils: vec![(0, true), (1, false), (8, false), (9, false)],
        discrete: vec![(10, false)],
    });
    // A device that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.plan_toml = Some(plan());
    o.extra = sample_device(&plc.address())
        + &format!(
            // XC-BZ-01's PLC on the same server as unit 2: one block reads
            // past the server's tables and gets an exception.
            "\n[[modbus.devices]]\nid = \"XC-BZ-01-plc\"\naddress = \"{a}\"\nunit = 2\ninterval = \"1s\"\n\
             site = \"XC-BZ-01\"\nregisters = [\n\
               {{ metric = \"forebay_level_m\", table = \"holding\", address = 20, scale = 0.01 }},\n\
               {{ metric = \"pump1_running\", table = \"holding\", address = 500, bit = 0 }},\n]\n\
             \n[[modbus.devices]]\nid = \"BH-SW-01-rtu\"\naddress = \"{silent_addr}\"\ninterval = \"1s\"\n\
             timeout = \"1s\"\nsite = \"BH-SW-01\"\n\
             registers = [{{ metric = \"level_m\", table = \"input\", address = 0, scale = 0.01 }}]\n",
            a = plc.address()
        );
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;

    // Registers, bits and coils → readings on the site's page …
    let want = [
        ("forebay_level_m", Value::from(2.0)),
        ("flow_m3s", Value::from(4.5)),
        ("voltage_v", Value::from(380.2)),
        ("pump1_current_a", Value::from(121.5)),
        ("pump2_current_a", Value::from(0.0)),
        ("pump3_current_a", Value::from(119.8)),
        ("pump1_running", Value::from(true)),
        ("pump2_running", Value::from(false)),
        ("pump3_running", Value::from(true)),
        ("pump1_fault", Value::from(false)),
        ("pump2_fault", Value::from(false)),
        ("pump3_fault", Value::from(false)),
    ];
    let v = wait_for("BH-BZ-01's readings from its PLC", Duration::from_secs(30), || async {
        let v = site(&fg, "BH-BZ-01").await?;
        want.iter().all(|(m, x)| same(&value(&v, m), x)).then_some(v)
    })
    .await;
    assert_eq!(v["offline"], false);
    // … judged: 2.00 m is above the forebay's Ⅲ (1.80 m), below Ⅱ (2.30 m).
    wait_for("forebay 2.00 m: Ⅲ", Duration::from_secs(20), || async {
        (site(&fg, "BH-BZ-01").await?["level"] == "III").then_some(())
    })
    .await;
    // … and in InfluxDB, each poll one point at the poll time.
    let (time, fields) = wait_for("BH-BZ-01's point in InfluxDB", Duration::from_secs(20), || async {
        last_point(&influx, "BH-BZ-01").await
    })
    .await;
    for (m, x) in &want {
        assert!(same(&fields[*m], x), "{m} = {x} in InfluxDB: {fields:?}");
    }
    let at = chrono::DateTime::parse_from_rfc3339(&time).unwrap();
    let age = chrono::Utc::now().signed_duration_since(at).num_seconds();
    assert!((0..30).contains(&age), "the poll time {time} is now");

    // Pump 2 faults (its coil set by the test, over Modbus): the plan's
    // pump-fault rule (forebay ≥ 1.80 m and a pump faulted) gives Ⅱ.
    plc.write_coil(9, true).await;
    wait_for("pump 2 faulted: Ⅱ", Duration::from_secs(20), || async {
        let v = site(&fg, "BH-BZ-01").await?;
        (value(&v, "pump2_fault") == true && v["level"] == "II").then_some(())
    })
    .await;
    let v = site(&fg, "BH-BZ-01").await.unwrap();
    let rule = v["rules"].as_array().unwrap().iter().find(|r| r["id"] == "forebay_pump_fault").unwrap();
    assert_eq!(rule["level"], "II", "{rule}");
    // A register written: the next poll reads it.
    plc.write_registers(0, &[215]).await;
    wait_for("forebay 2.15 m", Duration::from_secs(20), || async {
        (value(&site(&fg, "BH-BZ-01").await?, "forebay_level_m") == 2.15).then_some(())
    })
    .await;

    // The refused read of XC-BZ-01's PLC is counted; its other block's
    // reading still goes out. The silent device: timeouts, no readings.
    wait_for("XC-BZ-01's forebay level despite the exception", Duration::from_secs(20), || async {
        (value(&site(&fg, "XC-BZ-01").await?, "forebay_level_m") == 0.0).then_some(())
    })
    .await;
    let xc = site(&fg, "XC-BZ-01").await.unwrap();
    assert_eq!(value(&xc, "pump1_running"), Value::Null, "no reading for the refused block: {xc}");
    wait_for("exceptions and timeouts counted", Duration::from_secs(20), || async {
        (metric(&fg, "floodguard_modbus_errors_total{cause=\"exception\",device=\"XC-BZ-01-plc\"}").await
            >= 2.0
            && metric(&fg, "floodguard_modbus_errors_total{cause=\"timeout\",device=\"BH-SW-01-rtu\"}").await
                >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(metric(&fg, "floodguard_modbus_device_up{device=\"XC-BZ-01-plc\"}").await, 0.0);
    assert_eq!(metric(&fg, "floodguard_modbus_device_up{device=\"BH-SW-01-rtu\"}").await, 0.0);
    assert_eq!(value(&site(&fg, "BH-SW-01").await.unwrap(), "level_m"), Value::Null, "nothing made up");
    assert_eq!(metric(&fg, &format!("floodguard_modbus_device_up{{device=\"{DEVICE}\"}}")).await, 1.0);
    let polls = metric(&fg, &format!("floodguard_modbus_polls_total{{device=\"{DEVICE}\"}}")).await;
    assert!(polls >= 3.0, "{polls} polls");
    for cause in ["connect", "timeout", "io", "exception", "protocol", "bad_value"] {
        let s = format!("floodguard_modbus_errors_total{{cause=\"{cause}\",device=\"{DEVICE}\"}}");
        assert_eq!(metric(&fg, &s).await, 0.0, "{s}: the station's PLC answered every poll");
    }

    // The PLC stops (power lost): no readings, errors counted, and the
    // site goes stale after the plan's 4 s.
    plc.stop();
    let v = wait_for("BH-BZ-01 offline (stale)", Duration::from_secs(20), || async {
        let v = site(&fg, "BH-BZ-01").await?;
        (v["offline"] == true).then_some(v)
    })
    .await;
    let last = chrono::DateTime::parse_from_rfc3339(v["last_seen"].as_str().unwrap()).unwrap();
    let silent_for = chrono::Utc::now().signed_duration_since(last).num_milliseconds();
    assert!(silent_for >= 4_000, "stale by the plan's 4 s, not at once: {silent_for} ms after {last}");
    wait_for("failed connects counted", Duration::from_secs(20), || async {
        let s = format!("floodguard_modbus_errors_total{{cause=\"connect\",device=\"{DEVICE}\"}}");
        (metric(&fg, &s).await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(metric(&fg, &format!("floodguard_modbus_device_up{{device=\"{DEVICE}\"}}")).await, 0.0);
    // Nothing made up while it is gone (what was polled before is flushed by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = points(&influx, "BH-BZ-01").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(points(&influx, "BH-BZ-01").await, before, "no readings while the PLC is down");

    // Back (with the values written before): readings resume, the site is
    // online again and judged as before.
    plc.start_again();
    wait_for("BH-BZ-01 online again", Duration::from_secs(30), || async {
        let v = site(&fg, "BH-BZ-01").await?;
        (v["offline"] == false && value(&v, "forebay_level_m") == 2.15 && v["level"] == "II").then_some(())
    })
    .await;
    wait_for("new points in InfluxDB", Duration::from_secs(20), || async {
        (points(&influx, "BH-BZ-01").await > before).then_some(())
    })
    .await;
    assert_eq!(metric(&fg, &format!("floodguard_modbus_device_up{{device=\"{DEVICE}\"}}")).await, 1.0);

    // SIGTERM with the silent device's request in flight: out at once.
    let t = Instant::now();
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0), "log:\n{}", fg.log());
    assert!(t.elapsed() < Duration::from_secs(5), "stopped in {:?}", t.elapsed());
    drop(silent);
    let log = fg.log();
    assert!(log.contains("Modbus polling stopped"), "{log}");
    assert!(!plc.log().contains("Traceback"), "{}", plc.log());
}
