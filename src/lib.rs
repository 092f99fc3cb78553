//! floodguard — monitoring and alerting for a district flood-control command
//! center (防汛指挥部).
//!
//! Sensors publish over MQTT; floodguard stores every reading in InfluxDB,
//! judges it against the district's flood emergency plan and alerts the
//! rescue teams by SMS, e-mail and group robots.
//!
//! # Data flow
//! ```text
//!  MQTT broker
//!      │  QoS1, persistent session, manual acks
//!      ▼
//!  ingest::pipeline ── poll task ──▶ worker ── ingest::decode (pure) ──▶ Reading
//!      │                                 │
//!      │                                 ├─▶ spool::Appender: one write per group, then ack
//!      │                                 │      │  data_dir/spool/*.seg, fsync on an interval
//!      │                                 │      ▼
//!      │                                 │   spool::Reader ──▶ tsdb::writer ──▶ InfluxDB v1 / v2
//!      │                                 │                    (tsdb::retry: pure decision)
//!      │                                 ▼
//!      │                        live::Live ── engine::step (pure) over plan::Plan
//!      │                                 │      │
//!      │                                 │      ├─▶ area_level points ──▶ spool
//!      │                                 │      └─▶ alerts::AlertManager (a TransitionSink)
//!      │                                 │             │  lifecycle, silences, inhibition,
//!      │                                 │             │  grouping, repeats, escalation;
//!      │                                 │             │  data_dir/state.db (SQLite)
//!      │                                 │             ├─▶ alert_event points ──▶ spool
//!      │                                 │             └─▶ notify::Outbox (a Notifier): rows in state.db
//!      │                                 │                    │  per-channel workers, retries, rate limits
//!      │                                 │                    ▼
//!      │                                 │                 SMS (http, Aliyun, Tencent), e-mail (SMTP),
//!      │                                 │                 WeCom / DingTalk robots, webhook
//!      ▼                                 ▼
//!  health ──▶ http: /healthz /readyz /metrics, /api/v1/{sites,alerts,silences,notifications,outbox,reload},
//!                   /ack/{token} (the signed ack link of a message), GET / (the live page),
//!                   /api/v1/sites/{id}/series (history), /api/v1/events (SSE: events from live and the alert manager)
//! ```
//!
//! # Modules
//! | module | concept |
//! |---|---|
//! | [`config`] | the four config files, env overrides, every error with file/line/key |
//! | [`plan`] | `plan.toml` compiled per site: rules, thresholds, cards, area rules |
//! | [`engine`] | the pure engine: `step(state, plan, input, now) -> transitions` |
//! | [`live`] | the engine in the daemon: its state behind a lock, the transition sink |
//! | [`history`] | recent values per (site, metric) for the page's charts: a bounded ring |
//! | [`events`] | level and alert changes for the live page, and their SSE encoding |
//! | [`alerts`] | the alert manager: lifecycle, decisions, routing, SQLite store |
//! | [`roster`] | the duty roster (值班表): who of a team is on duty at a time |
//! | [`notify`] | the durable outbox: messages per channel, senders, ack links, drills |
//! | [`report`] | `floodguard report`: the 汛情报告 from the alert history |
//! | [`reload`] | SIGHUP / `POST /api/v1/reload`: re-read, validate, swap, carry state |
//! | [`simulate`] | `floodguard simulate`: seeded scenarios (storm, pump failure, load) over MQTT or to a file |
//! | [`demo`] | `floodguard demo`: rumqttd in-process, the embedded sample, the storm, the live page |
//! | [`replay`] | `floodguard replay`: backtest recorded line protocol, compare plans |
//! | [`reading`] | `Reading { site, metric, value, ts }`, the unit of data |
//! | [`level`] | response levels Ⅳ … Ⅰ |
//! | [`catalog`] | sites by id, with their precomputed InfluxDB series key |
//! | [`ingest`] | MQTT: the pure decoder, connection options, the ingest pipeline |
//! | [`spool`] | the durable, checksummed, append-only log between MQTT and InfluxDB |
//! | [`tsdb`] | line protocol (write and read), the InfluxDB client, retry decision, writer |
//! | [`backoff`] | capped exponential backoff with full jitter |
//! | [`health`] | liveness and readiness decisions |
//! | [`metrics`] | the Prometheus registry behind `/metrics` |
//! | [`http`] | the axum server, the `/api/v1` handlers, the live page and its SSE stream |
//! | [`daemon`] | `floodguard run`: wiring and ordered shutdown |
//! | [`check`] | `floodguard check-config` output: sites, rules, teams |
//! | [`logging`] | tracing set-up |
//!
//! Pure parts (decoder, line protocol, retry decision, readiness, config
//! validation, plan compilation, the engine) take time and input as
//! arguments and are tested alone; I/O sits at the edges (`ingest::pipeline`,
//! `spool`, `tsdb::client`, `http`, `live`).

#[macro_use]
mod macros;

pub mod alerts;
pub mod backoff;
pub mod catalog;
pub mod check;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod events;
pub mod health;
pub mod history;
pub mod http;
pub mod ingest;
pub mod level;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outlet;
pub mod plan;
pub mod reading;
pub mod reload;
pub mod replay;
pub mod report;
pub mod roster;
pub mod simulate;
pub mod spool;
pub mod stage;
pub mod tsdb;
