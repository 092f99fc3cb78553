//! `floodguard simulate`: realistic sensor traffic for a district, over
//! MQTT (rumqttc, QoS1) and/or as line protocol for `replay`.
//!
//! [`model`] computes what each site reports at which *simulated* second,
//! purely from the scenario and the seed. Here those seconds get a
//! timestamp and a wall time to be sent at:
//! - **published to a daemon on the wall clock** (`--broker`, no
//!   `--start`): message `at_s` goes at `now + at_s / speed`, stamped with
//!   that wall time. A compressed storm is then a storm whose weather runs
//!   faster: the daemon's own clocks run unchanged and its rain windows see
//!   the compressed hours as they are (a 6-hour storm in 6 minutes fills
//!   every window at once);
//! - **model time** (`--start T`, or `--output` with no broker: the storm
//!   ends now by default): stamped `T + at_s`, each site at its reporting
//!   interval whatever `--speed` is, so `replay` of the file reads as the
//!   real storm would; with a broker it is still paced by `--speed`;
//! - **storm time** (the demo: [`Options::clock`]): stamped with the
//!   compressed clock's time when sent, which is model time from the
//!   clock's epoch — the daemon on the same clock judges it as the real
//!   storm.

pub mod model;
pub mod sl651;

use std::io::Write;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::config::Site;
use model::{Field, Message, Scenario};

/// What `floodguard simulate` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// `mqtt://host:port`; `None`: only `output`.
    pub broker: Option<String>,
    pub scenario: String,
    /// Simulated length (default: the scenario's).
    pub duration: Option<Duration>,
    /// Simulated seconds per wall second.
    pub speed: f64,
    pub seed: u64,
    /// `load`: synthetic sites and messages per second.
    pub sites: u64,
    pub rate: u64,
    pub output: Option<std::path::PathBuf>,
    pub client_id: String,
    /// Join the scenario this far in (the model still runs from its start).
    pub skip: Duration,
    /// `host:port` of an SL 651 central station: the sites with an
    /// `sl651_station` report there as RTUs, the others over MQTT.
    pub sl651: Option<String>,
    /// The centre address the RTUs send to, and their clocks' zone.
    pub sl651_centre: u8,
    pub timezone: chrono_tz::Tz,
    /// Model time: the storm starts at this time (ms); see the module's doc.
    pub start_ms: Option<i64>,
    /// Storm time: send on this compressed clock, whose epoch is where the
    /// daemon joins the storm (after `skip`); see [`crate::clock`].
    pub clock: Option<crate::clock::Clock>,
    /// The rain as many times as heavy as the scenario's (1: as it is).
    pub rain_scale: f64,
}

/// What was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub messages: u64,
    pub readings: u64,
    /// SL 651 frames sent, and those the central station confirmed.
    pub sl651_frames: u64,
    pub sl651_confirmed: u64,
}

/// How long a scenario runs by default, simulated seconds.
pub fn default_seconds(scenario: Scenario) -> f64 {
    match scenario {
        Scenario::Steady => 3600.0,
        Scenario::Rainstorm => model::STORM_S + 1800.0,
        Scenario::PumpFailure => 5.0 * 3600.0,
    }
}

/// The messages of a scenario for `sites`, with their wall-clock
/// timestamps (ms) from `start_ms` at `speed`.
pub fn timeline(
    scenario: Scenario,
    sites: &[Site],
    seed: u64,
    duration: Option<Duration>,
    speed: f64,
    start_ms: i64,
    skip: Duration,
) -> Vec<(i64, Message)> {
    let secs = duration.map_or(default_seconds(scenario), |d| d.as_secs_f64());
    let skip = skip.as_secs_f64();
    model::generate(scenario, sites, seed, secs)
        .into_iter()
        .filter(|m| m.at_s >= skip)
        .map(|m| (start_ms + ((m.at_s - skip) * 1000.0 / speed).round() as i64, m))
        .collect()
}

