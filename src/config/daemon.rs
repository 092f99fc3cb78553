//! `floodguard.toml`: the daemon's own sections — `[daemon]`, `[log]`,
//! `[mqtt]`, `[influxdb]`, `[spool]`, `[http]`, `[sl651]`, `[modbus]`,
//! `[state]`, `[cluster]`, `[channels.*]`.
//!
//! Every section has defaults, so a file with only the keys an operator wants
//! to change is complete. The connection keys are the contract of DESIGN.md;
//! environment variables override them as `FLOODGUARD__SECTION__KEY`.

use std::path::PathBuf;

use serde::Deserialize;

pub use super::channels::*;
pub use super::modbus::*;
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
    pub sl651: Sl651Section,
    pub modbus: ModbusSection,
    pub state: StateSection,
    pub cluster: ClusterSection,
    pub channels: ChannelsSection,
}

string_enum! {
    /// Where the alert state lives (DESIGN.md, "State and cluster").
    #[derive(Default)]
    pub enum StateBackend ("state backend") {
        /// `data_dir/state.db`: one node, nothing to set up.
        #[default]
        Sqlite = "sqlite",
        /// A PostgreSQL database shared by two or more nodes.
        Postgres = "postgres",
    }
}

/// `[state]`: the alert state — alerts, silences, the outbox, the delivery
/// log, ack-link nonces — in `data_dir/state.db` or in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StateSection {
    pub backend: StateBackend,
    /// `postgres://user@host:5432/db` (backend = "postgres"; env
    /// `FLOODGUARD__STATE__URL`). No password in it: see `password`.
    pub url: String,
    /// The database password (env `FLOODGUARD__STATE__PASSWORD`, or
    /// `{ file = "…" }`); none for trust or peer authentication.
    pub password: Option<Secret>,
    /// Delivered outbox rows, their delivery logs, spent or expired ack
    /// nonces and resolved alerts older than this are pruned once a day
    /// (default 400 days: a flood season and its report).
    pub retention: HumanDuration,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            backend: StateBackend::Sqlite,
            url: String::new(),
            password: None,
            retention: HumanDuration::secs(400 * 24 * 3600),
        }
    }
}

/// `[cluster]`: this node among the nodes sharing a PostgreSQL state
/// (ignored with the SQLite backend: one node, always the leader).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClusterSection {
    /// This node's name (default: the host name); unique in the cluster.
    pub node_id: String,
    /// The leader's lease: renewed every third of it; a leader that cannot
    /// renew within it stops notifying, and a standby takes over once it
    /// has lapsed.
    pub lease: HumanDuration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection { node_id: String::new(), lease: HumanDuration::secs(10) }
    }
}

