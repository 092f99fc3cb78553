//! `floodguard check-config`: what a valid configuration holds, as people read it.

use std::fmt::Write;

use crate::config::{Config, Kind};
use crate::level::Level;
use crate::plan::{Check, Direction, SitePlan, SiteRule};

fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Where a site's readings may come from: its MQTT topics, SL 651 station,
/// Modbus devices, HTTP push.
fn sources(c: &Config, s: &crate::config::Site) -> Vec<String> {
    let d = &c.daemon;
    let mut v = Vec::new();
    if d.mqtt.default_topics {
        v.push(format!("MQTT flood/{}/telemetry", s.id));
    }
    for m in &d.mqtt.mappings {
        let topic: Vec<&str> = m
            .filter
            .split('/')
            .enumerate()
            .map(|(i, seg)| if i == m.site_segment { s.id.as_str() } else { seg })
            .collect();
        v.push(format!("MQTT {}", topic.join("/")));
    }
    if let Some(st) = &s.sl651_station {
        let on = if d.sl651.listen.trim().is_empty() { " (sl651.listen is off)" } else { "" };
        v.push(format!("SL 651 station {st}{on}"));
    }
    for m in d.modbus.devices.iter().filter(|m| m.site == s.id) {
        let n = m.registers.len();
        v.push(format!(
            "Modbus device {} ({} unit {}, every {}, {n} metric{})",
            m.id,
            m.address,
            m.unit,
            m.interval,
            if n == 1 { "" } else { "s" }
        ));
    }
    if !d.http.ingest_token.is_empty() {
        v.push("HTTP push".into());
    }
    v
}

/// One rule at one site, as the plan table shows it:
/// `depth 积水深度  water_depth_cm ≥ Ⅳ 10 · Ⅲ 20 · Ⅱ 27 · Ⅰ 40 cm`.
fn describe_rule(sp: &SitePlan, r: &SiteRule) -> String {
    let head = format!("{:<20}", format!("{} {}", r.rule.id, r.rule.name));
    match &r.check {
        Check::Level { metric, direction, thresholds, deadband } => {
            let op = if *direction == Direction::Above { "≥" } else { "≤" };
            let levels: Vec<String> = Level::ALL
                .iter()
                .zip(thresholds)
                .filter_map(|(l, t)| t.map(|t| format!("{} {}", l.roman(), num(t))))
                .collect();
            format!(
                "{head} {metric} {op} {} {} (deadband {})",
                levels.join(" · "),
                sp.unit(metric),
                num(*deadband)
            )
        }
        Check::Rate { metric, rise, per_ns, level } => {
            format!(
                "{head} {metric} rises {} {} within {} min → {}",
                num(*rise),
                sp.unit(metric),
                per_ns / 60_000_000_000,
                level.roman()
            )
        }
        Check::Rain { metric, windows, .. } => {
            let w: Vec<String> = windows
                .iter()
                .map(|(within, mm, l)| {
                    format!("{} h ≥ {} mm → {}", within / 3_600_000_000_000, num(*mm), l.roman())
                })
                .collect();
            format!("{head} {metric}: {}", w.join(" · "))
        }
        Check::Condition { text, level, .. } => format!("{head} when {text} → {}", level.roman()),
    }
}

/// A metric's quality control: `water_depth_cm [-5, 500] · spike 50 cm in 10m · flatline 1h while ≥ 30 mm`.
fn describe_qc(sp: &crate::plan::SitePlan, q: &crate::plan::qc::MetricQc) -> String {
    let unit = sp.unit(&q.metric);
    let d = |ns: i64| humantime::format_duration(std::time::Duration::from_nanos(ns as u64)).to_string();
    let mut parts = vec![q.metric.to_string()];
    if let Some((lo, hi)) = q.range {
        parts.push(format!("[{lo}, {hi}] {unit}"));
    }
    if let Some((max, within)) = q.spike {
        parts.push(format!("spike > {max} {unit} in {}", d(within)));
    }
    if let Some(r) = q.rate_per_h {
        parts.push(format!("rate > {r} {unit}/h"));
    }
    if let Some(f) = q.flatline {
        let rain = f.rain_mm.map_or(String::new(), |mm| format!(" while the street's rain ≥ {mm} mm"));
        parts.push(format!("flatline {}{rain}", d(f.after_ns)));
    }
    parts.join(" · ")
}

