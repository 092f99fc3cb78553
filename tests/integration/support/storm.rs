//! A compressed rainstorm over the sample district, published over MQTT with
//! device timestamps spread over the last six hours: rain at the gauges,
//! depths rising past Ⅳ/Ⅲ (one point to Ⅰ), rivers above the warning level,
//! manholes filling, pump stations with rising forebays, pumps starting and
//! one faulting. Topics, site ids and metrics are the sample config's
//! (`flood/{site}/telemetry`, DESIGN.md).
//!
//! Kept in one function so it can give way to `floodguard simulate
//! --scenario rainstorm` once that exists.

use super::publish::Publisher;

/// Steps of the storm: one reading per site every 10 minutes for 6 hours.
pub const STEPS: i64 = 37;
pub const STEP_MS: i64 = 600_000;

/// Linear from `a` (step 0) to `b` (last step), held at `a` before `from`.
fn ramp(k: i64, from: i64, a: f64, b: f64) -> f64 {
    if k <= from {
        return a;
    }
    a + (b - a) * (k - from) as f64 / (STEPS - 1 - from) as f64
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// The payloads of step `k` (0 ..= STEPS-1): `(site, JSON object body without braces)`.
pub fn step(k: i64) -> Vec<(&'static str, String)> {
    let heavy = k >= STEPS / 2;
    let mut out = Vec::new();
    // Rain gauges: increments per 10 minutes. CD-YL-01 reaches 3 h ≥ 100 mm (red),
    // BH-YL-01 3 h ≥ 50 mm (orange).
    let (cd, bh) = if heavy { (6.0, 3.0) } else { (3.0, 1.5) };
    out.push(("CD-YL-01", format!(r#""rain_mm":{cd},"battery_v":3.9"#)));
    out.push(("BH-YL-01", format!(r#""rain_mm":{bh},"battery_v":3.8"#)));
    // Waterlogging points (cm): peaks past Ⅳ/Ⅲ/Ⅱ/Ⅰ.
    for (site, peak) in [
        ("CD-JS-01", 32.0),
        ("CD-JS-02", 28.0),
        ("CD-JS-03", 15.0),
        ("BH-JS-01", 45.0),
        ("BH-JS-02", 12.0),
        ("XC-JS-01", 24.0),
        ("XC-JS-02", 8.0),
    ] {
        let depth = round(ramp(k, 6, 0.0, peak), 1);
        let battery = round(3.7 - 0.004 * k as f64, 3);
        out.push((site, format!(r#""water_depth_cm":{depth},"battery_v":{battery}"#)));
    }
    // Rivers (m): BH-SW-01 above 警戒 4.50 (Ⅲ), XC-SW-01 to 3.30 (Ⅲ).
    let bh = round(ramp(k, 4, 3.80, 4.70), 3);
    let xc = round(ramp(k, 4, 2.50, 3.30), 3);
    out.push(("BH-SW-01", format!(r#""level_m":{bh},"flow_m3s":{}"#, round(bh * 12.0, 1))));
    out.push(("XC-SW-01", format!(r#""level_m":{xc},"flow_m3s":{}"#, round(xc * 5.0, 1))));
    // Manholes: distance from the cover to the water (m), falling.
    out.push(("CD-JC-01", format!(r#""distance_m":{}"#, round(ramp(k, 6, 2.40, 0.80), 3))));
    out.push(("XC-JC-01", format!(r#""distance_m":{}"#, round(ramp(k, 6, 2.40, 1.60), 3))));
    // Pump stations: forebay rises, pumps start by level; BH-BZ-01's third pump
    // faults in the last hour (forebay ≥ 1.80 with a pump faulted → Ⅱ).
    let f = round(ramp(k, 3, 0.80, 2.00), 3);
    let (p1, p2) = (f >= 1.0, f >= 1.4);
    let p3_fault = k >= STEPS - 7;
    let flow = 1.2 * (p1 as u8 + p2 as u8) as f64;
    out.push((
        "BH-BZ-01",
        format!(
            r#""forebay_level_m":{f},"pump1_running":{p1},"pump2_running":{p2},"pump3_running":false,"pump1_fault":false,"pump2_fault":false,"pump3_fault":{p3_fault},"flow_m3s":{flow},"voltage_v":380.0"#
        ),
    ));
    let f = round(ramp(k, 3, 0.60, 1.60), 3);
    let (p1, p2) = (f >= 0.8, f >= 1.2);
    let flow = 1.0 * (p1 as u8 + p2 as u8) as f64;
    out.push((
        "XC-BZ-01",
        format!(
            r#""forebay_level_m":{f},"pump1_running":{p1},"pump2_running":{p2},"pump1_fault":false,"pump2_fault":false,"flow_m3s":{flow},"voltage_v":381.0"#
        ),
    ));
    out
}

/// Publishes the whole storm in time order, the last step stamped `end_ms`;
/// the number of messages published (the caller waits for their PUBACKs).
pub async fn publish(p: &Publisher, end_ms: i64) -> u64 {
    let mut n = 0;
    for k in 0..STEPS {
        let ts = end_ms - (STEPS - 1 - k) * STEP_MS;
        for (site, body) in step(k) {
            p.send(&format!("flood/{site}/telemetry"), format!(r#"{{"ts":{ts},{body}}}"#).into_bytes()).await;
            n += 1;
        }
    }
    n
}
