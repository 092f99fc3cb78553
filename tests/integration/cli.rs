//! The command line: `check-config` on the sample and on a broken copy,
//! SIGTERM ending `run` cleanly, and /metrics passing promtool.

use std::process::Command;
use std::time::Duration;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options, BIN};
use crate::support::mosquitto::Mosquitto;

#[test]
fn check_config_prints_the_sample_by_street_and_kind() {
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(sample_config_dir().join("floodguard.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 streets, 15 sites, 4 teams"), "{text}");
    assert!(text.contains("滨河街道 (binhe)"), "{text}");
    assert!(text.contains("泵站 pump_station\n    BH-BZ-01"), "{text}");
}

#[test]
fn check_config_lists_every_mistake_and_fails() {
    let dir = crate::support::tempdir("bad-config-");
    for f in ["floodguard.toml", "sites.toml", "plan.toml", "teams.toml", "materials.toml"] {
        let mut text = std::fs::read_to_string(sample_config_dir().join(f)).unwrap();
        match f {
            "floodguard.toml" => {
                text = text.replace("url = \"mqtt://127.0.0.1:1883\"", "url = \"http://127.0.0.1:1883\"");
                text = text.replace("batch_size = 5000", "batch_size = \"many\"");
            }
            "sites.toml" => {
                text = text.replacen("kind = \"river\"", "kind = \"stream\"", 1);
                text = text.replacen("lat = 30.6021", "lat = 300.6021", 1);
            }
            "teams.toml" => text = text.replacen("streets = [\"binhe\"]", "streets = [\"riverside\"]", 1),
            _ => {}
        }
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(dir.path().join("floodguard.toml"))
        .env_remove("FLOODGUARD__MQTT__URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let d = dir.path().display();
    for want in [
        "5 configuration errors:".to_string(),
        format!("{d}/floodguard.toml:21: mqtt.url: scheme \"http\" is not mqtt:// or mqtts://"),
        format!(
            "{d}/floodguard.toml:65: influxdb.batch_size: invalid type: string \"many\", expected an integer"
        ),
        format!("{d}/sites.toml:85: sites[5].kind: unknown kind \"stream\""),
        format!("{d}/sites.toml:39: sites[0].location.lat: 300.6021 is not a latitude"),
        format!("{d}/teams.toml:63: teams[1].streets[0]: unknown street \"riverside\""),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_metrics_pass_promtool() {
    let broker = Mosquitto::start();
    let mut fg = Floodguard::start(Options::new(broker.url()));
    fg.wait_connected().await;
    let body = fg.metrics().await.unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) — run scripts/test.sh");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fg.terminate(Duration::from_secs(15)), Some(0), "{}", fg.log());
    assert!(fg.log().contains("floodguard stopped"));
}

/// A recorded storm at two underpasses, as `influx_inspect export` writes it
/// (series by series, so not in time order).
fn storm_export() -> String {
    let t0: i64 = 1_784_613_900_000_000_000; // 2026-07-21 14:05 +08:00
    let min: i64 = 60_000_000_000;
    let mut s = String::from("# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z\n# DML\n# CONTEXT-DATABASE: flood\n# CONTEXT-RETENTION-POLICY: autogen\n# writing tsm data\n");
    for (site, peak) in [("CD-JS-01", 30.0), ("XC-JS-01", 18.0)] {
        for k in 0..60i64 {
            let depth: f64 = (peak * (1.0 - ((k as f64 - 30.0) / 30.0).powi(2))).max(0.0);
            s.push_str(&format!(
                "telemetry,kind=waterlogging,site={site},street=x water_depth_cm={depth:.1} {}\n",
                t0 + k * min
            ));
        }
    }
    s
}

#[test]
fn replay_prints_level_changes_as_text_and_json_and_compares_plans() {
    let dir = crate::support::tempdir("replay-");
    let input = dir.path().join("storm.lp");
    std::fs::write(&input, storm_export()).unwrap();
    let sample = sample_config_dir().join("floodguard.toml");

    let out =
        Command::new(BIN).args(["replay", "--input"]).arg(&input).arg("-c").arg(&sample).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("120 readings of 2 sites, 2026-07-21 14:05:00 → 2026-07-21 15:04:00 (Asia/Shanghai)"),
        "{text}"
    );
    assert!(text.contains("CD-JS-01 人民路铁路桥下穿 · 城东街道"), "{text}");
    assert!(text.contains("XC-JS-01 高铁站北广场地下通道 · 新城街道"), "{text}");
    assert!(text.contains("Ⅲ → Ⅱ"), "CD-JS-01 peaks at 30 cm:\n{text}");
    assert!(text.contains("highest Ⅱ级 at CD-JS-01"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("replayed 120 readings"));

    let out = Command::new(BIN)
        .args(["replay", "--format", "json", "--input"])
        .arg(&input)
        .arg("-c")
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        for key in ["ts", "site", "rule", "from", "to", "value"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    assert_eq!(lines[0]["site"], "CD-JS-01");
    assert_eq!(lines[0]["to"], "IV");
    assert!(lines.iter().any(|l| l["site"] == "XC-JS-01" && l["to"] == "IV"), "XC-JS-01 peaks at 18 cm");
    assert!(!lines.iter().any(|l| l["site"] == "XC-JS-01" && l["to"] == "III"));

    // Plan B: underpasses at Ⅲ from 15 cm.
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    for f in ["floodguard.toml", "sites.toml", "teams.toml", "plan.toml", "materials.toml"] {
        let mut t = std::fs::read_to_string(sample_config_dir().join(f)).unwrap();
        if f == "plan.toml" {
            t = t.replacen(
                "thresholds = { IV = 10, III = 20, II = 27, I = 40 }",
                "thresholds = { IV = 10, III = 15, II = 27, I = 40 }",
                1,
            );
        }
        std::fs::write(b.join(f), t).unwrap();
    }
    let out = Command::new(BIN)
        .args(["replay", "--input"])
        .arg(&input)
        .arg("-c")
        .arg(&sample)
        .arg("--compare")
        .arg(b.join("floodguard.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("comparison: A = "), "{text}");
    assert!(text.contains("moves            CD-JS-01 depth Ⅲ级"), "{text}");
    assert!(text.contains("min earlier"), "{text}");
}