/// The sites by street and kind, and the teams covering each street.
pub fn describe(c: &Config) -> String {
    let mut out = String::new();
    let d = &c.sites.district;
    let _ = writeln!(
        out,
        "{}: OK — {} ({}), {} streets, {} sites, {} teams",
        c.main_file.display(),
        d.name,
        d.id,
        c.sites.streets.len(),
        c.sites.sites.len(),
        c.teams.teams.len()
    );
    for street in &c.sites.streets {
        let teams: Vec<String> = c
            .teams
            .teams
            .iter()
            .filter(|t| t.streets.contains(&street.id))
            .map(|t| {
                // Who is told from which level on.
                let mut steps = Vec::new();
                for &l in Level::ALL {
                    let joining: Vec<&str> = t
                        .members
                        .iter()
                        .filter(|m| m.min_level.unwrap_or(t.min_level).max(t.min_level) == l)
                        .map(|m| m.name.as_str())
                        .collect();
                    if !joining.is_empty() {
                        let plus = if steps.is_empty() { "" } else { "+" };
                        steps.push(format!("{}: {plus}{}", l.roman(), joining.join(", ")));
                    }
                }
                format!("{} {} ({})", t.id, t.name, steps.join(" · "))
            })
            .collect();
        let _ = writeln!(
            out,
            "\n{} ({}) — teams: {}",
            street.name,
            street.id,
            if teams.is_empty() { "none!".into() } else { teams.join(", ") }
        );
        // Who is told of suspected sensor faults there (not the rescue teams).
        let maintenance: Vec<String> = c
            .teams
            .maintenance
            .iter()
            .filter(|t| t.streets.contains(&street.id))
            .map(|t| {
                let names: Vec<&str> = t.members.iter().map(|m| m.name.as_str()).collect();
                format!("{} {} ({})", t.id, t.name, names.join(", "))
            })
            .collect();
        let _ = writeln!(
            out,
            "  sensor faults to: {}",
            if maintenance.is_empty() {
                "nobody ([[maintenance]] in teams.toml)".into()
            } else {
                maintenance.join(", ")
            }
        );
        for kind in Kind::ALL {
            let sites: Vec<_> =
                c.sites.sites.iter().filter(|s| s.street == street.id && s.kind == *kind).collect();
            if sites.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {} {}", kind.name_zh(), kind);
            for s in sites {
                let params: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    out,
                    "    {:<10} {} [{}]{}",
                    s.id,
                    s.name,
                    s.category.name_zh(),
                    if params.is_empty() { String::new() } else { format!("  {}", params.join(" ")) }
                );
                let _ = writeln!(out, "               sources: {}", sources(c, s).join(" · "));
                if let Some((_, sp)) = c.plan.site(&s.id) {
                    for r in sp.rules.iter() {
                        let _ = writeln!(out, "               {}", describe_rule(sp, r));
                    }
                    if c.plan.qc.enabled {
                        for q in sp.qc.iter() {
                            let _ = writeln!(out, "               qc {}", describe_qc(sp, q));
                        }
                    }
                    if let Some(g) = sp.gateway {
                        let n = c.plan.upstreams[g].sites.len();
                        let _ =
                            writeln!(out, "               gateway {} ({n} sites)", c.plan.upstreams[g].id);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_reads_by_street_and_kind() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let c = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let text = describe(&c);
        assert!(text.contains("OK — 某区 (mouqu), 3 streets, 15 sites, 4 teams"), "{text}");
        assert!(
            text.contains("sources: MQTT flood/CD-YL-01/telemetry · MQTT legacy/CD-YL-01/depth_m · MQTT gateway/sl651/CD-YL-01/data · SL 651 station 0010000001 (sl651.listen is off)"),
            "{text}"
        );
        assert!(
            text.contains(
                "城东街道 (chengdong) — teams: team1 一队 (Ⅳ: 张队长 · Ⅲ: +李队员 · Ⅱ: +城东街道 王主任)"
            ),
            "{text}"
        );
        assert!(text.contains("water_depth_cm ≥ Ⅳ 10 · Ⅲ 20 · Ⅱ 27 · Ⅰ 40 cm (deadband 3)"), "{text}");
        assert!(
            text.contains("water_depth_cm ≥ Ⅳ 15 · Ⅲ 25 · Ⅱ 35 · Ⅰ 50 cm"),
            "CD-JS-02's override:\n{text}"
        );
        assert!(text.contains("level_m ≥ Ⅳ 4.2 · Ⅲ 4.5 · Ⅱ 5 · Ⅰ 5.2 m"), "{text}");
        assert!(text.contains("sensor faults to: iot 监测设备运维班 (运维值班工程师 何工)"), "{text}");
        assert!(
            text.contains(
                "qc water_depth_cm · [-5, 500] cm · spike > 50 cm in 10m · flatline 1h while the street's rain ≥ 30 mm"
            ),
            "{text}"
        );
        assert!(text.contains("distance_m ≤ Ⅳ 1.8 · Ⅲ 1 · Ⅱ 0.5 · Ⅰ 0.1 m"), "{text}");
        assert!(
            text.contains("rain_mm: 12 h ≥ 50 mm → Ⅳ · 6 h ≥ 50 mm → Ⅲ · 3 h ≥ 50 mm → Ⅱ · 3 h ≥ 100 mm → Ⅰ"),
            "{text}"
        );
        assert!(
            text.contains("when forebay_level_m >= flood_control_level_m - 0.80 && pumps_faulted >= 1 → Ⅱ"),
            "{text}"
        );
        assert!(text.contains("  积水点 waterlogging\n    CD-JS-01   人民路铁路桥下穿 [下穿通道]"), "{text}");
        assert!(
            text.contains("BH-SW-01   清水河滨河大桥 [河道]  guarantee_level_m=5.2 warning_level_m=4.5"),
            "{text}"
        );
        let binhe = text.find("滨河街道").unwrap();
        assert!(text[binhe..].find("BH-BZ-01").is_some() && text.find("BH-BZ-01").unwrap() > binhe);
    }

    #[test]
    fn a_modbus_device_is_its_sites_source() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let mut c = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let reg: crate::config::ModbusRegister = serde_json::from_value(
            serde_json::json!({ "metric": "pump1_running", "table": "coil", "address": 0 }),
        )
        .unwrap();
        c.daemon.modbus.devices.push(crate::config::ModbusDevice {
            id: "BH-BZ-01-plc".into(),
            address: "192.168.10.21:502".into(),
            unit: 1,
            interval: crate::config::HumanDuration::secs(10),
            timeout: crate::config::HumanDuration::secs(3),
            site: "BH-BZ-01".into(),
            max_gap: 16,
            registers: vec![reg],
        });
        let text = describe(&c);
        let line =
            text.lines().skip_while(|l| !l.contains("BH-BZ-01 ")).find(|l| l.contains("sources:")).unwrap();
        assert!(
            line.ends_with("MQTT flood/BH-BZ-01/telemetry · MQTT legacy/BH-BZ-01/depth_m · MQTT gateway/sl651/BH-BZ-01/data · Modbus device BH-BZ-01-plc (192.168.10.21:502 unit 1, every 10s, 1 metric)"),
            "{line}"
        );
    }
}
