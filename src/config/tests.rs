//! Loading the shipped sample configuration and broken variants of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Copies the sample config to a temp dir, applying `(file, from, to)` edits.
fn broken(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["floodguard.toml", SITES_FILE, PLAN_FILE, TEAMS_FILE] {
        let mut text = std::fs::read_to_string(sample_dir().join(f)).unwrap();
        for (file, from, to) in edits {
            if *file == f {
                assert!(text.contains(from), "{f} lacks {from:?}");
                text = text.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    dir
}

#[test]
fn the_sample_district_loads() {
    let c = load_with_env(&sample_dir().join("floodguard.toml"), &HashMap::new()).unwrap();
    assert_eq!(c.sites.streets.len(), 3);
    assert_eq!(c.sites.sites.len(), 15);
    for id in [
        "CD-JS-01", "CD-JS-02", "CD-YL-01", "CD-JC-01", "BH-SW-01", "BH-BZ-01", "BH-JS-01",
        "BH-YL-01", "XC-JS-01", "XC-BZ-01", "XC-SW-01", "XC-JC-01",
    ] {
        assert!(c.site(id).is_some(), "{id} missing");
    }
    let cats: Vec<Category> = c.sites.sites.iter().map(|s| s.category).collect();
    for needed in [Category::Community, Category::Mall, Category::School] {
        assert!(cats.contains(&needed), "{needed:?} missing");
    }
    assert_eq!(c.teams.teams.len(), 3);
    assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(c.daemon.mqtt.mappings.len(), 2);
    assert_eq!(
        c.daemon.influxdb.flush_interval.get(),
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn environment_overrides_keys_of_the_main_file() {
    let env = HashMap::from([
        (
            "FLOODGUARD__MQTT__URL".to_string(),
            "mqtts://broker.example:8884".to_string(),
        ),
        (
            "FLOODGUARD__INFLUXDB__BATCH_SIZE".to_string(),
            "77".to_string(),
        ),
        (
            "FLOODGUARD__HTTP__API_TOKEN".to_string(),
            "t0ken".to_string(),
        ),
        (
            "FLOODGUARD__SPOOL__FSYNC_INTERVAL".to_string(),
            "1s".to_string(),
        ),
    ]);
    let c = load_with_env(&sample_dir().join("floodguard.toml"), &env).unwrap();
    assert_eq!(c.daemon.mqtt.url, "mqtts://broker.example:8884");
    assert_eq!(c.daemon.influxdb.batch_size, 77);
    assert_eq!(c.daemon.http.api_token.expose(), "t0ken");
    assert_eq!(
        c.daemon.spool.fsync_interval.get(),
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = HashMap::from([
        (
            "FLOODGUARD__INFLUXDB__BATCH_SIZE".to_string(),
            "lots".to_string(),
        ),
        ("FLOODGUARD__MQTT__COLOUR".to_string(), "blue".to_string()),
    ]);
    let errs = load_with_env(&sample_dir().join("floodguard.toml"), &env).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("environment FLOODGUARD__MQTT__COLOUR: mqtt.colour: unknown key"),
        "{text}"
    );
    assert!(
        text.contains("environment FLOODGUARD__INFLUXDB__BATCH_SIZE: influxdb.batch_size"),
        "{text}"
    );
}

#[test]
fn every_mistake_is_listed_with_file_line_and_key() {
    let dir = broken(&[
        (
            "floodguard.toml",
            "timezone = \"Asia/Shanghai\"",
            "timezone = \"Asia/Shanghia\"",
        ),
        (
            "floodguard.toml",
            "keep_alive = \"30s\"",
            "keep_alive = \"30 seconds-ish\"",
        ),
        (
            "floodguard.toml",
            "gzip = true",
            "gzip = true\ncompression = \"zstd\"",
        ),
        (
            "sites.toml",
            "kind = \"rain_gauge\"",
            "kind = \"rain_bucket\"",
        ),
        (
            "sites.toml",
            "street = \"binhe\"",
            "street = \"binhe-south\"",
        ),
        (
            "sites.toml",
            "params = { warning_level_m = 3.20, guarantee_level_m = 3.80 }",
            "params = { warning_level_m = 3.20 }",
        ),
        ("sites.toml", "id = \"XC-JS-02\"", "id = \"XC-JS-01\""),
        (
            "sites.toml",
            "location = { lat = 30.6281, lon = 114.2744 }",
            "location = { lat = 130.6281, lon = 114.2744 }\nheight = 3",
        ),
        (
            "teams.toml",
            "streets = [\"xincheng\"]",
            "streets = [\"xinchen\"]",
        ),
        (
            "teams.toml",
            "phone = \"13800000302\"",
            "phone = \"call the office\"",
        ),
    ]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let lines: Vec<String> = errs
        .iter()
        .map(|e| {
            // Strip the temp dir so the expectation reads well.
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
        .collect();
    let expected = [
        "floodguard.toml:24: mqtt.keep_alive: invalid duration \"30 seconds-ish\"",
        "floodguard.toml:59: influxdb.compression: unknown key",
        "floodguard.toml:12: daemon.timezone: unknown time zone \"Asia/Shanghia\"",
        "sites.toml:54: sites[2].kind: unknown kind \"rain_bucket\" (expected one of: waterlogging, rain_gauge,",
        "sites.toml:166: sites[13].height: unknown key",
        "sites.toml:86: sites[5].street: unknown street \"binhe-south\"",
        "sites.toml:156: sites[12].params: a river site needs guarantee_level_m",
        "sites.toml:165: sites[13].location.lat: 130.6281 is not a latitude",
        "sites.toml:170: sites[14].id: duplicate site id \"XC-JS-01\"",
        "teams.toml:69: teams[2].streets[0]: unknown street \"xinchen\"",
        "teams.toml:82: teams[2].members[1].phone: \"call the office\" is not a phone number",
    ];
    for want in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
}

#[test]
fn a_missing_file_and_a_syntax_error_are_named() {
    let dir = broken(&[(
        "sites.toml",
        "[[sites]]\nid = \"CD-JS-01\"",
        "[[sites]\nid = \"CD-JS-01\"",
    )]);
    std::fs::remove_file(dir.path().join(TEAMS_FILE)).unwrap();
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("sites.toml: TOML parse error at line"),
        "{text}"
    );
    assert!(text.contains("teams.toml: cannot read"), "{text}");
}
