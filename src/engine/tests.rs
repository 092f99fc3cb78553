//! Scenario tests of the engine on the sample district's plan, in the spirit
//! of Prometheus' rule tests: readings at times in, transitions at times out.
//!
//! Fixtures live in `tests/scenarios/*.scn`:
//! ```text
//! scenario an underpass fills            # starts a fresh engine at 00:00
//! 00:01 CD-JS-01 water_depth_cm=12         # a reading received at 00:01
//! 00:03 CD-JS-01 water_depth_cm=13 @00:02  # … carrying the device time 00:02
//! 00:10..00:20/2m CD-YL-01 rain_mm=5       # one reading every 2 minutes
//! 00:40 tick                               # time passes
//! 00:40..01:00/5m tick                     # every 5 minutes
//! 01:00 intake mqtt down                   # the daemon says an intake is down (or up)
//! => 00:02 CD-JS-01 depth none→IV          # the transitions, exactly, in order
//! => 00:40 offline CD-JS-01 stale
//! => 00:41 online CD-JS-01
//! => 00:02 street chengdong none→IV
//! => 00:02 district none→IV
//! => 00:05 qc CD-JS-01 water_depth_cm=300 suspect spike   # quality control's flags
//! => 00:06 qc CD-JS-01 water_depth_cm=300 confirmed spike # … a suspect one confirmed
//! => 01:10 fault CD-JS-01 water_depth_cm flatline open     # a maintenance alert
//! => 00:40 link DTU-07 down 12 sites: A B …                # a gateway silent with its sites
//! => 00:40 offline A upstream                              # … stands for theirs
//! => 01:10 link DTU-07 back
//! ```
//! Every transition the engine makes must be expected, and every expected
//! one made — except sites the scenario never mentions going offline, unless
//! the scenario says `strict`. Times are hours:minutes[:seconds] from the start.
//!
//! The plan is the sample district's. A file may add to it for all its
//! scenarios: `overlay plan.toml counter-gauge.toml` appends
//! `tests/scenarios/counter-gauge.toml` to the sample's `plan.toml` (any of
//! the four files).

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config;

const MIN: i64 = 60_000_000_000;
/// 2026-07-21 00:00 +08:00
const T0: i64 = 1_784_563_200_000_000_000;

fn sample_plan() -> Arc<Plan> {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    config::load_with_env(&main, &Default::default()).expect("sample config").plan
}

/// The sample plan with `(config file, fixture file)` texts appended.
fn plan_with(overlays: &[(String, String)]) -> Arc<Plan> {
    if overlays.is_empty() {
        return sample_plan();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let files = std::fs::read_dir(root.join("config")).unwrap().map(|e| e.unwrap().file_name());
    for f in files.filter_map(|f| f.into_string().ok()).filter(|f| f.ends_with(".toml")) {
        let mut text = std::fs::read_to_string(root.join("config").join(&f)).unwrap();
        for (file, extra) in overlays.iter().filter(|(file, _)| *file == f) {
            let path = root.join("tests/scenarios").join(extra);
            let more = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!file.is_empty());
            text.push('\n');
            text.push_str(&more);
        }
        std::fs::write(dir.path().join(&f), text).unwrap();
    }
    match config::load_with_env(&dir.path().join("floodguard.toml"), &Default::default()) {
        Ok(c) => c.plan,
        Err(e) => panic!("overlay {overlays:?}: {e}"),
    }
}

fn parse_time(s: &str) -> i64 {
    let parts: Vec<i64> =
        s.split(':').map(|p| p.parse().unwrap_or_else(|_| panic!("bad time {s:?}"))).collect();
    let secs = match parts.as_slice() {
        [h, m] => h * 3600 + m * 60,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => panic!("bad time {s:?}"),
    };
    T0 + secs * 1_000_000_000
}

