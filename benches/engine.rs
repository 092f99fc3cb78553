//! The plan engine on one core, and a replay of a recorded day.
//!
//! `cargo bench --bench engine` prints:
//! - `engine/step`: readings per second through `engine::step` (criterion's
//!   thrpt), on 1,000 sites of every kind under the sample district's plan
//!   (quality control on, as shipped); `engine/step, QC off`: the same with
//!   `[qc] enabled = false` — what quality control costs;
//! - `replay/24h of 1000 sites`: the time to load and replay 24 h of 1,000
//!   sites at one reading per minute (1.44 M readings) from line protocol.
//!
//! Recorded in docs/performance.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodguard::engine::{self, Input, State};
use floodguard::plan::Plan;
use floodguard::reading::{Reading, Value};

const T0: i64 = 1_784_563_200_000_000_000;
const MIN: i64 = 60_000_000_000;
const SITES: usize = 1000;

/// (kind, metric, params) by site number: a district's mix.
fn kind_of(i: usize) -> (&'static str, &'static str, &'static str) {
    match i % 20 {
        0..=11 => ("waterlogging", "water_depth_cm", ""),
        12..=14 => ("rain_gauge", "rain_mm", ""),
        15 | 16 => ("river", "level_m", "params = { warning_level_m = 4.5, guarantee_level_m = 5.2 }\n"),
        17 => (
            "pump_station",
            "forebay_level_m",
            "params = { pumps = 3, pump_capacity_m3s = 1.2, pump_start_level_m = 1.0, flood_control_level_m = 2.6 }\n",
        ),
        _ => ("manhole", "distance_m", "params = { depth_m = 2.6, pipe_crown_m = 1.8 }\n"),
    }
}

/// The value of site `i` at minute `m`: slow waves that cross thresholds now and then.
fn value(i: usize, m: i64) -> f64 {
    let phase = (m as f64 / 180.0 + i as f64 * 0.37).sin();
    match kind_of(i).0 {
        "waterlogging" => (12.0 + 18.0 * phase).max(0.0),
        "rain_gauge" => (0.4 + 0.5 * phase).max(0.0),
        "river" => 4.3 + 0.4 * phase,
        "pump_station" => 1.4 + 0.6 * phase,
        _ => 1.5 - 0.9 * phase,
    }
}

fn plan() -> Arc<Plan> {
    plan_qc(true)
}

/// The bench plan with quality control on or off.
fn plan_qc(qc: bool) -> Arc<Plan> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    // The sample plan, its one per-site override moved to a bench site.
    let mut plan_text =
        std::fs::read_to_string(cfg.join("plan.toml")).unwrap().replace("\"CD-JS-02\"", "\"S0001\"");
    if !qc {
        assert!(plan_text.contains("[qc]\nenabled = true"));
        plan_text = plan_text.replacen("[qc]\nenabled = true", "[qc]\nenabled = false", 1);
    }
    // A bench district has no depots: the cards' materials go.
    let plan_text: String =
        plan_text.lines().filter(|l| !l.starts_with("materials = ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("plan.toml"), plan_text).unwrap();
    // SMS to the log: the team must be reachable for the config to load.
    std::fs::write(dir.path().join("floodguard.toml"), "[channels.sms]\nprovider = \"log\"\n").unwrap();
    let mut sites = String::from("[district]\nid = \"bench\"\nname = \"压测区\"\n");
    for s in 0..10 {
        sites.push_str(&format!("[[streets]]\nid = \"s{s}\"\nname = \"街道{s}\"\n"));
    }
    for i in 0..SITES {
        let (kind, _, params) = kind_of(i);
        sites.push_str(&format!(
            "[[sites]]\nid = \"S{i:04}\"\nname = \"点{i}\"\nkind = \"{kind}\"\ncategory = \"road\"\nstreet = \"s{}\"\n\
             location = {{ lat = 30.6, lon = 114.3 }}\n{params}",
            i % 10
        ));
    }
    std::fs::write(dir.path().join("sites.toml"), sites).unwrap();
    let streets: Vec<String> = (0..10).map(|s| format!("\"s{s}\"")).collect();
    std::fs::write(
        dir.path().join("teams.toml"),
        format!("[[teams]]\nid = \"t\"\nname = \"队\"\nstreets = [{}]\n[[teams.members]]\nname = \"x\"\nrole = \"leader\"\nphone = \"13800000000\"\n", streets.join(",")),
    )
    .unwrap();
    floodguard::config::load_with_env(&dir.path().join("floodguard.toml"), &Default::default())
        .expect("bench config")
        .plan
}

fn readings(minutes: i64) -> Vec<Reading> {
    let ids: Vec<Arc<str>> = (0..SITES).map(|i| Arc::from(format!("S{i:04}"))).collect();
    let metrics: Vec<Arc<str>> = (0..SITES).map(|i| Arc::from(kind_of(i).1)).collect();
    let mut v = Vec::with_capacity(SITES * minutes as usize);
    for m in 0..minutes {
        for i in 0..SITES {
            v.push(Reading {
                site: ids[i].clone(),
                metric: metrics[i].clone(),
                value: Value::Float(value(i, m)),
                ts: T0 + m * MIN + i as i64,
            });
        }
    }
    v
}

fn step(c: &mut Criterion) {
    let rs = readings(120);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(rs.len() as u64));
    for (name, plan) in [("step", plan_qc(true)), ("step, QC off", plan_qc(false))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut state = State::new(&plan, T0);
                let mut n = 0;
                for r in &rs {
                    n +=
                        engine::step(&mut state, &plan, Input::Readings(std::slice::from_ref(r)), r.ts).len();
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let plan = plan();
    let mut text = String::with_capacity(1440 * SITES * 80);
    for r in readings(1440) {
        let Value::Float(v) = r.value else { unreachable!() };
        text.push_str(&format!("telemetry,site={} {}={v} {}\n", r.site, r.metric, r.ts));
    }
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1440 * SITES as u64));
    g.bench_function("24h of 1000 sites (load + run)", |b| {
        b.iter(|| {
            let rec = floodguard::replay::load(text.as_bytes()).unwrap();
            black_box(floodguard::replay::run(&plan, &rec.readings, 30_000_000_000).len())
        })
    });
    g.finish();
}

criterion_group!(benches, step, replay);
criterion_main!(benches);
