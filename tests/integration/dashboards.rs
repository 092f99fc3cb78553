//! The Grafana dashboards of `dashboards/`: structurally valid for Grafana
//! (no service needed), and every query they hold — panel targets, nested
//! row panels, template variables, annotations — answered with data by a real
//! InfluxDB 1.6.7 that floodguard filled from a storm over the sample district.
//!
//! Queries are rendered as Grafana renders InfluxQL: `$timeFilter` for a
//! relative and for an absolute range, `$__interval`, multi-value variables
//! as `(a|b)` regex alternatives of the values the variable queries return.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::floodguard::{Floodguard, Options};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::publish::Publisher;
use crate::support::{storm, wait_for};

const BUILTINS: [&str; 12] = [
    "timeFilter",
    "__timeFilter",
    "__interval",
    "interval",
    "__interval_ms",
    "__from",
    "__to",
    "__range",
    "__range_s",
    "__range_ms",
    "__dashboard",
    "__org",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// The datasource uid the provisioning file fixes.
fn provisioned_uid() -> String {
    let text = std::fs::read_to_string(dir().join("provisioning/datasources/floodguard.yaml")).unwrap();
    let uid = text.lines().find_map(|l| l.trim().strip_prefix("uid:")).expect("uid in the datasource file");
    uid.trim().to_string()
}

fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir().join("json"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards under dashboards/json");
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Variable,
    Panel,
    Annotation,
}

/// One query of a dashboard.
struct Query {
    source: Source,
    /// Variable name, panel title or annotation name.
    name: String,
    ref_id: String,
    text: String,
    /// The panel's relative time override (`timeFrom`), e.g. "24h".
    time_from: Option<String>,
}

fn query_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("query").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn queries(d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            out.push(Query {
                source: Source::Variable,
                name: v["name"].as_str().unwrap().to_string(),
                ref_id: String::new(),
                text: query_text(&v["query"]).expect("variable query"),
                time_from: None,
            });
        }
    }
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                source: Source::Panel,
                name: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                text: t["query"].as_str().expect("raw InfluxQL in every target").to_string(),
                time_from: p["timeFrom"].as_str().map(str::to_string),
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if a["builtIn"] == 1 {
            continue;
        }
        let text = query_text(&a["target"]).or_else(|| query_text(&a["query"])).expect("annotation query");
        out.push(Query {
            source: Source::Annotation,
            name: a["name"].as_str().unwrap_or("").to_string(),
            ref_id: String::new(),
            text,
            time_from: None,
        });
    }
    out
}

/// `$name`, `${name}` and `${name:format}` in a query, by name.
fn variables_used(q: &str) -> Vec<String> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if b.get(i + 1) == Some(&b'{') {
                let end = q[i..].find('}').map(|e| i + e).expect("closing }");
                let inner = &q[i + 2..end];
                out.push(inner.split(':').next().unwrap().to_string());
                i = end;
            } else {
                let n = q[i + 1..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
                if n > 0 {
                    out.push(q[i + 1..i + 1 + n].to_string());
                }
                i += n;
            }
        }
        i += 1;
    }
    out
}

/// Grafana's `regexEscape` (public/app/core/utils/kbn).
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A time range as Grafana hands it to the InfluxQL datasource.
struct Range {
    /// `time >= now() - 6h and time <= now()` or `time >= …ms and time <= …ms`.
    filter: String,
    from_ms: i64,
    to_ms: i64,
}

impl Range {
    fn relative(span: &str) -> Range {
        let now = chrono::Utc::now().timestamp_millis();
        let from_ms = now - span_ms(span);
        Range { filter: format!("time >= now() - {span} and time <= now()"), from_ms, to_ms: now }
    }
    fn absolute(span: &str) -> Range {
        let to_ms = chrono::Utc::now().timestamp_millis() + 1000;
        let from_ms = to_ms - span_ms(span);
        Range { filter: format!("time >= {from_ms}ms and time <= {to_ms}ms"), from_ms, to_ms }
    }
    /// `$__interval`: the range over ~1000 points, not below the
    /// datasource's `timeInterval` (1m), rounded as Grafana rounds.
    fn interval_ms(&self) -> i64 {
        let raw = (self.to_ms - self.from_ms) / 1000;
        [60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000]
            .into_iter()
            .find(|&s| s >= raw)
            .unwrap_or(3_600_000)
    }
}

fn span_ms(span: &str) -> i64 {
    let (n, unit) = span.split_at(span.len() - 1);
    let n: i64 = n.parse().unwrap();
    n * match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        u => panic!("time unit {u}"),
    }
}