fn show_time(ts: i64) -> String {
    let s = (ts - T0) / 1_000_000_000;
    if s % 60 == 0 {
        format!("{:02}:{:02}", s / 3600, s / 60 % 60)
    } else {
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

fn show_level(l: Option<Level>) -> &'static str {
    l.map_or("none", |l| l.as_str())
}

/// A transition as a fixture line.
pub fn show(t: &Transition) -> String {
    let at = show_time(t.at);
    match &t.change {
        Change::Site(c) => format!("{at} {} {} {}→{}", c.site, c.rule, show_level(c.from), show_level(c.to)),
        Change::Offline { site, reason, .. } => {
            let why = match reason {
                OfflineReason::Stale => "stale",
                OfflineReason::Reported => "reported",
                OfflineReason::Upstream => "upstream",
            };
            format!("{at} offline {site} {why}")
        }
        Change::Online { site } => format!("{at} online {site}"),
        Change::Street { street, from, to, .. } => {
            format!("{at} street {street} {}→{}", show_level(*from), show_level(*to))
        }
        Change::District { from, to } => {
            format!("{at} district {}→{}", show_level(*from), show_level(*to))
        }
        Change::Qc(f) => format!(
            "{at} qc {} {}={} {} {}",
            f.site,
            f.metric,
            f.value,
            if f.confirmed { "confirmed" } else { f.flag.as_str() },
            f.test
        ),
        Change::Upstream(u) if u.down => {
            format!("{at} link {} down {} sites: {}", u.id, u.sites.len(), u.sites.join(" "))
        }
        Change::Upstream(u) => format!("{at} link {} back", u.id),
        Change::SensorFault(f) => {
            format!(
                "{at} fault {} {} {} {}",
                f.site,
                f.metric,
                f.test,
                if f.open { "open" } else { "closed" }
            )
        }
    }
}

/// `from..to/step` or a single time.
fn times(spec: &str) -> Vec<i64> {
    match spec.split_once("..") {
        None => vec![parse_time(spec)],
        Some((a, rest)) => {
            let (b, step) = rest.split_once('/').unwrap_or((rest, "1m"));
            let step = crate::plan::ns(humantime::parse_duration(step).expect("step"));
            let (a, b) = (parse_time(a), parse_time(b));
            (0..).map(|k| a + k * step).take_while(|t| *t <= b).collect()
        }
    }
}

enum Event {
    Readings(Vec<Reading>),
    Tick,
    /// The daemon reports an intake up or down.
    Intake(String, bool),
}

struct Scenario {
    name: String,
    /// What the file adds to the sample config: (config file, fixture file).
    overlays: Vec<(String, String)>,
    /// Also compare offline/online of sites the scenario never mentions.
    strict: bool,
    file: String,
    events: Vec<(i64, Event)>,
    expected: Vec<String>,
}

fn parse(file: &str, text: &str) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    let mut overlays: Vec<(String, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("overlay ") {
            let (file, extra) =
                rest.split_once(' ').unwrap_or_else(|| panic!("{file}:{}: overlay FILE FIXTURE", n + 1));
            overlays.push((file.trim().to_string(), extra.trim().to_string()));
            continue;
        }
        if let Some(name) = line.strip_prefix("scenario ") {
            out.push(Scenario {
                overlays: overlays.clone(),
                name: name.into(),
                strict: false,
                file: file.into(),
                events: vec![],
                expected: vec![],
            });
            continue;
        }
        let sc = out.last_mut().unwrap_or_else(|| panic!("{file}:{}: no scenario started", n + 1));
        if line == "strict" {
            sc.strict = true;
            continue;
        }
        if let Some(exp) = line.strip_prefix("=> ") {
            sc.expected.push(exp.trim().to_string());
            continue;
        }
        let mut words = line.split_whitespace();
        let when = words.next().unwrap();
        let what: Vec<&str> = words.collect();
        for at in times(when) {
            if what == ["tick"] {
                sc.events.push((at, Event::Tick));
                continue;
            }
            if let ["intake", id, state] = what.as_slice() {
                sc.events.push((at, Event::Intake(id.to_string(), *state == "up")));
                continue;
            }
            let site: Arc<str> = Arc::from(what[0]);
            let device_ts = what.iter().find_map(|w| w.strip_prefix('@')).map_or(at, parse_time);
            let readings = what[1..]
                .iter()
                .filter(|w| !w.starts_with('@'))
                .map(|w| {
                    let (m, v) =
                        w.split_once('=').unwrap_or_else(|| panic!("{file}:{}: bad reading {w:?}", n + 1));
                    let value = match v {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => Value::Float(
                            v.parse().unwrap_or_else(|_| panic!("{file}:{}: bad value {v:?}", n + 1)),
                        ),
                    };
                    Reading { site: site.clone(), metric: Arc::from(m), value, ts: device_ts }
                })
                .collect();
            sc.events.push((at, Event::Readings(readings)));
        }
    }
    // Lines with ranges interleave: run everything in time order (stable, so
    // lines at the same time keep their order).
    for sc in &mut out {
        sc.events.sort_by_key(|e| e.0);
    }
    out
}

