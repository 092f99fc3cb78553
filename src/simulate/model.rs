//! The scenarios as pure functions of a seed: what each site of a district
//! reports, at which simulated second. No clock, no I/O — `publish.rs`
//! turns simulated seconds into wall time and MQTT messages.
//!
//! The storm is a small water balance per site, stepped every simulated
//! minute: rain intensity rises and falls over six hours; each
//! waterlogging point fills from the rain it drains (with its own lag and
//! catchment) and empties at its own drainage rate; pump-station forebays
//! fill from their catchment and are emptied by the pumps that run (pumps
//! start and stop on forebay level); manholes fill as the sewer surcharges;
//! rivers rise after the rain with a longer lag. Sensor noise is added to
//! what is reported, never to the state.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Kind, Site};

/// One message: the site, the simulated second, the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub at_s: f64,
    pub site: String,
    pub fields: Vec<(String, Field)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Dry weather: 15-minute reports.
    Steady,
    /// A six-hour storm over the district.
    Rainstorm,
    /// Moderate rain while a pump station loses its pumps one by one.
    PumpFailure,
}

impl Scenario {
    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "steady" => Some(Scenario::Steady),
            "rainstorm" => Some(Scenario::Rainstorm),
            "pump-failure" => Some(Scenario::PumpFailure),
            _ => None,
        }
    }
}

/// What happens during a rainstorm, in simulated seconds.
pub const STORM_S: f64 = 6.0 * 3600.0;
/// When 滨河 pump 2 faults (mid-storm).
pub const PUMP_FAULT_S: f64 = 2.5 * 3600.0;
/// When the silent gauge stops reporting.
pub const SILENT_AFTER_S: f64 = 3.0 * 3600.0;

/// Rain intensity in mm/h at simulated second `t` of `scenario`.
pub fn intensity(scenario: Scenario, t: f64) -> f64 {
    let h = t / 3600.0;
    match scenario {
        Scenario::Steady => 0.0,
        // A skewed bell peaking at 55 mm/h around 2 h 15 min: ≈ 150 mm in
        // 6 h, 100+ mm in the wettest 3 h (CMA Ⅰ), as in a 7·21-type storm.
        Scenario::Rainstorm => {
            if h <= 0.0 || h >= 6.0 {
                0.0
            } else {
                let x = h / 2.25;
                55.0 * (x * (1.0 - x).exp()).powf(2.2)
            }
        }
        // Steady moderate rain, 20 mm/h for four hours.
        Scenario::PumpFailure => {
            if (0.25..4.25).contains(&h) {
                20.0
            } else {
                0.0
            }
        }
    }
}

/// The simulated state of one site.
#[derive(Debug, Clone)]
struct SiteSim {
    site: Site,
    /// Catchment factor and drainage (cm/min) of a waterlogging point.
    gain: f64,
    drain: f64,
    lag_min: usize,
    /// Water depth (cm), forebay or river level (m), manhole water above the pipe invert (m).
    level: f64,
    rain_total: f64,
    /// Pump station: pumps installed, running flags, faulted flags.
    running: Vec<bool>,
    faulted: Vec<bool>,
    report_every_min: usize,
    phase_min: usize,
    silent_after_s: Option<f64>,
}

fn param(site: &Site, name: &str, default: f64) -> f64 {
    site.params.get(name).copied().unwrap_or(default)
}

/// Every message of `scenario` over `duration_s` simulated seconds for
/// `sites`, in time order. The same seed gives the same messages.
pub fn generate(scenario: Scenario, sites: &[Site], seed: u64, duration_s: f64) -> Vec<Message> {
    generate_scaled(scenario, sites, seed, duration_s, 1.0)
}

