//! The floodguard binary under test, with a config directory of its own:
//! the sample district's sites, plan and teams, and a generated
//! `floodguard.toml` pointing at the test's services.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, http_get, tempdir, Proc};

pub const BIN: &str = env!("CARGO_BIN_EXE_floodguard");

/// The repository's sample configuration.
pub fn sample_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[derive(Clone)]
pub struct Options {
    pub mqtt_url: String,
    /// `(url, "v1"|"v2")`; `None`: spool only.
    pub influx: Option<(String, &'static str)>,
    /// More TOML appended to floodguard.toml (whole sections).
    pub extra: String,
    /// `[mqtt]` keys added to the section.
    pub mqtt_extra: String,
    /// `[influxdb]` keys added to the section.
    pub influx_extra: String,
    /// `[http]` keys added to the section.
    pub http_extra: String,
    /// The `[channels.*]` sections. By default SMS to a loopback port
    /// nobody listens on: the teams are reachable (validation wants that)
    /// and nothing leaves the machine.
    pub channels: String,
    /// A sites.toml and teams.toml of its own instead of the sample district's.
    pub sites_toml: Option<String>,
    pub teams_toml: Option<String>,
    pub plan_toml: Option<String>,
    /// materials.toml: the sample district's by default; `Some("")` for
    /// none (a district of other streets, with a plan naming no materials).
    pub materials_toml: Option<String>,
    /// The binary to run (the test build's by default).
    pub bin: String,
    /// Environment variables for the daemon (test hooks).
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn new(mqtt_url: String) -> Self {
        Options {
            mqtt_url,
            influx: None,
            extra: String::new(),
            mqtt_extra: String::new(),
            influx_extra: String::new(),
            http_extra: String::new(),
            channels: "[channels.sms]\nprovider = \"http\"\nurl = \"http://127.0.0.1:9/sms\"\n\
                       fields = { mobile = \"{phone}\", content = \"{text}\" }\n"
                .into(),
            sites_toml: None,
            teams_toml: None,
            plan_toml: None,
            materials_toml: None,
            // FLOODGUARD_TEST_BIN: run the tests against another build (the release one).
            bin: std::env::var("FLOODGUARD_TEST_BIN").unwrap_or_else(|_| BIN.to_string()),
            env: Vec::new(),
        }
    }
    pub fn influx(mut self, url: String, api: &'static str) -> Self {
        self.influx = Some((url, api));
        self
    }
}

pub struct Floodguard {
    bin: String,
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub client_id: String,
    proc: Option<Proc>,
    starts: u32,
}

impl Floodguard {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/floodguard.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// Writes the config and starts the daemon (not waiting for it).
    pub fn start(o: Options) -> Floodguard {
        let dir = tempdir("floodguard-");
        let cfg = dir.path().join("config");
        std::fs::create_dir_all(&cfg).unwrap();
        for f in ["sites.toml", "plan.toml", "teams.toml", "materials.toml"] {
            std::fs::copy(sample_config_dir().join(f), cfg.join(f)).unwrap();
        }
        if let Some(sites) = &o.sites_toml {
            std::fs::write(cfg.join("sites.toml"), sites).unwrap();
        }
        if let Some(teams) = &o.teams_toml {
            std::fs::write(cfg.join("teams.toml"), teams).unwrap();
        }
        if let Some(plan) = &o.plan_toml {
            std::fs::write(cfg.join("plan.toml"), plan).unwrap();
        }
        if let Some(materials) = &o.materials_toml {
            std::fs::write(cfg.join("materials.toml"), materials).unwrap();
        }
        let http_port = free_port();
        let client_id = format!("fg-test-{}-{http_port}", std::process::id());
        let influx = match &o.influx {
            Some((url, api)) => format!(
                "url = \"{url}\"\napi = \"{api}\"\ndatabase = \"flood\"\norg = \"flood\"\nbucket = \"flood\"\n\
                 batch_size = 2000\nflush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"1s\"\n\
                 max_lag = \"5s\"\ntimeout = \"3s\"\n"
            ),
            None => "url = \"\"\n".to_string(),
        };
        let toml = format!(
            "[daemon]\ndata_dir = \"{data}\"\nshutdown_timeout = \"10s\"\n\n\
             [log]\nlevel = \"info\"\n\n\
             [mqtt]\nurl = \"{mqtt}\"\nclient_id = \"{client_id}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n{mqtt_extra}\n\
             [influxdb]\n{influx}{influx_extra}\n\
             [spool]\nfsync_interval = \"200ms\"\n# Not the default (10 % of the filesystem left free): the tests\n# must not depend on what else fills this machine's disk.\nmax_bytes = 8589934592\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{http_extra}\n{channels}\n{extra}",
            channels = o.channels,
            data = dir.path().join("var").display(),
            mqtt = o.mqtt_url,
            mqtt_extra = o.mqtt_extra,
            influx_extra = o.influx_extra,
            http_extra = o.http_extra,
            extra = o.extra,
        );
        std::fs::write(cfg.join("floodguard.toml"), toml).unwrap();
        let mut fg = Floodguard {
            bin: o.bin.clone(),
            env: o.env.clone(),
            dir,
            http_port,
            client_id,
            proc: None,
            starts: 0,
        };
        fg.spawn();
        fg
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("floodguard-{}.log", self.starts));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run").arg("-c").arg(self.config_path()).env("RUST_LOG", "info").env("NO_COLOR", "1");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn("floodguard", &mut cmd, &log));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Waits until HTTP answers and the broker connection is up.
    pub async fn wait_connected(&self) {
        let start = std::time::Instant::now();
        while self.metric("floodguard_mqtt_connected").await != Some(1.0) {
            if start.elapsed() > Duration::from_secs(30) {
                panic!("floodguard did not connect to the broker within 30 s; its log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn metrics(&self) -> Option<String> {
        match http_get(&self.url("/metrics")).await {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// The value of one sample line, e.g. `floodguard_decode_errors_total{cause="oversize"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    pub async fn readyz(&self) -> Option<(u16, serde_json::Value)> {
        let (code, body) = http_get(&self.url("/readyz")).await?;
        Some((code, serde_json::from_str(&body).ok()?))
    }

    /// Sends a signal (`"HUP"`, `"TERM"` …) to the daemon.
    pub fn signal(&self, sig: &str) {
        if let Some(p) = self.proc.as_ref() {
            p.signal(sig);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill();
        }
    }

    /// SIGTERM; the exit code once it stopped.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let p = self.proc.as_mut()?;
        p.signal("TERM");
        p.wait_exit(timeout)
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts again after a stop, on the same config and data.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("floodguard-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}