/// The messages of a scenario in model time: stamped `origin_ms + at_s`,
/// whatever the speed they are sent at.
pub fn model_timeline(
    scenario: Scenario,
    sites: &[Site],
    seed: u64,
    duration: Option<Duration>,
    origin_ms: i64,
    skip: Duration,
    rain_scale: f64,
) -> Vec<(i64, Message)> {
    let secs = duration.map_or(default_seconds(scenario), |d| d.as_secs_f64());
    let skip = skip.as_secs_f64();
    model::generate_scaled(scenario, sites, seed, secs, rain_scale)
        .into_iter()
        .filter(|m| m.at_s >= skip)
        .map(|m| (origin_ms + (m.at_s * 1000.0).round() as i64, m))
        .collect()
}

/// Each message's timestamp and the wall time (ms) to send it at.
fn schedule(o: &Options, scenario: Scenario, sites: &[Site], now_ms: i64) -> Vec<(i64, i64, Message)> {
    let secs = o.duration.map_or(default_seconds(scenario), |d| d.as_secs_f64());
    let skip_ms = o.skip.as_millis() as i64;
    let only_a_file = o.broker.is_none() && o.sl651.is_none();
    let origin = match (o.clock, o.start_ms) {
        (Some(c), _) => Some(c.epoch_ns() / 1_000_000 - skip_ms),
        (None, Some(start)) => Some(start),
        // A file only: the storm ends now.
        (None, None) if only_a_file => Some(now_ms - (secs * 1000.0).round() as i64),
        (None, None) => None,
    };
    let wall = |at_s: f64| now_ms + ((at_s * 1000.0 - skip_ms as f64) / o.speed).round() as i64;
    match origin {
        Some(origin) => model_timeline(scenario, sites, o.seed, o.duration, origin, o.skip, o.rain_scale)
            .into_iter()
            .map(|(ts, m)| {
                let send_at = match o.clock {
                    Some(c) => c.wall_at(ts * 1_000_000) / 1_000_000,
                    None => wall(m.at_s),
                };
                (ts, send_at, m)
            })
            .collect(),
        None => model::generate_scaled(scenario, sites, o.seed, secs, o.rain_scale)
            .into_iter()
            .filter(|m| m.at_s * 1000.0 >= skip_ms as f64)
            .map(|m| {
                let at = wall(m.at_s);
                (at, at, m)
            })
            .collect(),
    }
}

/// The JSON payload of `flood/{site}/telemetry` for a message at `ts_ms`.
pub fn payload(m: &Message, ts_ms: i64) -> String {
    let mut s = format!("{{\"ts\":{ts_ms}");
    for (k, v) in &m.fields {
        match v {
            Field::Num(x) => s.push_str(&format!(",\"{k}\":{x}")),
            Field::Bool(b) => s.push_str(&format!(",\"{k}\":{b}")),
        }
    }
    s.push('}');
    s
}

/// The line of `telemetry` for a message, as floodguard stores it.
pub fn line(m: &Message, ts_ms: i64) -> String {
    let fields: Vec<String> = m
        .fields
        .iter()
        .map(|(k, v)| match v {
            Field::Num(x) => format!("{k}={x}"),
            Field::Bool(b) => format!("{k}={b}"),
        })
        .collect();
    format!("telemetry,site={} {} {}", m.site, fields.join(","), ts_ms * 1_000_000)
}

