//! `floodguard demo`: the whole product with nothing installed — an MQTT
//! broker in the process (rumqttd) on a free loopback port, the sample
//! district's configuration embedded in the binary, the daemon on it with
//! spool-only storage and SMS written to the log (the outbox still records
//! each message, so the page and `/api/v1/notifications` show them), and
//! the `rainstorm` simulator. Ctrl-C stops it all.
//!
//! The demo runs in storm time: the daemon and the simulator share one
//! compressed clock ([`crate::clock`], `--speed` storm seconds a wall
//! second from the demo's start), so the 6-hour storm at 60× takes six
//! minutes and looks as the real one would — rain levels build over their
//! windows and fall as the windows slide past the peak, the gauge that
//! goes silent goes offline after its `stale_after` / 60, unacknowledged
//! alerts escalate at their plan times / 60.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FLOODGUARD_TOML: &str = include_str!("../config/floodguard.toml");
const SITES_TOML: &str = include_str!("../config/sites.toml");
const PLAN_TOML: &str = include_str!("../config/plan.toml");
const TEAMS_TOML: &str = include_str!("../config/teams.toml");
const MATERIALS_TOML: &str = include_str!("../config/materials.toml");

/// The demo starts with the storm: every rain window holds all the rain
/// that fell, as a real gauge's would.
const JOIN_AT: Duration = Duration::ZERO;

/// The demo's secrets, fresh at every start (a fixed one would be a
/// shipped example, which `run` refuses): the API token is printed.
pub struct DemoSecrets {
    pub api_token: String,
    pub ack_secret: String,
}

impl DemoSecrets {
    pub fn fresh() -> Self {
        DemoSecrets {
            api_token: crate::config::generate_secret(),
            ack_secret: crate::config::generate_secret(),
        }
    }
}

/// The sample floodguard.toml, pointed at the demo's broker, storage,
/// address and data directory, notifications to the log.
pub fn demo_config(mqtt_port: u16, http: &str, data_dir: &Path, secrets: &DemoSecrets) -> String {
    let mut t = FLOODGUARD_TOML.to_string();
    let channels = t.find("# Notifications.").unwrap_or(t.len());
    t.truncate(channels);
    let swap = |t: String, from: &str, to: &str| {
        debug_assert!(t.contains(from), "config/floodguard.toml lacks {from:?}");
        t.replacen(from, to, 1)
    };
    t = swap(t, "url = \"mqtt://127.0.0.1:1883\"", &format!("url = \"mqtt://127.0.0.1:{mqtt_port}\""));
    t = swap(t, "client_id = \"floodguard\"", "client_id = \"floodguard-demo\"");
    // The embedded broker (rumqttd) listens for MQTT 3.1.1.
    t = swap(t, "protocol = \"5\"", "protocol = \"3.1.1\"");
    // A throwaway spool in a temporary directory: a limit of its own, not
    // the service's "leave 10 % of the disk free", which a laptop's or a
    // shared machine's disk may already be past.
    t = swap(t, "# max_bytes = 10737418240 ", "max_bytes = 1073741824    ");
    t = swap(t, "url = \"http://127.0.0.1:8086\"", "url = \"\"");
    t = swap(
        t,
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"{http}\"\napi_token = \"{}\"", secrets.api_token),
    );
    t = swap(t, "data_dir = \"var\"", &format!("data_dir = {:?}", data_dir.display().to_string()));
    t.push_str(&format!(
        "# demo: every SMS is written to the log and recorded in the outbox.\n\
         [channels.sms]\nprovider = \"log\"\nbudget = []\n\n\
         [channels.ack]\nbase_url = \"http://{http}\"\nttl = \"24h\"\nsecret = \"{}\"\n",
        secrets.ack_secret
    ));
    t
}