fn duration(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// What a variable stands for: all its values (the "All" selection of a
/// multi-value variable) or one.
#[derive(Clone)]
struct VarValue {
    values: Vec<String>,
    multi: bool,
}

impl VarValue {
    /// As Grafana's InfluxDB datasource interpolates it.
    fn render(&self) -> String {
        if !self.multi {
            return self.values[0].clone();
        }
        if self.values.len() == 1 {
            return regex_escape(&self.values[0]);
        }
        let alts: Vec<String> = self.values.iter().map(|v| regex_escape(v)).collect();
        format!("({})", alts.join("|"))
    }
}

fn render(q: &str, vars: &BTreeMap<String, VarValue>, range: &Range) -> String {
    let interval = range.interval_ms();
    let span = range.to_ms - range.from_ms;
    let builtin = |name: &str| -> Option<String> {
        Some(match name {
            "timeFilter" | "__timeFilter" => range.filter.clone(),
            "__interval" | "interval" => duration(interval),
            "__interval_ms" => interval.to_string(),
            "__from" => range.from_ms.to_string(),
            "__to" => range.to_ms.to_string(),
            "__range" => duration(span),
            "__range_s" => (span / 1000).to_string(),
            "__range_ms" => span.to_string(),
            _ => return None,
        })
    };
    let mut out = String::new();
    let mut rest = q;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap();
            (inner[..end].split(':').next().unwrap(), end + 2)
        } else {
            let n = after.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
            (&after[..n], n)
        };
        if name.is_empty() {
            out.push('$');
        } else if let Some(v) = builtin(name) {
            out.push_str(&v);
        } else {
            let v = vars.get(name).unwrap_or_else(|| panic!("${name} undefined in {q}"));
            out.push_str(&v.render());
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[test]
fn dashboards_are_valid_for_grafana() {
    let uid = provisioned_uid();
    let mut uids = HashSet::new();
    let dashboards = dashboards();
    assert_eq!(dashboards.len(), 5, "区级总览, 积水点, 泵站, 雨量, 告警");
    let is_cjk = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    for (file, d) in &dashboards {
        let duid = d["uid"].as_str().unwrap_or_else(|| panic!("{file}: uid"));
        assert!(uids.insert(duid.to_string()), "{file}: uid {duid} used twice");
        assert!(duid.len() <= 40, "{file}: Grafana uids are at most 40 characters");
        assert!(is_cjk(d["title"].as_str().unwrap_or("")), "{file}: Chinese title");
        let schema = d["schemaVersion"].as_i64().unwrap_or(0);
        assert!(schema >= 38, "{file}: schemaVersion {schema} is older than Grafana 10");
        assert!(d["id"].is_null(), "{file}: no instance id in a provisioned dashboard");

        let mut ids = HashSet::new();
        for p in all_panels(d) {
            let title = p["title"].as_str().unwrap_or("");
            let id = p["id"].as_i64().unwrap_or_else(|| panic!("{file} {title}: panel id"));
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            assert!(is_cjk(title), "{file}: panel {id} needs a Chinese title");
            let g = &p["gridPos"];
            for k in ["h", "w", "x", "y"] {
                assert!(g[k].is_u64(), "{file} {title}: gridPos.{k}");
            }
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{file} {title}: wider than 24"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], uid.as_str(), "{file} {title}: datasource");
            let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{file} {title}: targets"));
            assert!(!targets.is_empty(), "{file} {title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], uid.as_str(), "{file} {title}: target datasource");
                assert_eq!(t["rawQuery"], true, "{file} {title}: raw InfluxQL");
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            assert_eq!(v["datasource"]["uid"], uid.as_str(), "{file} ${}: datasource", v["name"]);
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if a["builtIn"] != 1 {
                assert_eq!(a["datasource"]["uid"], uid.as_str(), "{file} {}: datasource", a["name"]);
            }
        }

        let defined: HashSet<String> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .chain(BUILTINS.iter().map(|s| s.to_string()))
            .collect();
        for q in queries(d) {
            for name in variables_used(&q.text) {
                assert!(defined.contains(&name), "{file} {}: ${name} is not defined", q.name);
            }
        }
    }
    // The provider points at the folder the README copies the JSON to.
    let provider = std::fs::read_to_string(dir().join("provisioning/dashboards/floodguard.yaml")).unwrap();
    assert!(
        provider.contains("type: file") && provider.contains("path: /var/lib/grafana/dashboards/floodguard")
    );
}

#[test]
fn rendering_follows_grafana() {
    let mut vars = BTreeMap::new();
    vars.insert("site".to_string(), VarValue { values: vec!["CD-JS-01".into(), "a.b".into()], multi: true });
    vars.insert("one".to_string(), VarValue { values: vec!["x/y".into()], multi: true });
    let r = Range { filter: "time >= now() - 6h and time <= now()".into(), from_ms: 0, to_ms: 21_600_000 };
    assert_eq!(
        render("SELECT 1 FROM m WHERE $timeFilter AND site =~ /^$site$/ AND o =~ /^${one}$/ GROUP BY time($__interval)", &vars, &r),
        "SELECT 1 FROM m WHERE time >= now() - 6h and time <= now() AND site =~ /^(CD-JS-01|a\\.b)$/ \
         AND o =~ /^x\\/y$/ GROUP BY time(1m)"
    );
    assert_eq!(variables_used("a $x ${y:regex} $__interval $/ $"), ["x", "y", "__interval"]);
}

/// Number of result rows, or the error InfluxDB gave.
fn rows(v: &Value) -> Result<usize, String> {
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_string());
    }
    let r = &v["results"][0];
    if let Some(e) = r["error"].as_str() {
        return Err(e.to_string());
    }
    Ok(r["series"].as_array().into_iter().flatten().map(|s| s["values"].as_array().map_or(0, Vec::len)).sum())
}

fn tag_values(v: &Value) -> Vec<String> {
    v["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|r| r[1].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_answers_with_storm_data() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let fg = Floodguard::start(Options::new(broker.url()).influx(influx.url(), "v1"));
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-dashboards");
    let end_ms = chrono::Utc::now().timestamp_millis();
    let sent = storm::publish(&p, end_ms).await;
    p.wait_acked(sent, Duration::from_secs(30)).await;

    // Everything in InfluxDB: the readings, the catalogue, and what the
    // engine and the alert manager wrote of the storm.
    let depth_points = 7 * storm::STEPS;
    wait_for("the storm in InfluxDB", Duration::from_secs(60), || async {
        let n = influx.count("flood", "SELECT count(water_depth_cm) FROM telemetry").await;
        let f = influx.count("flood", "SELECT count(forebay_level_m) FROM telemetry").await;
        let s = influx.count("flood", "SELECT count(lat) FROM site_info").await;
        let a =
            influx.count("flood", "SELECT count(alert_id) FROM alert_event WHERE rule = 'rainstorm'").await;
        let l = influx.count("flood", "SELECT max(level) FROM area_level WHERE district =~ /.+/").await;
        (n == depth_points && f == 2 * storm::STEPS && s == 15 && a > 0 && l >= 3).then_some(())
    })
    .await;
    // The pump fault condition (Ⅱ) and the river need their sustain: let the
    // last transitions reach InfluxDB.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for (file, d) in dashboards() {
        for (pass, span_range, all) in
            [("relative", false, true), ("absolute", true, true), ("one value", false, false)]
        {
            let mut vars: BTreeMap<String, VarValue> = BTreeMap::new();
            for q in queries(&d) {
                let span = q.time_from.clone().unwrap_or_else(|| "6h".to_string());
                let range = if span_range { Range::absolute(&span) } else { Range::relative(&span) };
                let text = render(&q.text, &vars, &range);
                let v = influx.query("flood", &text).await;
                total += 1;
                let n = rows(&v);
                match (&n, q.source) {
                    (Err(e), _) => {
                        failures.push(format!("{file} [{pass}] {}: error {e}\n    {text}", q.name))
                    }
                    (Ok(0), _) if all => {
                        failures.push(format!("{file} [{pass}] {}: no rows\n    {text}", q.name))
                    }
                    _ => {}
                }
                if q.source == Source::Variable {
                    let def =
                        d["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == q.name);
                    let multi = def.is_some_and(|v| v["multi"] == true || v["includeAll"] == true);
                    let mut values = tag_values(&v);
                    if !all {
                        values.truncate(1);
                    }
                    if values.is_empty() {
                        values.push("no-value".into());
                    }
                    vars.insert(q.name.clone(), VarValue { values, multi });
                }
                let kind = match q.source {
                    Source::Variable => "variable",
                    Source::Panel => "panel",
                    Source::Annotation => "annotation",
                };
                report.push(format!(
                    "{file:<18} {pass:<9} {kind:<10} {:<28} {:<2} {}",
                    q.name,
                    q.ref_id,
                    n.map_or_else(|e| format!("ERROR {e}"), |n| n.to_string())
                ));
            }
        }
    }
    println!("{:<18} {:<9} {:<10} {:<28} {:<2} rows", "dashboard", "range", "source", "panel/variable", "");
    for l in &report {
        println!("{l}");
    }
    println!("{total} queries run, {} failures", failures.len());
    assert!(failures.is_empty(), "{}\nfloodguard log:\n{}", failures.join("\n"), fg.log());

    // The rain panels' rolling sums agree with the plan engine: CD-YL-01 had
    // 18 × 6 mm in the last 3 hours, above the 100 mm red line, and
    // floodguard judged it Ⅰ (rule `rainstorm`).
    let rain = dashboards().into_iter().find(|(f, _)| f == "rain.json").unwrap().1;
    let q = queries(&rain).into_iter().find(|q| q.name.starts_with("3 小时")).expect("3 h panel");
    let one = |v: &str| VarValue { values: vec![v.to_string()], multi: true };
    let vars =
        BTreeMap::from([("street".to_string(), one("chengdong")), ("site".to_string(), one("CD-YL-01"))]);
    let v = influx.query("flood", &render(&q.text, &vars, &Range::relative("24h"))).await;
    let max = v["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[1].as_f64())
        .fold(0.0, f64::max);
    assert!((max - 108.0).abs() < 0.01, "3 h rolling maximum {max} mm, expected 108");
    let red = influx
        .count("flood", "SELECT count(alert_id) FROM alert_event WHERE site = 'CD-YL-01' AND rule = 'rainstorm' AND level = 'I'")
        .await;
    assert!(red > 0, "the engine judged CD-YL-01 red");
}