/// A connected publisher that counts the broker's PUBACKs.
struct Publisher {
    client: AsyncClient,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn connect(url: &str, id: &str) -> Result<Publisher, String> {
        let hostport =
            url.strip_prefix("mqtt://").ok_or_else(|| format!("--broker {url:?}: use mqtt://host:port"))?;
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| format!("--broker {url:?}: no port"))?;
        let port: u16 = port.parse().map_err(|_| format!("--broker {url:?}: bad port"))?;
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(500);
        let (client, mut ev) = AsyncClient::new(o, 10_000);
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let a = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator: broker connection");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Publisher { client, acked, task })
    }

    async fn send(&self, topic: String, payload: String) -> Result<(), String> {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())
    }

    /// Waits (up to 30 s) for the broker to ack `n` messages.
    async fn drain(self, n: u64) {
        for _ in 0..300 {
            if self.acked.load(std::sync::atomic::Ordering::Relaxed) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// Runs a scenario of the district `sites` until it ends or `stop`.
pub async fn run(o: &Options, sites: &[Site], stop: CancellationToken) -> Result<Summary, String> {
    if o.speed <= 0.0 || !o.speed.is_finite() {
        return Err(format!("--speed {}: must be above 0", o.speed));
    }
    if o.scenario == "load" {
        return run_load(o, stop).await;
    }
    let scenario = Scenario::parse(&o.scenario).ok_or_else(|| {
        format!("--scenario {:?}: one of steady, rainstorm, pump-failure, load", o.scenario)
    })?;
    if !(o.rain_scale.is_finite() && o.rain_scale >= 0.0) {
        return Err(format!("--rain-scale {}: a factor of 0 or more", o.rain_scale));
    }
    let messages = schedule(o, scenario, sites, chrono::Utc::now().timestamp_millis());
    let mut out = match &o.output {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("--output {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let publisher = match &o.broker {
        Some(url) => Some(Publisher::connect(url, &o.client_id)?),
        None => None,
    };
    let mut rtus = match &o.sl651 {
        Some(addr) => {
            let stations: Vec<(String, String, u8)> = sites
                .iter()
                .filter_map(|s| Some((s.id.clone(), s.sl651_station.clone()?, sl651::class_of(s.kind))))
                .collect();
            Some(sl651::Rtus::new(addr, o.sl651_centre, o.timezone, &stations)?)
        }
        None => None,
    };
    let mut sum = Summary::default();
    let mut published = 0u64;
    for (ts_ms, send_at, m) in &messages {
        if let Some(w) = out.as_mut() {
            writeln!(w, "{}", line(m, *ts_ms)).map_err(|e| format!("--output: {e}"))?;
        }
        if let Some(r) = rtus.as_mut().filter(|r| r.has(&m.site)) {
            let wait = *send_at - chrono::Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = stop.cancelled() => break,
                }
            }
            r.take(m, *ts_ms).await?;
        } else if let Some(p) = &publisher {
            let wait = *send_at - chrono::Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = stop.cancelled() => break,
                }
            }
            p.send(format!("flood/{}/telemetry", m.site), payload(m, *ts_ms)).await?;
            published += 1;
        }
        sum.messages += 1;
        sum.readings += m.fields.len() as u64;
    }
    if let Some(mut w) = out {
        w.flush().map_err(|e| format!("--output: {e}"))?;
    }
    if let Some(r) = rtus.as_mut() {
        r.finish().await?;
        sum.sl651_frames = r.sent.frames;
        sum.sl651_confirmed = r.sent.confirmed;
    }
    if let Some(p) = publisher {
        p.drain(published).await;
    }
    Ok(sum)
}

/// `load`: `sites` synthetic sites at `rate` messages a second, in 10 ms
/// slices, for `duration` (default 60 s) or until `stop`.
async fn run_load(o: &Options, stop: CancellationToken) -> Result<Summary, String> {
    let url = o.broker.as_deref().ok_or("--scenario load needs --broker")?;
    let p = Publisher::connect(url, &o.client_id)?;
    let duration = o.duration.unwrap_or(Duration::from_secs(60));
    let per_slice = (o.rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let t0 = tokio::time::Instant::now();
    let mut seq = 0u64;
    while t0.elapsed() < duration && !stop.is_cancelled() {
        tick.tick().await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for _ in 0..per_slice {
            let (site, depth) = model::load_message(seq, o.sites.max(1));
            p.send(
                format!("flood/{site}/telemetry"),
                format!("{{\"ts\":{now_ms},\"water_depth_cm\":{depth}}}"),
            )
            .await?;
            seq += 1;
        }
    }
    p.drain(seq).await;
    Ok(Summary { messages: seq, readings: seq, ..Summary::default() })
}

#[cfg(test)]
mod tests;