/// Writes the embedded sample configuration for the demo under `dir`.
pub fn write_config(
    dir: &Path,
    mqtt_port: u16,
    http: &str,
    secrets: &DemoSecrets,
) -> std::io::Result<PathBuf> {
    let cfg = dir.join("config");
    std::fs::create_dir_all(&cfg)?;
    std::fs::write(cfg.join("floodguard.toml"), demo_config(mqtt_port, http, &dir.join("var"), secrets))?;
    std::fs::write(cfg.join("sites.toml"), SITES_TOML)?;
    std::fs::write(cfg.join("plan.toml"), PLAN_TOML)?;
    std::fs::write(cfg.join("teams.toml"), TEAMS_TOML)?;
    std::fs::write(cfg.join("materials.toml"), MATERIALS_TOML)?;
    Ok(cfg.join("floodguard.toml"))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts rumqttd on `127.0.0.1:port` in its own threads. rumqttd has no
/// shutdown: it ends with the process.
fn start_broker(port: u16) {
    let server = rumqttd::ServerSettings {
        name: "demo".into(),
        listen: ([127, 0, 0, 1], port).into(),
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 500,
            max_segment_size: 16 << 20,
            max_segment_count: 8,
            ..Default::default()
        },
        v4: Some(HashMap::from([("demo".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = rumqttd::Broker::new(config).start() {
                tracing::error!(error = %e, "the demo's MQTT broker stopped");
            }
        })
        .expect("a thread for the broker");
}

async fn wait_listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 10 s) until the daemon says it is ready: its MQTT
/// subscription is up.
async fn wait_ready(http: &str) {
    let url = format!("http://{http}/readyz");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ctrl_c(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    stop.cancel();
}

/// `floodguard demo --http ADDR --speed X --seed S`.
pub fn main(http: &str, speed: f64, seed: u64) -> ExitCode {
    if http.parse::<std::net::SocketAddr>().is_err() {
        eprintln!("--http {http:?}: an address like 127.0.0.1:8080");
        return ExitCode::from(2);
    }
    let dir = std::env::temp_dir().join(format!("floodguard-demo-{}", std::process::id()));
    let run = || -> Result<(), String> {
        let mqtt_port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let secrets = DemoSecrets::fresh();
        let token = secrets.api_token.clone();
        let main =
            write_config(&dir, mqtt_port, http, &secrets).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = crate::config::load(&main).map_err(|e| e.to_string())?;
        let mut log = config.daemon.log.clone();
        log.level = format!("{},rumqttd=warn", log.level);
        crate::logging::init(&log);
        let sites = config.sites.sites.clone();
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let shown = dir.display().to_string();
        let result = rt.block_on(async move {
            start_broker(mqtt_port);
            wait_listening(mqtt_port).await;
            let stop = CancellationToken::new();
            tokio::spawn(ctrl_c(stop.clone()));
            let Some(clock) = crate::clock::Clock::compressed(crate::clock::wall_ns(), speed) else {
                return Err(format!("--speed {speed}: must be above 0"));
            };
            let daemon = tokio::spawn(crate::daemon::run_on(config, stop.clone(), clock));
            let minutes = (crate::simulate::model::STORM_S - JOIN_AT.as_secs_f64()) / 60.0 / speed;
            println!();
            println!("  floodguard demo — 某区 (sample district), a 6-hour rainstorm in storm time at {speed}×, over in {minutes:.1} min");
            println!("  live page:  http://{http}/");
            println!("  API:        http://{http}/api/v1/sites · /api/v1/alerts · /api/v1/notifications");
            println!("  token:      {token}");
            println!("              (ack and dispose from the page, or POST with Authorization: Bearer <token>)");
            println!("  MQTT:       mqtt://127.0.0.1:{mqtt_port}   data: {shown}");
            println!("  SMS go to this log (provider \"log\"); Ctrl-C stops everything.");
            println!("  readiness:  floodguard report --kind readiness -c {shown}/config/floodguard.toml   (汛前准备情况)");
            println!();
            let o = crate::simulate::Options {
                broker: Some(format!("mqtt://127.0.0.1:{mqtt_port}")),
                scenario: "rainstorm".into(),
                duration: None,
                speed,
                seed,
                sites: 0,
                rate: 0,
                output: None,
                client_id: "floodguard-demo-simulator".into(),
                skip: JOIN_AT,
                // The demo compresses the storm (an hour a minute): SL 651
                // observation times are whole minutes, so all goes over MQTT.
                sl651: None,
                sl651_centre: 1,
                timezone: chrono_tz::Asia::Shanghai,
                start_ms: None,
                clock: Some(clock),
                rain_scale: 1.0,
            };
            // The daemon subscribed before the first reading goes (a reading
            // published late still carries its storm time).
            wait_ready(http).await;
            let sim_stop = stop.clone();
            let simulator = tokio::spawn(async move { crate::simulate::run(&o, &sites, sim_stop).await });
            tokio::select! {
                r = simulator => match r {
                    Ok(Ok(s)) => tracing::info!(messages = s.messages, "the storm is over; Ctrl-C stops the demo"),
                    Ok(Err(e)) => tracing::error!(error = %e, "simulator"),
                    Err(e) => tracing::error!(error = %e, "simulator"),
                },
                _ = stop.cancelled() => {}
            }
            stop.cancelled().await;
            match daemon.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        rt.shutdown_timeout(Duration::from_millis(200));
        result
    };
    let result = run();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floodguard demo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_the_sample_on_the_demo_broker_with_sms_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let main = write_config(dir.path(), 18830, "127.0.0.1:18080", &DemoSecrets::fresh()).unwrap();
        let c = crate::config::load_with_env(&main, &HashMap::new()).unwrap();
        assert_eq!(c.daemon.mqtt.url, "mqtt://127.0.0.1:18830");
        assert_eq!(c.daemon.influxdb.url, "", "spool only");
        assert_eq!(c.daemon.http.listen, "127.0.0.1:18080");
        assert_eq!(c.data_dir(), dir.path().join("var"));
        let sms = c.daemon.channels.sms.as_ref().unwrap();
        assert_eq!(sms.provider, crate::config::SmsProvider::Log);
        assert!(c.daemon.channels.email.is_none());
        assert_eq!(c.sites.sites.len(), 15);
        assert_eq!(c.daemon.mqtt.protocol, crate::config::MqttProtocol::V311, "rumqttd speaks 3.1.1");
        assert_eq!(c.daemon.spool.max_bytes, Some(1 << 30), "a limit of its own, whatever the disk");
    }
}
