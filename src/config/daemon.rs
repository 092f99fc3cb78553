//! `floodguard.toml`: the daemon's own sections — `[daemon]`, `[log]`,
//! `[mqtt]`, `[influxdb]`, `[spool]`, `[http]`, `[channels.*]`.
//!
//! Every section has defaults, so a file with only the keys an operator wants
//! to change is complete. The connection keys are the contract of DESIGN.md;
//! environment variables override them as `FLOODGUARD__SECTION__KEY`.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::{HumanDuration, Secret};

/// The whole of `floodguard.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    pub daemon: DaemonSection,
    pub log: LogSection,
    pub mqtt: MqttSection,
    pub influxdb: InfluxSection,
    pub spool: SpoolSection,
    pub http: HttpSection,
    pub channels: ChannelsSection,
}

string_enum! {
    /// Language of user-facing text (SMS, email, the live page).
    #[derive(Default)]
    pub enum Language ("language") {
        #[default]
        ZhCn = "zh-CN",
        En = "en",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DaemonSection {
    /// Spool segments, the writer's cursor, rejected batches, SQLite state.
    pub data_dir: PathBuf,
    /// IANA time zone in which times are shown to people.
    pub timezone: String,
    pub language: Language,
    /// On SIGTERM: how long the writer may keep flushing the spool to InfluxDB.
    pub shutdown_timeout: HumanDuration,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            data_dir: PathBuf::from("var"),
            timezone: "Asia/Shanghai".into(),
            language: Language::ZhCn,
            shutdown_timeout: HumanDuration::secs(10),
        }
    }
}

