//! A storm burst: 1,000 waterlogging points added to the sample district,
//! each reporting depths that swing across Ⅳ/Ⅲ/Ⅱ (every tenth to Ⅰ) —
//! tens of thousands of level changes in one burst, as many sites cross
//! levels at once at the peak of a storm — and what a user checks after:
//! every reading stored once, the level changes `floodguard replay` of the
//! same readings gives, an alert history without a change told twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::floodguard::{sample_config_dir, BIN};

/// Generated sites.
pub const SITES: u64 = 1_000;
/// The last readings of each site hold one depth, so a run that restarted
/// (and lost its pending sustains) ends where a replay ends.
const STEADY_TAIL: u64 = 4;

/// The sample district's sites.toml with `SITES` more points `S-0000` …,
/// spread over its three streets (so the sample teams are told).
pub fn sites_toml() -> String {
    let mut s = std::fs::read_to_string(sample_config_dir().join("sites.toml")).unwrap();
    let streets = ["chengdong", "binhe", "xincheng"];
    for i in 0..SITES {
        s.push_str(&format!(
            "\n[[sites]]\nid = \"S-{i:04}\"\nname = \"积水点{i}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"{}\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n",
            streets[(i % 3) as usize]
        ));
    }
    s
}

/// Readings per site in a burst of `n` messages.
pub fn per_site(n: u64) -> u64 {
    n / SITES
}

/// The depth of site `site`'s `k`-th reading of `per_site`: a triangle wave
/// between 12 and 35 cm (45 for every tenth site) with a period and phase of
/// its own, then steady at its last value.
pub fn depth(site: u64, k: u64, per_site: u64) -> f64 {
    let k = k.min(per_site.saturating_sub(STEADY_TAIL));
    let period = 14 + site % 9;
    let x = ((k + site % 17) % period) as f64 / period as f64;
    let tri = if x < 0.5 { 2.0 * x } else { 2.0 - 2.0 * x };
    let peak = if site.is_multiple_of(10) { 45.0 } else { 35.0 };
    ((12.0 + (peak - 12.0) * tri) * 10.0).round() / 10.0
}

/// Message `seq` of a burst of `n` (site = seq mod SITES, in time order):
/// topic, payload, and the device time in ms.
pub fn message(seq: u64, n: u64, base_ms: i64) -> (String, Vec<u8>, i64) {
    let (site, k) = (seq % SITES, seq / SITES);
    let ts = base_ms + k as i64 * 60_000;
    let d = depth(site, k, per_site(n));
    let payload = format!(r#"{{"ts":{ts},"water_depth_cm":{d},"seq":{seq}}}"#);
    (format!("flood/S-{site:04}/telemetry"), payload.into_bytes(), ts)
}

/// Every message of a burst.
pub fn messages(n: u64, base_ms: i64) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|s| message(s, n, base_ms)).map(|(t, p, _)| (t, p)).collect()
}

/// The burst as the line protocol `replay` reads, and the sum of its depths.
pub fn write_line_protocol(path: &Path, n: u64, base_ms: i64) -> f64 {
    let mut text = String::new();
    let mut sum = 0.0;
    for seq in 0..n {
        let (site, k) = (seq % SITES, seq / SITES);
        let (_, _, ts) = message(seq, n, base_ms);
        let d = depth(site, k, per_site(n));
        sum += d;
        text.push_str(&format!(
            "telemetry,site=S-{site:04} water_depth_cm={d},seq={seq} {}\n",
            ts * 1_000_000
        ));
    }
    std::fs::write(path, text).unwrap();
    sum
}

/// Levels per (site, rule), in order: `IV` … `I`, `-` for cleared.
pub type Paths = BTreeMap<(String, String), Vec<String>>;

fn level(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

/// What `floodguard replay` of the burst gives (generated sites only).
pub fn replayed(lp: &Path, config: &Path) -> Paths {
    let out = Command::new(BIN)
        .args(["replay", "--format", "json", "--tick", "1s", "--input"])
        .arg(lp)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut paths = Paths::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let site = v["site"].as_str().unwrap().to_string();
        if site.starts_with("S-") {
            paths.entry((site, v["rule"].as_str().unwrap().to_string())).or_default().push(level(&v["to"]));
        }
    }
    paths
}

/// The level changes in the alert history (`/api/v1/alerts?state=all`):
/// per (site, rule) of the generated sites, the levels of its alerts'
/// timelines in order.
pub fn live(alerts: &serde_json::Value) -> Paths {
    let mut list: Vec<&serde_json::Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "site" && a["site"].as_str().is_some_and(|s| s.starts_with("S-")))
        .collect();
    list.sort_by_key(|a| a["id"].as_i64());
    let mut paths = Paths::new();
    for a in list {
        let key = (a["site"].as_str().unwrap().to_string(), a["rule"].as_str().unwrap().to_string());
        let path = paths.entry(key).or_default();
        for e in a["timeline"].as_array().unwrap() {
            match e["event"].as_str().unwrap() {
                "firing" | "escalated" | "deescalated" => path.push(level(&e["level"])),
                "resolved" => path.push("-".into()),
                _ => {}
            }
        }
    }
    paths
}

/// How many level changes in all.
pub fn changes(p: &Paths) -> usize {
    p.values().map(Vec::len).sum()
}

/// An alert history in which no change was recorded twice: per (site,
/// rule), no level follows itself, and at most one alert is active. The
/// first difference, if any.
pub fn told_twice(alerts: &serde_json::Value) -> Option<String> {
    let mut active: BTreeMap<(String, String), i64> = BTreeMap::new();
    for a in alerts["alerts"].as_array().unwrap() {
        let key = (a["site"].as_str().unwrap().to_string(), a["rule"].as_str().unwrap().to_string());
        if a["state"] != "resolved" {
            if let Some(other) = active.insert(key.clone(), a["id"].as_i64().unwrap()) {
                return Some(format!("{key:?}: alerts {other} and {} both active", a["id"]));
            }
        }
        let mut last: Option<String> = None;
        for e in a["timeline"].as_array().unwrap() {
            let l = match e["event"].as_str().unwrap() {
                "firing" | "escalated" | "deescalated" => level(&e["level"]),
                "resolved" => "-".into(),
                _ => continue,
            };
            if last.as_deref() == Some(l.as_str()) {
                return Some(format!(
                    "{key:?}: alert {} records {l} twice in a row: {}",
                    a["id"], a["timeline"]
                ));
            }
            last = Some(l);
        }
    }
    None
}

/// The last level of each (site, rule).
pub fn finals(p: &Paths) -> BTreeMap<(String, String), String> {
    p.iter().map(|(k, v)| (k.clone(), v.last().cloned().unwrap_or_default())).collect()
}
