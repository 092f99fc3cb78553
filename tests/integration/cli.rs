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
    assert!(text.contains("3 streets, 15 sites, 3 teams"), "{text}");
    assert!(text.contains("滨河街道 (binhe)"), "{text}");
    assert!(text.contains("泵站 pump_station\n    BH-BZ-01"), "{text}");
}

#[test]
fn check_config_lists_every_mistake_and_fails() {
    let dir = crate::support::tempdir("bad-config-");
    for f in ["floodguard.toml", "sites.toml", "plan.toml", "teams.toml"] {
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
            "{d}/floodguard.toml:55: influxdb.batch_size: invalid type: string \"many\", expected an integer"
        ),
        format!("{d}/sites.toml:84: sites[5].kind: unknown kind \"stream\""),
        format!("{d}/sites.toml:39: sites[0].location.lat: 300.6021 is not a latitude"),
        format!("{d}/teams.toml:41: teams[1].streets[0]: unknown street \"riverside\""),
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