string_enum! {
    #[derive(Default)]
    pub enum LogFormat ("log format") {
        #[default]
        Text = "text",
        Json = "json",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter: `info`, `floodguard=debug,rumqttc=warn`. `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MqttSection {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Stable client id: with `clean_session = false` the broker keeps our
    /// subscriptions and queued messages across reconnects under this id.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of the CA that signed the broker's certificate (mqtts). Without
    /// it the system's trust store is used.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require client auth.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub keep_alive: HumanDuration,
    /// Largest MQTT packet we accept from the broker. Must exceed
    /// `max_payload` by far, so an oversized message is received, counted and
    /// dropped rather than failing the connection and coming back forever.
    pub max_packet_size: usize,
    /// Larger payloads are counted as `oversize` and dropped.
    pub max_payload: usize,
    /// Reconnect backoff: first delay and cap (full jitter in between).
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
    /// Device timestamps further ahead of the receive time are refused.
    pub max_future: HumanDuration,
    /// Subscribe to `flood/+/telemetry` and `flood/+/status` (DESIGN.md's topics).
    pub default_topics: bool,
    /// Topic mappings for devices that publish elsewhere or otherwise.
    pub mappings: Vec<MappingConfig>,
}

impl Default for MqttSection {
    fn default() -> Self {
        MqttSection {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "floodguard".into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: HumanDuration::secs(30),
            max_packet_size: 16 * 1024 * 1024,
            max_payload: 64 * 1024,
            reconnect_min: HumanDuration::millis(200),
            reconnect_max: HumanDuration::secs(30),
            max_future: HumanDuration::secs(300),
            default_topics: true,
            mappings: Vec::new(),
        }
    }
}

string_enum! {
    /// How the payload of a mapped topic is read.
    pub enum PayloadFormat ("payload format") {
        /// A JSON object; `fields` say which paths hold which metrics.
        Json = "json",
        /// The payload is one number in text (`"12.5"`): `metric` names it.
        Number = "number",
    }
}

/// `[[mqtt.mappings]]`: an existing device's topic and payload, mapped onto
/// floodguard's readings.
#[derive(Debug, Clone, Deserialize)]
pub struct MappingConfig {
    /// MQTT topic filter, with `+` and `#` wildcards: `legacy/+/depth`.
    pub filter: String,
    /// 0-based index of the topic segment that holds the site id.
    pub site_segment: usize,
    pub payload: PayloadFormat,
    /// For `payload = "number"`: the metric name of the number.
    pub metric: Option<String>,
    /// For `payload = "number"`: factor applied to the number (`100` for m → cm).
    pub scale: Option<f64>,
    /// For `payload = "json"`: which field paths hold which metrics.
    #[serde(default)]
    pub fields: Vec<FieldMapping>,
    /// For `payload = "json"`: the path of the timestamp (RFC 3339 or epoch ms).
    pub ts_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldMapping {
    /// Dotted path into the JSON object: `data.depth`, `pumps.0.running`.
    pub path: String,
    pub metric: String,
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

string_enum! {
    #[derive(Default)]
    pub enum InfluxApi ("InfluxDB API") {
        /// `/write?db=&rp=` — InfluxDB 1.x and the v1 compatibility API of 2.x/3.x.
        V1 = "v1",
        /// `/api/v2/write?org=&bucket=` with a token — InfluxDB 2.x, 3.x, Cloud.
        #[default]
        V2 = "v2",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct InfluxSection {
    /// Empty: spool only, nothing is sent.
    pub url: String,
    pub api: InfluxApi,
    pub org: String,
    pub bucket: String,
    pub token: Secret,
    pub database: String,
    pub retention_policy: String,
    pub username: String,
    pub password: Secret,
    /// With `api = "v1"`: `CREATE DATABASE` at start and when a write says the
    /// database is missing (as Telegraf does).
    pub create_database: bool,
    /// Points per request.
    pub batch_size: usize,
    /// A partial batch is sent at the latest this long after its first point.
    pub flush_interval: HumanDuration,
    pub timeout: HumanDuration,
    pub gzip: bool,
    /// Retry backoff: first delay and cap (full jitter in between).
    pub retry_min: HumanDuration,
    pub retry_max: HumanDuration,
    /// `/readyz` fails when the oldest unwritten reading is older than this.
    pub max_lag: HumanDuration,
}

impl Default for InfluxSection {
    fn default() -> Self {
        InfluxSection {
            url: "http://127.0.0.1:8086".into(),
            api: InfluxApi::V2,
            org: "flood".into(),
            bucket: "flood".into(),
            token: Secret::default(),
            database: "flood".into(),
            retention_policy: String::new(),
            username: String::new(),
            password: Secret::default(),
            create_database: true,
            batch_size: 5000,
            flush_interval: HumanDuration::secs(1),
            timeout: HumanDuration::secs(10),
            gzip: true,
            retry_min: HumanDuration::millis(200),
            retry_max: HumanDuration::secs(30),
            max_lag: HumanDuration::secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SpoolSection {
    /// How often written records are forced to disk. A record is acked to the
    /// broker once written (it then survives a crash of the process); this
    /// bounds what a power failure can take. `"0s"`: fsync before every ack.
    pub fsync_interval: HumanDuration,
    /// A segment file is closed and a new one started past this size.
    pub segment_size: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            fsync_interval: HumanDuration::millis(200),
            segment_size: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSection {
    pub listen: String,
    /// Bearer token for write endpoints; set it through the environment.
    pub api_token: Secret,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
            api_token: Secret::default(),
            max_body: 64 * 1024,
        }
    }
}

/// `[channels.*]`: how notifications leave floodguard.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChannelsSection {
    pub email: Option<EmailChannel>,
    pub sms: Option<SmsChannel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailChannel {
    /// `smtp://host:25`, `smtps://user:pass@host:465`, `smtp://host:587?tls=required`.
    pub smtp_url: String,
    pub from: String,
}

string_enum! {
    pub enum SmsProvider ("SMS provider") {
        Http = "http",
        Aliyun = "aliyun",
        Tencent = "tencent",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmsChannel {
    pub provider: SmsProvider,
    /// For `provider = "http"`: where requests go.
    pub url: Option<String>,
}

/// Where the broker is, parsed from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttSection {
    /// Parses `mqtt://host:port` / `mqtts://host:port` (also `tcp://`, `ssl://`).
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| format!("{:?} is not a URL like mqtt://host:1883", self.url))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(format!("scheme {other:?} is not mqtt:// or mqtts://")),
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(
                "put credentials in mqtt.username and mqtt.password, not in the URL".into(),
            );
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("port {p:?} is not a number"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    port,
                )
            }
            _ => (authority.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("{:?} has no host", self.url));
        }
        Ok(BrokerAddr { host, port, tls })
    }
}

fn valid_metric(name: &str) -> bool {
    crate::reading::is_valid_metric(name)
}

/// Semantic checks of `floodguard.toml`; each problem as `(key path, reason)`.
pub fn validate(c: &DaemonConfig) -> Vec<(String, String)> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |k: &str, r: String| errs.push((k.to_string(), r));

    if c.daemon.timezone.parse::<chrono_tz::Tz>().is_err() {
        err(
            "daemon.timezone",
            format!(
                "unknown time zone {:?} (e.g. \"Asia/Shanghai\")",
                c.daemon.timezone
            ),
        );
    }
    if c.daemon.data_dir.as_os_str().is_empty() {
        err("daemon.data_dir", "must not be empty".into());
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        err(
            "log.level",
            format!("invalid filter {:?}: {e}", c.log.level),
        );
    }

    let m = &c.mqtt;
    let broker = m.broker();
    if let Err(e) = &broker {
        err("mqtt.url", e.clone());
    }
    if m.client_id.trim().is_empty() {
        err(
            "mqtt.client_id",
            "must not be empty: the persistent session lives under it".into(),
        );
    }
    for (key, path) in [
        ("mqtt.ca_file", &m.ca_file),
        ("mqtt.client_cert", &m.client_cert),
        ("mqtt.client_key", &m.client_key),
    ] {
        if let Some(p) = path {
            if !p.is_file() {
                err(key, format!("no such file {}", p.display()));
            }
        }
    }
    if m.client_cert.is_some() != m.client_key.is_some() {
        err(
            "mqtt.client_cert",
            "give both client_cert and client_key, or neither".into(),
        );
    }
    if let Ok(b) = &broker {
        if !b.tls && (m.ca_file.is_some() || m.client_cert.is_some()) {
            err(
                "mqtt.url",
                "certificates are given but the URL is not mqtts://".into(),
            );
        }
    }
    if m.password.is_some() && m.username.is_none() {
        err("mqtt.password", "a password needs mqtt.username".into());
    }
    if m.max_payload == 0 || m.max_payload >= m.max_packet_size {
        err(
            "mqtt.max_payload",
            format!(
                "must be above 0 and below mqtt.max_packet_size ({})",
                m.max_packet_size
            ),
        );
    }
    if m.reconnect_min > m.reconnect_max || m.reconnect_min.get().is_zero() {
        err(
            "mqtt.reconnect_min",
            "must be above 0 and at most mqtt.reconnect_max".into(),
        );
    }
    if m.keep_alive.get().as_secs() < 5 {
        err("mqtt.keep_alive", "must be at least 5s".into());
    }
    if !m.default_topics && m.mappings.is_empty() {
        err(
            "mqtt.default_topics",
            "with default topics off, at least one [[mqtt.mappings]] is needed".into(),
        );
    }
    for (i, map) in m.mappings.iter().enumerate() {
        let at = |k: &str| format!("mqtt.mappings[{i}].{k}");
        if !rumqttc::valid_filter(&map.filter) {
            err(
                &at("filter"),
                format!("{:?} is not a valid MQTT topic filter", map.filter),
            );
        } else {
            let segs: Vec<&str> = map.filter.split('/').collect();
            let hash = segs.iter().position(|s| *s == "#");
            if map.site_segment >= segs.len() && hash.is_none() {
                err(
                    &at("site_segment"),
                    format!("the filter has only {} segments (0-based)", segs.len()),
                );
            } else if hash.is_some_and(|h| map.site_segment > h) {
                err(
                    &at("site_segment"),
                    "the site segment lies past the # wildcard".into(),
                );
            }
        }
        match map.payload {
            PayloadFormat::Number => {
                match &map.metric {
                    Some(name) if valid_metric(name) => {}
                    Some(name) => err(&at("metric"), format!("invalid metric name {name:?}")),
                    None => err(
                        &at("metric"),
                        "a number payload needs the metric it is".into(),
                    ),
                }
                if !map.fields.is_empty() || map.ts_path.is_some() {
                    err(
                        &at("fields"),
                        "fields and ts_path are for payload = \"json\"".into(),
                    );
                }
                if let Some(s) = map.scale {
                    if !s.is_finite() || s == 0.0 {
                        err(&at("scale"), "must be a finite number other than 0".into());
                    }
                }
            }
            PayloadFormat::Json => {
                if map.fields.is_empty() {
                    err(
                        &at("fields"),
                        "a JSON payload needs at least one { path, metric }".into(),
                    );
                }
                if map.metric.is_some() || map.scale.is_some() {
                    err(
                        &at("metric"),
                        "metric and scale are for payload = \"number\"; use fields".into(),
                    );
                }
                for (j, f) in map.fields.iter().enumerate() {
                    if f.path.is_empty() {
                        err(
                            &format!("mqtt.mappings[{i}].fields[{j}].path"),
                            "must not be empty".into(),
                        );
                    }
                    if !valid_metric(&f.metric) {
                        err(
                            &format!("mqtt.mappings[{i}].fields[{j}].metric"),
                            format!("invalid metric name {:?}", f.metric),
                        );
                    }
                    if !f.scale.is_finite() || f.scale == 0.0 {
                        err(
                            &format!("mqtt.mappings[{i}].fields[{j}].scale"),
                            "must be a finite number other than 0".into(),
                        );
                    }
                }
            }
        }
    }

    let x = &c.influxdb;
    if !x.url.is_empty() {
        match reqwest::Url::parse(&x.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => err(
                "influxdb.url",
                format!("scheme {:?} is not http or https", u.scheme()),
            ),
            Err(e) => err("influxdb.url", format!("{:?} is not a URL: {e}", x.url)),
        }
        match x.api {
            InfluxApi::V2 => {
                if x.org.is_empty() {
                    err("influxdb.org", "api = \"v2\" needs an org".into());
                }
                if x.bucket.is_empty() {
                    err("influxdb.bucket", "api = \"v2\" needs a bucket".into());
                }
            }
            InfluxApi::V1 => {
                if x.database.is_empty() {
                    err("influxdb.database", "api = \"v1\" needs a database".into());
                }
            }
        }
    }
    if x.batch_size == 0 {
        err("influxdb.batch_size", "must be at least 1".into());
    }
    if x.retry_min > x.retry_max || x.retry_min.get().is_zero() {
        err(
            "influxdb.retry_min",
            "must be above 0 and at most influxdb.retry_max".into(),
        );
    }
    if x.timeout.get().is_zero() {
        err("influxdb.timeout", "must be above 0".into());
    }
    if c.spool.segment_size < 64 * 1024 {
        err("spool.segment_size", "must be at least 65536 bytes".into());
    }
    if c.http.listen.parse::<std::net::SocketAddr>().is_err() {
        err(
            "http.listen",
            format!("{:?} is not an address like 127.0.0.1:8080", c.http.listen),
        );
    }
    if let Some(sms) = &c.channels.sms {
        if sms.provider == SmsProvider::Http && sms.url.is_none() {
            err("channels.sms.url", "provider = \"http\" needs a url".into());
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = |url: &str| {
            MqttSection {
                url: url.into(),
                ..Default::default()
            }
            .broker()
        };
        assert_eq!(
            b("mqtt://127.0.0.1:1883").unwrap(),
            BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(
            b("mqtts://broker.example").unwrap(),
            BrokerAddr {
                host: "broker.example".into(),
                port: 8883,
                tls: true
            }
        );
        assert_eq!(
            b("mqtt://[::1]:1884").unwrap(),
            BrokerAddr {
                host: "::1".into(),
                port: 1884,
                tls: false
            }
        );
        assert!(b("http://x:1").unwrap_err().contains("scheme"));
        assert!(b("mqtt://u:p@x:1").unwrap_err().contains("credentials"));
        assert!(b("127.0.0.1:1883").is_err());
        assert!(b("mqtt://x:port").unwrap_err().contains("port"));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            validate(&DaemonConfig::default()),
            Vec::<(String, String)>::new()
        );
    }

    #[test]
    fn every_mistake_is_reported() {
        let mut c = DaemonConfig::default();
        c.daemon.timezone = "Mars/Olympus".into();
        c.mqtt.url = "mqtt://x:99999".into();
        c.mqtt.mappings.push(MappingConfig {
            filter: "a/#/b".into(),
            site_segment: 0,
            payload: PayloadFormat::Number,
            metric: None,
            scale: Some(0.0),
            fields: vec![],
            ts_path: None,
        });
        c.influxdb.api = InfluxApi::V1;
        c.influxdb.database.clear();
        c.http.listen = "localhost".into();
        let keys: Vec<String> = validate(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "daemon.timezone",
                "mqtt.url",
                "mqtt.mappings[0].filter",
                "mqtt.mappings[0].metric",
                "mqtt.mappings[0].scale",
                "influxdb.database",
                "http.listen"
            ]
        );
    }
}
