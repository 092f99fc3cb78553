//! floodguard — monitoring and alerting for a district flood-control command
//! center (防汛指挥部).
//!
//! Sensors publish over MQTT; floodguard stores every reading in InfluxDB,
//! judges it against the district's flood emergency plan and alerts the
//! rescue teams by SMS, e-mail and group robots.
//!
//! # Data flow
//! Stages, each with its own execution, joined by bounded hand-offs
//! ([`stage`] watches them; DESIGN.md, "Stages"):
//! ```text
//!  MQTT broker (QoS1, persistent session, manual acks)
//!      │
//!      ▼
//!  ingest::mqtt::Mqtt ── poll task (acks always drain) ──▶ worker ── decode (pure) ──▶ Reading
//!      │  async, tokio workers                                    │
//!      │  HTTP push: http::push (POST /write, /api/v2/write,      │
//!      │  /api/v1/readings) ── ingest::push (pure) ───────────────┤ (204 once spooled)
//!      │  SL 651 RTUs ──TCP──▶ ingest::sl651::server ── frame,    │
//!      │  map (pure) ─────────────────────────────────────────────┤ (M2 confirmation once spooled)
//!      │  PLCs ◀──Modbus TCP── ingest::modbus::poller (a task per │
//!      │  device) ── map (pure) ──────────────────────────────────┤ (next poll once spooled)
//!      │                                         ingest::Intake::submit (bounded, waits = no ack)
//!      │                                                          ▼
//!      │   ┌──────────────── outlet::Outlet (thread fg-outlet): the only spool writer
//!      │   │ Confirm ◀──────  one write per submission, then the intake acks
//!      │   │                  data_dir/spool/*.seg (checksummed; fsync per policy)
//!      │   │                       │ spool::Reader ──▶ tsdb::writer (thread fg-writer) ──▶ InfluxDB v1 / v2
//!      │   │                       ▼
//!      │   │                  Feed (try_send; when full the engine reads the spool: outlet::Replay)
//!      │   │                       ▼
//!      │   │              live::stage::EngineStage (thread fg-engine)
//!      │   │                  engine::step (pure) over plan::Plan, ticks each second:
//!      │   │                  quality control first (engine::qc: bad stored not judged,
//!      │   │                  suspect held for confirmation), gateways and the intake
//!      │   │                  (engine::upstream: one 采集链路中断 for silent sites)
//!      │   │                       │ engine::sink::Judged { transitions, upto: spool position }
//!      │   │                       ▼ (bounded inbox; the engine waits, intake does not)
//!      │   │              alerts::stage::AlertStage (thread fg-alerts)
//!      │   │                  AlertManager: lifecycle, silences, inhibition, grouping,
//!      │   │                  repeats, escalation; transitions + engine cursor + outbox rows
//!      │   └── Points ◀──────  + pending points in one state transaction (state.db, or
//!      │                        PostgreSQL: the leader's, under its epoch; a standby keeps a shadow)
//!      │     (area_level,              │
//!      │      alert_event)             ▼ notify::Wake
//!      │                       notify::stage::OutboxStage (thread fg-outbox + one per channel group + receipts)
//!      │                           rows in state.db, priorities, retries, carrier budgets (digests),
//!      │                           fallbacks to another channel or person
//!      │                               ▼
//!      │                       SMS (http, Aliyun, Tencent), e-mail (SMTP), WeCom / DingTalk robots, webhook,
//!      │                       phone calls (Aliyun, Tencent, gateway) ◀── receipts, call results
//!      ▼
//!  health + stage probes + disk ──▶ http: /healthz /readyz (names a stalled stage, a full disk) /metrics,
//!        /api/v1/{sites,alerts,silences,notifications,outbox,reload}, /api/v1/alerts/{id}/deliveries,
//!        /ack/{token}, /callbacks/tencent-voice/{token},
//!        GET / (the live page), /api/v1/sites/{id}/series, /api/v1/events (SSE),
//!        /api/v1/{materials,drills,clock}
//!
//!  Off the pipeline (commands): report (alerts from state.db + analysis of the
//!  readings from InfluxDB / the spool / files), report --kind readiness
//!  (config + drills and materials' movements in state.db), compare-storms.
//! ```
//! Every edge that reads the time for the plan reads a [`clock::Clock`]:
//! the wall, or in `floodguard demo` a compressed storm-time clock shared
//! with the simulator.
//! A stage that panics or returns ends the daemon non-zero; SIGTERM stops the
//! stages in reverse order within `shutdown_timeout` plus a few seconds.
//!
//! # Modules
//! | module | concept |
//! |---|---|
//! | [`config`] | the config files (and optional materials.toml), env overrides, every error with file/line/key |
//! | [`plan`] | `plan.toml` compiled per site: rules, thresholds, cards, area rules, quality control (`plan::qc`), upstreams |
//! | [`engine`] | the pure engine: `step(state, plan, input, now) -> transitions`; `engine::qc` (quality flags, maintenance faults), `engine::upstream` (gateways and the intake), `engine::sink`, where transitions go; `engine::snapshot`, its state as data |
//! | [`live`] | the engine in the daemon: its state, the engine stage (catch-up from the spool, ticks), its snapshots on disk |
//! | [`history`] | recent values per (site, metric) for the page's charts: a bounded ring |
//! | [`events`] | level and alert changes for the live page, and their SSE encoding |
//! | [`alerts`] | the alert manager: lifecycle, decisions, routing, its store on the state backend and its daily pruning, the alert stage; a standby's shadow and the takeover |
//! | [`state`] | the state backend: one trait over SQLite (`state.db`) and PostgreSQL, PostgreSQL's migrations, `state migrate --to postgres` |
//! | [`cluster`] | leadership on PostgreSQL: the lease and its keeper thread, epochs, the fence that refuses a deposed leader's writes |
//! | [`roster`] | the duty roster (值班表): who of a team is on duty at a time |
//! | [`notify`] | the durable outbox: messages per channel, carrier budgets and digests, senders and providers' answers, receipts, calls, fallbacks, ack links, drills, robots by reference, operator alerts, the outbox stage |
//! | [`report`] | `floodguard report`: the 汛情报告 from the alert history (with [`analysis`]'s sections) |
//! | [`analysis`] | a rain event's readings: rainfall, waterlogging (the engine's levels), pumps; their sources (InfluxQL, spool, files); `compare-storms` |
//! | [`readiness`] | `report --kind readiness`: 汛前准备情况, every blank filled from config and state |
//! | [`materials`] | flood materials in use: stock, issues and returns, the nearest depots for a card |
//! | [`drills`] | drills on record (`notify-test`) and their summary |
//! | [`clock`] | the daemon's clock: wall time, or the demo's compressed storm time |
//! | [`reload`] | SIGHUP / `POST /api/v1/reload`: re-read, validate, swap, carry state |
//! | [`simulate`] | `floodguard simulate`: seeded scenarios (storm, pump failure, load) over MQTT or to a file |
//! | [`demo`] | `floodguard demo`: rumqttd in-process, the embedded sample, the storm, the live page |
//! | [`replay`] | `floodguard replay`: backtest recorded line protocol, compare plans |
//! | [`reading`] | `Reading { site, metric, value, ts }`, the unit of data |
//! | [`coerce`] | values as devices send them: each metric's type (flag or number) from the plan, one coercion for every intake |
//! | [`level`] | response levels Ⅳ … Ⅰ |
//! | [`catalog`] | sites by id, with their precomputed InfluxDB series key |
//! | [`ingest`] | intake: the protocol-independent hand-off to the outlet, `ingest::mqtt`, `ingest::push` (HTTP bodies into readings), `ingest::sl651` (the SL 651 central station), `ingest::modbus` (Modbus TCP polling of PLCs: register map, pollers) |
//! | [`outlet`] | the only writer of the spool and of line protocol; feeds the engine |
//! | [`sources`] | each site's last input (protocol, sender, time) for the page and the API |
//! | [`spool`] | the durable, checksummed, append-only log between intake and InfluxDB |
//! | [`tsdb`] | line protocol (write and read), the InfluxDB client, retry decision, writer |
//! | [`stage`] | stage probes, the pure stall judgement, exit guards, the test wedge |
//! | [`backoff`] | capped exponential backoff with full jitter |
//! | [`health`] | liveness and readiness decisions (lag, InfluxDB, stages, disk) |
//! | [`disk`] | a full disk: the spool's limit, writers' reports of ENOSPC, for `/readyz` and the operator alert |
//! | [`metrics`] | the Prometheus registry behind `/metrics` (a leaf: imports no module's internals) |
//! | [`http`] | the HTTP server (`http::server`: accept loop, header-read timeout, connection cap), access and limits (`http::guard`: read token, Host check, security headers, rate limits), the `/api/v1` handlers, the push endpoints, the live page and its SSE stream |
//! | [`daemon`] | `floodguard run`: one stage per function, supervision, reverse shutdown |
//! | [`check`] | `floodguard check-config` output: sites, rules, teams |
//! | [`logging`] | tracing set-up: every line through [`redact`] |
//! | [`redact`] | the one redaction of errors stored or logged: secrets, URL credentials and queries, phone numbers |
//!
//! Pure parts (decoder, line protocol, retry decision, readiness and stall
//! judgement, config validation, plan compilation, the engine, alert
//! decisions, carrier budgets, fallbacks, providers' answers) take time and
//! input as arguments and are tested alone; I/O
//! sits at the edges (`ingest::mqtt::client`, `outlet`, `spool`,
//! `tsdb::client`, `alerts::store`, `notify::send`, `http`).

#[macro_use]
mod macros;

pub mod alerts;
pub mod analysis;
pub mod backoff;
pub mod catalog;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod coerce;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod disk;
pub mod drills;
pub mod engine;
pub mod events;
pub mod health;
pub mod history;
pub mod http;
pub mod ingest;
pub mod level;
pub mod live;
pub mod logging;
pub mod materials;
pub mod metrics;
pub mod notify;
pub mod outlet;
pub mod plan;
pub mod readiness;
pub mod reading;
pub mod redact;
pub mod reload;
pub mod replay;
pub mod report;
pub mod roster;
pub mod simulate;
pub mod sources;
pub mod spool;
pub mod stage;
pub mod state;
pub mod tsdb;