fn run(plan: &Plan, sc: &Scenario) -> Vec<String> {
    let mentioned: std::collections::HashSet<&str> = sc
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Readings(r) => Some(r),
            _ => None,
        })
        .flatten()
        .map(|r| &*r.site)
        .collect();
    let mut state = State::new(plan, T0);
    let mut got = Vec::new();
    for (at, event) in &sc.events {
        let input = match event {
            Event::Readings(r) => Input::Readings(r),
            Event::Tick => Input::Tick,
            Event::Intake(id, up) => Input::Intake { id, up: *up },
        };
        for t in step(&mut state, plan, input, *at) {
            let silent = match &t.change {
                Change::Offline { site, .. } | Change::Online { site } => !mentioned.contains(&**site),
                _ => false,
            };
            if sc.strict || !silent {
                got.push(show(&t));
            }
        }
    }
    got
}

#[test]
fn scenarios() {
    let mut plans: std::collections::HashMap<Vec<(String, String)>, Arc<Plan>> = Default::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "scn")) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for sc in parse(&name, &std::fs::read_to_string(f).unwrap()) {
            count += 1;
            let plan = plans.entry(sc.overlays.clone()).or_insert_with(|| plan_with(&sc.overlays)).clone();
            let got = run(&plan, &sc);
            if got != sc.expected {
                failures.push(format!(
                    "{} — {}\n  expected:\n    {}\n  got:\n    {}",
                    sc.file,
                    sc.name,
                    sc.expected.join("\n    "),
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(count >= 10, "only {count} scenarios found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {count} scenarios failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_level_change_carries_value_threshold_trend_eta_and_card() {
    let plan = sample_plan();
    let mut state = State::new(&plan, T0);
    let site: Arc<str> = Arc::from("CD-JS-01");
    let mut last = Vec::new();
    // Rising 1 cm a minute from 5 cm.
    for k in 0..10 {
        let r = Reading {
            site: site.clone(),
            metric: Arc::from("water_depth_cm"),
            value: Value::Float(5.0 + k as f64),
            ts: T0 + k * MIN,
        };
        last = step(&mut state, &plan, Input::Readings(&[r]), T0 + k * MIN);
        if !last.is_empty() {
            break;
        }
    }
    let Change::Site(c) = &last[0].change else { panic!("{last:?}") };
    assert_eq!((c.from, c.to), (None, Some(Level::IV)));
    assert_eq!(c.value, Some(11.0));
    assert_eq!(c.threshold, Some(10.0));
    assert_eq!(&*c.unit, "cm");
    assert_eq!(&*c.street, "chengdong");
    let t = c.trend.expect("trend");
    assert!((t.per_hour - 60.0).abs() < 1e-6, "{t:?}");
    assert_eq!(t.direction, super::Direction::Rising);
    let eta = c.eta.expect("eta");
    assert_eq!(eta.level, Level::III);
    assert!((eta.seconds - 540.0).abs() < 1e-6, "9 cm to go at 1 cm/min: {eta:?}");
    let card = c.card.as_ref().expect("card");
    assert_eq!(card.level, Level::IV);
    assert_eq!(card.arrive_within_s, 3600);
    assert!(card.unit.contains("街道防汛办"));
}

#[test]
fn steps_are_deterministic() {
    let plan = sample_plan();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/area.scn"))
            .unwrap();
    for sc in parse("area.scn", &text) {
        assert_eq!(run(&plan, &sc), run(&plan, &sc));
    }
}