impl ClusterSection {
    /// `node_id`, or the host name when it is empty.
    pub fn node(&self) -> String {
        let id = self.node_id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "floodguard".into())
    }
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter: `info`, `floodguard=debug,rumqttc=warn`. `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MqttSection {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Stable client id: the broker keeps our subscriptions and queued
    /// messages across reconnects under this id (a persistent session).
    pub client_id: String,
    /// MQTT version: `"5"`, or `"3.1.1"` for brokers without version 5.
    pub protocol: MqttProtocol,
    /// MQTT 5: how many unacknowledged messages the broker may send at once
    /// (the CONNECT's Receive Maximum). Large windows let floodguard take
    /// messages in big groups; with 3.1.1 the broker decides (Mosquitto's
    /// `max_inflight_messages`, 20 by default).
    pub receive_maximum: u16,
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
            protocol: MqttProtocol::V5,
            receive_maximum: 1000,
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
    /// The MQTT version floodguard speaks to the broker.
    pub enum MqttProtocol ("MQTT protocol") {
        /// MQTT 5: a persistent session (clean start off, a session that
        /// never expires) and floodguard's own Receive Maximum.
        V5 = "5",
        /// MQTT 3.1.1: a persistent session (clean session off); the broker
        /// sets how many messages travel unacknowledged.
        V311 = "3.1.1",
    }
}

string_enum! {
    /// How the payload of a mapped topic is read.
    pub enum PayloadFormat ("payload format") {
        /// A JSON object; `fields` say which paths hold which metrics.
        Json = "json",
        /// The payload is one number in text (`"12.5"`): `metric` names it.
        Number = "number",
        /// floodguard's own telemetry object (`{"ts":…, "<metric>": …}`) on
        /// another topic: e.g. `flood/chengdong/+/telemetry` for an
        /// instance that owns one street.
        Telemetry = "telemetry",
        /// floodguard's own status payload (`online`/`offline`) on another topic.
        Status = "status",
    }
}

/// `[[mqtt.mappings]]`: an existing device's topic and payload, mapped onto
/// floodguard's readings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SpoolSection {
    /// How often written records are forced to disk. A record is acked to the
    /// broker once written (it then survives a crash of the process); this
    /// bounds what a power failure can take. `"0s"`: fsync before every ack.
    pub fsync_interval: HumanDuration,
    /// A segment file is closed and a new one started past this size.
    pub segment_size: u64,
    /// The spool's size at most, bytes. Unset (or 0): as much as leaves
    /// 10 % of its filesystem free. When reached, intake stops
    /// acknowledging (senders keep their data) until the writer frees room.
    pub max_bytes: Option<u64>,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            fsync_interval: HumanDuration::millis(200),
            segment_size: 16 * 1024 * 1024,
            max_bytes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HttpSection {
    pub listen: String,
    /// Bearer token for write endpoints; set it through the environment.
    pub api_token: Secret,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Token of the push endpoints (`/write`, `/api/v2/write`,
    /// `/api/v1/readings`), apart from the API token; empty: they are off.
    pub ingest_token: Secret,
    /// Largest push body, in bytes, compressed and after gzip alike.
    pub max_push_body: usize,
    /// Token for reading: when set, every `/api/v1` read, the event stream
    /// and the live page's data need it (or the API token); `/healthz`,
    /// `/readyz` and the page itself stay open. Empty: reads are open.
    pub read_token: Secret,
    /// Token of `/metrics` for a Prometheus scraper, apart from the read
    /// token (which also works). Empty: `/metrics` needs the read token
    /// when one is set, nothing otherwise.
    pub metrics_token: Secret,
    /// Host names the server answers to besides IP addresses, `localhost`
    /// and the host of `channels.ack.base_url` (`flood.example.gov.cn`): a
    /// request naming another host is refused (DNS rebinding).
    pub hosts: Vec<String>,
    /// A connection must send a request's headers within this long; an
    /// idle keep-alive connection is closed after it too.
    pub header_read_timeout: HumanDuration,
    /// A request must be answered within this long (the event stream's
    /// body is exempt once it started).
    pub request_timeout: HumanDuration,
    /// Connections open at once at most; more are closed at accept.
    pub max_connections: usize,
    /// Event-stream (`/api/v1/events`) clients at once at most; more get 503.
    pub max_sse_clients: usize,
    /// Requests per minute per client address to the write API and
    /// `/ack/…` (0: no limit); bursts of `rate_burst` pass at once.
    pub rate_limit: u32,
    pub rate_burst: u32,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
            api_token: Secret::default(),
            max_body: 64 * 1024,
            ingest_token: Secret::default(),
            max_push_body: 8 * 1024 * 1024,
            read_token: Secret::default(),
            metrics_token: Secret::default(),
            hosts: Vec::new(),
            header_read_timeout: HumanDuration::secs(10),
            request_timeout: HumanDuration::secs(30),
            max_connections: 1024,
            max_sse_clients: 64,
            rate_limit: 120,
            rate_burst: 30,
        }
    }
}

/// `[sl651]`: the SL 651-2014 central station (TCP).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Sl651Section {
    /// `host:port` to listen on (TCP); empty: off.
    pub listen: String,
    /// `host:port` for RTUs that send over UDP (one datagram, one or more
    /// frames; the reply goes to the sender); empty: off.
    pub udp_listen: String,
    /// This centre's address; frames for another centre are counted and
    /// dropped (0 is accepted as well: stations in the field send it).
    pub center: u8,
    /// A connection silent this long is closed (the RTU dials again).
    pub idle_timeout: HumanDuration,
    /// End confirmations with ESC (keep the link: RTUs that stay online)
    /// instead of EOT (release it: RTUs that dial for each report).
    pub keep_link: bool,
    /// Connections open at once at most; more are refused at accept.
    pub max_connections: usize,
}

impl Default for Sl651Section {
    fn default() -> Self {
        Sl651Section {
            listen: String::new(),
            udp_listen: String::new(),
            center: 1,
            idle_timeout: HumanDuration::secs(15 * 60),
            keep_link: false,
            max_connections: 20_000,
        }
    }
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
            return Err("put credentials in mqtt.username and mqtt.password, not in the URL".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| format!("port {p:?} is not a number"))?;
                (h.trim_start_matches('[').trim_end_matches(']').to_string(), port)
            }
            _ => (authority.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("{:?} has no host", self.url));
        }
        Ok(BrokerAddr { host, port, tls })
    }
}