/// [`generate`] with the rain `rain_scale` times as heavy (0.6: a weaker
/// storm of the same shape over the same district, the same seed's sites).
pub fn generate_scaled(
    scenario: Scenario,
    sites: &[Site],
    seed: u64,
    duration_s: f64,
    rain_scale: f64,
) -> Vec<Message> {
    let mut rng = StdRng::seed_from_u64(seed);
    let storm = scenario != Scenario::Steady;
    let mut sims: Vec<SiteSim> = sites
        .iter()
        .map(|s| {
            let pumps = param(s, "pumps", 2.0) as usize;
            SiteSim {
                site: s.clone(),
                gain: rng.random_range(0.55..1.1),
                drain: rng.random_range(0.12..0.3),
                lag_min: rng.random_range(5..25),
                level: match s.kind {
                    Kind::River => param(s, "warning_level_m", 3.0) - 1.2,
                    Kind::PumpStation => param(s, "pump_start_level_m", 1.0) * 0.6,
                    _ => 0.0,
                },
                rain_total: 0.0,
                running: vec![false; pumps],
                faulted: vec![false; pumps],
                report_every_min: match (s.kind, storm) {
                    (_, false) => 15,
                    (Kind::PumpStation, true) => 1,
                    (Kind::RainGauge, true) => 5,
                    (_, true) => 1,
                },
                phase_min: rng.random_range(0..5),
                silent_after_s: None,
            }
        })
        .collect();
    // One rain gauge goes silent in a storm (the last one).
    if scenario == Scenario::Rainstorm {
        if let Some(g) = sims.iter_mut().rev().find(|s| s.site.kind == Kind::RainGauge) {
            g.silent_after_s = Some(SILENT_AFTER_S);
        }
    }
    let minutes = (duration_s / 60.0).ceil() as usize;
    let rain_min: Vec<f64> =
        (0..minutes + 60).map(|m| intensity(scenario, m as f64 * 60.0) * rain_scale / 60.0).collect();
    let mut out = Vec::new();
    for m in 0..minutes {
        let t = m as f64 * 60.0;
        let fail_pumps = |sim: &mut SiteSim| match scenario {
            Scenario::Rainstorm if sim.site.id.starts_with("BH-BZ") && t >= PUMP_FAULT_S => {
                if let Some(f) = sim.faulted.get_mut(1) {
                    *f = true;
                }
            }
            Scenario::PumpFailure if sim.site.kind == Kind::PumpStation => {
                // One pump lost every 40 minutes from the first hour.
                let lost = ((t - 3600.0) / 2400.0).floor().max(-1.0) + 1.0;
                for (i, f) in sim.faulted.iter_mut().enumerate() {
                    *f = (i as f64) < lost;
                }
            }
            _ => {}
        };
        for sim in &mut sims {
            let lagged = |lag: usize| if m >= lag { rain_min[m - lag] } else { 0.0 };
            let rain_now = rain_min[m];
            sim.rain_total += rain_now;
            match sim.site.kind {
                Kind::Waterlogging => {
                    // mm of rain over the catchment → cm of water at the low point.
                    // Drains in proportion to the depth, plus a trickle.
                    let inflow = lagged(sim.lag_min) * sim.gain * 1.6;
                    sim.level = (sim.level + inflow - sim.level * sim.drain * 0.15 - 0.1).max(0.0);
                }
                Kind::Manhole => {
                    let depth = param(&sim.site, "depth_m", 2.5);
                    let inflow = lagged(sim.lag_min / 2) * sim.gain * 0.09;
                    sim.level = (sim.level + inflow - sim.level * 0.05).clamp(0.0, depth);
                }
                Kind::River => {
                    let base = param(&sim.site, "warning_level_m", 3.0) - 1.2;
                    let inflow = lagged(60 + sim.lag_min) * 0.045 * sim.gain;
                    sim.level = (sim.level + inflow - (sim.level - base).max(0.0) * 0.004).max(base);
                }
                Kind::PumpStation => {
                    fail_pumps(sim);
                    let start = param(&sim.site, "pump_start_level_m", 1.0);
                    let cap = param(&sim.site, "pump_capacity_m3s", 1.0);
                    let inflow = lagged(sim.lag_min) * 0.11 * sim.gain + 0.002;
                    // Pumps start one by one as the forebay rises past the
                    // start level, stop below it; faulted ones do not run.
                    let wanted = if sim.level < start * 0.9 {
                        0
                    } else {
                        1 + ((sim.level - start) / 0.3).max(0.0) as usize
                    };
                    let mut n = 0;
                    for i in 0..sim.running.len() {
                        let ok = !sim.faulted[i] && n < wanted;
                        sim.running[i] = ok;
                        n += ok as usize;
                    }
                    let out_flow = n as f64 * cap * 0.03;
                    // Past the flood-control level the forebay spills.
                    let top = param(&sim.site, "flood_control_level_m", 2.5) + 0.4;
                    sim.level = (sim.level + inflow - out_flow).clamp(start * 0.5, top);
                }
                Kind::RainGauge => {}
            }
            if (m + sim.phase_min) % sim.report_every_min != 0 {
                continue;
            }
            if sim.silent_after_s.is_some_and(|s| t >= s) {
                continue;
            }
            let mut noise =
                |sd: f64| (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5) * sd;
            let mut fields: Vec<(String, Field)> = Vec::new();
            match sim.site.kind {
                Kind::Waterlogging => {
                    let v = if sim.level > 0.5 { (sim.level + noise(0.4)).max(0.0) } else { 0.0 };
                    fields.push(("water_depth_cm".into(), Field::Num(round(v, 1))));
                }
                Kind::RainGauge => {
                    // Tipping-bucket increments over the report interval, 0.1 mm a tip.
                    let from = m.saturating_sub(sim.report_every_min - 1);
                    let inc: f64 = (from..=m).map(|k| rain_min[k]).sum::<f64>() * sim.gain.max(0.8);
                    fields.push(("rain_mm".into(), Field::Num(round(inc, 1))));
                }
                Kind::River => {
                    fields.push(("level_m".into(), Field::Num(round(sim.level + noise(0.01), 2))));
                }
                Kind::Manhole => {
                    let depth = param(&sim.site, "depth_m", 2.5);
                    let dist = (depth - sim.level + noise(0.02)).clamp(0.0, depth);
                    fields.push(("distance_m".into(), Field::Num(round(dist, 2))));
                }
                Kind::PumpStation => {
                    fields.push(("forebay_level_m".into(), Field::Num(round(sim.level + noise(0.01), 2))));
                    for (i, (r, f)) in sim.running.iter().zip(&sim.faulted).enumerate() {
                        fields.push((format!("pump{}_running", i + 1), Field::Bool(*r)));
                        fields.push((format!("pump{}_fault", i + 1), Field::Bool(*f)));
                    }
                }
            }
            if sim.site.kind != Kind::PumpStation && m % 60 == sim.phase_min {
                fields.push(("battery_v".into(), Field::Num(round(3.6 + noise(0.02), 2))));
            }
            out.push(Message { at_s: t + sim.phase_min as f64, site: sim.site.id.clone(), fields });
        }
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    out
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Message `seq` of the `load` scenario over `sites` synthetic sites:
/// waterlogging points `L-000000`… reporting shallow water.
pub fn load_message(seq: u64, sites: u64) -> (String, f64) {
    let site = format!("L-{:06}", seq % sites);
    let depth = ((seq / sites) % 8) as f64 + 0.5;
    (site, depth)
}

/// A sites.toml for `load` with `sites` synthetic waterlogging points in
/// streets of 100.
pub fn load_sites_toml(sites: u64) -> String {
    let streets = sites.div_ceil(100).max(1);
    let mut s = String::from("[district]\nid = \"load\"\nname = \"压测区\"\n\n");
    for i in 0..streets {
        s.push_str(&format!("[[streets]]\nid = \"L{i}\"\nname = \"压测街道{i}\"\n\n"));
    }
    for i in 0..sites {
        s.push_str(&format!(
            "[[sites]]\nid = \"L-{i:06}\"\nname = \"压测点{i}\"\nkind = \"waterlogging\"\ncategory = \"road\"\n\
             street = \"L{}\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n\n",
            i / 100
        ));
    }
    s
}
