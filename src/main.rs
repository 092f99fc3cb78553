//! The `floodguard` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "floodguard",
    version,
    about = "Flood-control monitoring and alerting daemon (防汛监测预警)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The main config file; sites.toml, plan.toml and teams.toml are read from its directory.
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
    /// Print a fresh random secret (64 hex digits) for http.api_token,
    /// http.read_token, http.ingest_token or channels.ack.secret.
    GenSecret,
    /// Validate the configuration and print the sites by street and kind.
    CheckConfig {
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
    /// Backtest: run recorded readings (line protocol of `telemetry`, as
    /// exported from InfluxDB) through the plan at full speed.
    Replay {
        /// Line-protocol file (`influx_inspect export` output works as is); `-` for stdin.
        #[arg(short, long)]
        input: PathBuf,
        /// The configuration whose plan is replayed (A).
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
        /// A second configuration (B): print which alerts appear, vanish or move in time with it.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// `text` (a report per site) or `json` (one level change per line; with
        /// --compare, one difference per line).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// How often the engine ticks in recorded time (sustain timers, rain windows, staleness).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        tick: std::time::Duration,
    },
    /// The 汛情报告 of a period (alerts from data_dir/state.db; rainfall,
    /// waterlogging and pumps from InfluxDB or the spool), or with `--kind
    /// readiness` the 汛前准备情况 with every blank filled.
    Report {
        /// `event`: a rain event's report; `readiness`: the pre-season report.
        #[arg(long, default_value = "event", value_parser = ["event", "readiness"])]
        kind: String,
        /// Start: RFC 3339, or "2026-07-21 12:00" in the configured time zone (event).
        #[arg(long)]
        since: Option<String>,
        /// End, likewise; now when absent.
        #[arg(long)]
        until: Option<String>,
        /// `json`: the numbers for other systems (readiness; an event's
        /// rainfall, waterlogging and pumps).
        #[arg(long, default_value = "md", value_parser = ["md", "html", "json"])]
        format: String,
        /// Readings from these line-protocol files instead of InfluxDB or the spool (event).
        #[arg(long)]
        input: Vec<PathBuf>,
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
    /// Two rain events side by side per waterlogging point: rain at the
    /// nearest gauge, peak depth, time at Ⅳ or above, drain time.
    CompareStorms {
        /// A storm as START..END (RFC 3339, or "2026-07-21 12:00"): twice.
        #[arg(long = "storm", required = true)]
        storms: Vec<String>,
        /// Only these points (default: every waterlogging point).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Readings from these line-protocol files instead of InfluxDB or the spool.
        #[arg(long)]
        input: Vec<PathBuf>,
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
    /// Publish realistic sensor data for the district of a config: steady,
    /// rainstorm, pump-failure, or load (synthetic sites).
    Simulate {
        /// `mqtt://host:port`; without it only --output is written.
        #[arg(long)]
        broker: Option<String>,
        #[arg(long, value_parser = ["steady", "rainstorm", "pump-failure", "load"])]
        scenario: String,
        /// Simulated length (default: the scenario's; `load`: 60s of wall time).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Simulated seconds per wall second (60: an hour a minute).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `load`: synthetic sites L-000000… (see --sites-toml).
        #[arg(long, default_value_t = 1000)]
        sites: u64,
        /// `load`: messages per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Also write the readings as line protocol of `telemetry` (for `replay`).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Join the scenario this far in (e.g. `50m`: the rain is already falling).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        skip: std::time::Duration,
        /// `load`: write a sites.toml of the synthetic sites and exit.
        #[arg(long)]
        sites_toml: Option<PathBuf>,
        /// Stamp model time: the scenario starts at T (RFC 3339, or
        /// "2026-07-21 12:00" in the configured time zone), each site at its
        /// reporting interval whatever --speed is. Default with --output and
        /// no broker: the scenario ends now.
        #[arg(long)]
        start: Option<String>,
        /// The rain as many times as heavy (0.6: a weaker storm of the same shape).
        #[arg(long, default_value_t = 1.0)]
        rain_scale: f64,
        /// `host:port` of an SL 651 central station: the sites with an
        /// `sl651_station` report there as RTUs (timed, 加报, hourly frames),
        /// the others over MQTT.
        #[arg(long)]
        sl651: Option<String>,
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
    /// Everything embedded, nothing to install: an MQTT broker, a storm over
    /// the sample district, the daemon and its live page. Ctrl-C stops it.
    Demo {
        /// Where the live page and the API listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// Simulated seconds per wall second (60: the 6-hour storm in 6 minutes).
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The state store: `state migrate --to postgres` copies data_dir/state.db
    /// into the PostgreSQL state of [state] url (DESIGN.md, "State and cluster").
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// A drill (演练): a test message to every member and channel of a team,
    /// sent now, with a per-recipient result table. Exits 1 unless all were accepted.
    NotifyTest {
        /// The team's id in teams.toml.
        #[arg(long)]
        team: String,
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Copy state.db into PostgreSQL (an empty database or schema), once,
    /// before the first start on PostgreSQL.
    Migrate {
        /// The backend to copy into: postgres.
        #[arg(long)]
        to: String,
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<floodguard::config::Config, ExitCode> {
    floodguard::config::load(path).map_err(|errors| {
        // Secrets known from the environment are hidden from the errors too.
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let r = floodguard::redact::Redactor::from_env(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        eprint!("{}", r.apply(&errors.to_string()));
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    // One TLS provider for every crate (ring); see PITFALLS.md.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::GenSecret => {
            println!("{}", floodguard::config::generate_secret());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match load(&config) {
            Ok(c) => {
                let r = floodguard::redact::Redactor::from_config(&c);
                print!("{}", r.apply(&floodguard::check::describe(&c)));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Replay { input, config, compare, format, tick } => {
            replay(&input, &config, compare.as_deref(), &format, tick)
        }
        Command::Report { kind, since, until, format, input, config } => match (kind.as_str(), since) {
            ("readiness", _) => readiness(&config, &format),
            (_, Some(since)) => report(&config, &since, until.as_deref(), &format, &input),
            (_, None) => {
                eprintln!("--since is needed for an event report");
                ExitCode::from(2)
            }
        },
        Command::CompareStorms { storms, sites, input, format, config } => match load(&config) {
            Ok(c) => match floodguard::analysis::compare::command(&c, &storms, &sites, &input, &format) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("compare-storms: {e}");
                    ExitCode::from(2)
                }
            },
            Err(code) => code,
        },
        Command::NotifyTest { team, config } => notify_test(&config, &team),
        Command::State { action: StateAction::Migrate { to, config } } => migrate_state(&config, &to),
        Command::Simulate {
            broker,
            scenario,
            duration,
            speed,
            seed,
            sites,
            rate,
            output,
            sites_toml,
            start,
            rain_scale,
            skip,
            sl651,
            config,
        } => {
            if let Some(path) = sites_toml {
                return match std::fs::write(&path, floodguard::simulate::model::load_sites_toml(sites)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        ExitCode::FAILURE
                    }
                };
            }
            let (site_list, sl651_centre, timezone) = if scenario == "load" {
                (Vec::new(), 1, chrono_tz::Asia::Shanghai)
            } else {
                match load(&config) {
                    Ok(c) => (c.sites.sites.clone(), c.daemon.sl651.center, c.timezone),
                    Err(code) => return code,
                }
            };
            let start_ms = match start.as_deref().map(|t| parse_when(t, timezone)) {
                None => None,
                Some(Some(ns)) => Some(ns / 1_000_000),
                Some(None) => {
                    eprintln!(
                        "--start {:?}: use RFC 3339 or \"2026-07-21 12:00\"",
                        start.unwrap_or_default()
                    );
                    return ExitCode::from(2);
                }
            };
            let o = floodguard::simulate::Options {
                start_ms,
                clock: None,
                rain_scale,
                broker,
                scenario,
                duration,
                speed,
                seed,
                sites,
                rate,
                output,
                client_id: format!("floodguard-simulate-{}", std::process::id()),
                skip,
                sl651,
                sl651_centre,
                timezone,
            };
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(async {
                let stop = CancellationToken::new();
                tokio::spawn(wait_for_signal(stop.clone()));
                match floodguard::simulate::run(&o, &site_list, stop).await {
                    Ok(sum) => {
                        eprintln!("simulate: {} messages, {} readings", sum.messages, sum.readings);
                        if sum.sl651_frames > 0 {
                            eprintln!(
                                "simulate: {} SL 651 frames, {} confirmed",
                                sum.sl651_frames, sum.sl651_confirmed
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("simulate: {e}");
                        ExitCode::from(2)
                    }
                }
            })
        }
        Command::Demo { http, speed, seed } => floodguard::demo::main(&http, speed, seed),
        Command::Run { config } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            floodguard::logging::init(&c.daemon.log);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let code = rt.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(wait_for_signal(shutdown.clone()));
                match floodguard::daemon::run(c, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "floodguard failed");
                        eprintln!("floodguard: {e}");
                        ExitCode::FAILURE
                    }
                }
            });
            // A stage left behind at the shutdown deadline may hold a
            // blocking task: do not wait for it (its work is durable).
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            code
        }
    }
}

fn migrate_state(config: &std::path::Path, to: &str) -> ExitCode {
    if to != "postgres" {
        eprintln!("state migrate: --to {to:?}: the one target is postgres");
        return ExitCode::from(2);
    }
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = &c.daemon.state;
    if s.backend != floodguard::config::StateBackend::Postgres {
        eprintln!(
            "state migrate: set [state] backend = \"postgres\" and url (FLOODGUARD__STATE__URL) in {} first",
            config.display()
        );
        return ExitCode::from(2);
    }
    let target = match floodguard::state::pg::Target::from_section(s) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let path = c.data_dir().join("state.db");
    let node = c.daemon.cluster.node();
    match floodguard::state::copy::to_postgres(&path, &target, &node, c.daemon.cluster.lease.get()) {
        Ok(copied) => {
            for (table, n) in &copied {
                println!("{table:<16} {n:>9}");
            }
            println!(
                "{} copied into {} (this node's engine cursor as {})",
                path.display(),
                target.url,
                floodguard::state::engine_cursor(&node)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let r = floodguard::redact::Redactor::from_config(&c);
            eprintln!("state migrate: {}", r.apply(&e));
            ExitCode::FAILURE
        }
    }
}

fn notify_test(config: &std::path::Path, team: &str) -> ExitCode {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if c.teams.team(team).is_none() {
        let ids: Vec<&str> =
            c.teams.teams.iter().chain(&c.teams.maintenance).map(|t| t.id.as_str()).collect();
        eprintln!("no team {team:?} in teams.toml (teams: {})", ids.join(", "));
        return ExitCode::from(2);
    }
    let path = c.data_dir().join("state.db");
    let outbox = std::fs::create_dir_all(c.data_dir())
        .map_err(|e| e.to_string())
        .and_then(|()| floodguard::alerts::store::Store::open(&path).map_err(|e| e.to_string()))
        .and_then(|_| {
            floodguard::notify::Outbox::new(
                &path,
                c.daemon.channels.clone(),
                c.teams.clone(),
                floodguard::alerts::Places::from_config(&c),
                c.daemon.daemon.language,
                None,
            )
        });
    let outbox = match outbox {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let held_at = floodguard::clock::wall_ns();
    match rt.block_on(outbox.drill(team)) {
        Ok(results) => {
            let (text, all) = floodguard::notify::drill::table(&results, c.daemon.daemon.language);
            print!("{text}");
            // On record for the page and the readiness report.
            let t = c.teams.teams.iter().find(|t| t.id == team).expect("checked above");
            if let Err(e) = floodguard::drills::record(&path, t, held_at, &results) {
                eprintln!("{}: the drill could not be recorded: {e}", path.display());
            }
            if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C) starts a graceful shutdown.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}

fn replay(
    input: &std::path::Path,
    config: &std::path::Path,
    compare: Option<&std::path::Path>,
    format: &str,
    tick: std::time::Duration,
) -> ExitCode {
    use floodguard::replay;
    let a = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let b = match compare.map(load).transpose() {
        Ok(b) => b,
        Err(code) => return code,
    };
    let rec = if input == std::path::Path::new("-") {
        replay::load(std::io::stdin().lock())
    } else {
        std::fs::File::open(input).and_then(|f| replay::load(std::io::BufReader::with_capacity(1 << 20, f)))
    };
    let rec = match rec {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e}", input.display());
            return ExitCode::from(2);
        }
    };
    let tick_ns = floodguard::plan::ns(tick).max(1);
    let started = std::time::Instant::now();
    let ta = replay::run(&a.plan, &rec.readings, tick_ns);
    let tb = b.as_ref().map(|b| replay::run(&b.plan, &rec.readings, tick_ns));
    let elapsed = started.elapsed();
    let tz = a.timezone;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = match (format, &tb) {
        ("json", None) => replay::write_json(&mut out, &ta, tz),
        ("json", Some(tb)) => replay::write_comparison_json(&mut out, &replay::compare(&ta, tb), tz),
        (_, tb) => {
            replay::write_text(&mut out, &rec, &a.plan, input, &ta, tz).and_then(|()| match (tb, compare) {
                (Some(tb), Some(bpath)) => {
                    replay::write_comparison_text(&mut out, &replay::compare(&ta, tb), config, bpath, tz)
                }
                _ => Ok(()),
            })
        }
    };
    if let Err(e) = result.and_then(|()| std::io::Write::flush(&mut out)) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "replayed {} readings in {:.2} s ({:.0} readings/s)",
        rec.readings.len(),
        elapsed.as_secs_f64(),
        rec.readings.len() as f64 * (1 + usize::from(tb.is_some())) as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    ExitCode::SUCCESS
}

/// RFC 3339, or a local "YYYY-MM-DD HH:MM" in `tz`.
fn parse_when(s: &str, tz: chrono_tz::Tz) -> Option<i64> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(&format!("{s} 00:00"), "%Y-%m-%d %H:%M"))
        .ok()?;
    tz.from_local_datetime(&naive).earliest()?.timestamp_nanos_opt()
}

fn readiness(config: &std::path::Path, format: &str) -> ExitCode {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match floodguard::readiness::command(&c, format, floodguard::clock::wall_ns()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn report(
    config: &std::path::Path,
    since: &str,
    until: Option<&str>,
    format: &str,
    input: &[PathBuf],
) -> ExitCode {
    let c = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let tz = c.timezone;
    let Some(since) = parse_when(since, tz) else {
        eprintln!("--since {since:?}: use RFC 3339 or \"2026-07-21 12:00\"");
        return ExitCode::from(2);
    };
    let until = match until {
        None => floodguard::reading::to_ns(chrono::Utc::now()),
        Some(u) => match parse_when(u, tz) {
            Some(t) => t,
            None => {
                eprintln!("--until {u:?}: use RFC 3339 or \"2026-07-21 18:00\"");
                return ExitCode::from(2);
            }
        },
    };
    let path = c.data_dir().join("state.db");
    if !path.exists() {
        eprintln!("{}: no alert history (has floodguard run with this data_dir?)", path.display());
        return ExitCode::from(2);
    }
    let manager = match floodguard::alerts::store::Store::open(&path).and_then(|store| {
        floodguard::alerts::AlertManager::new(
            store,
            c.teams.clone(),
            floodguard::alerts::Places::from_config(&c),
            std::sync::Arc::new(floodguard::alerts::LogNotifier),
            None,
            None,
        )
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let (alerts, silences) = match (manager.between(since, until), manager.silences(since, true)) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let streets: Vec<(String, String)> =
        c.sites.streets.iter().map(|s| (s.id.clone(), s.name.clone())).collect();
    let ids: Vec<i64> = alerts.iter().map(|a| a.id).collect();
    let deliveries =
        match floodguard::notify::outbox::OutboxDb::open(&path).and_then(|db| db.deliveries(&ids)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
    // Rainfall, waterlogging and pumps from the readings (InfluxDB, the spool or files).
    let warm = floodguard::analysis::WARM_UP_NS;
    let analysis = floodguard::analysis::source::load(&c, since - warm, until, input)
        .map(|(readings, source)| floodguard::analysis::analyse(&c.plan, &readings, since, until, &source));
    if let Err(e) = &analysis {
        eprintln!("the readings of the period cannot be read ({e}): the report has the alerts only");
    }
    if format == "json" {
        return match &analysis {
            Ok(a) => {
                println!("{}", serde_json::to_string_pretty(a).expect("serializable"));
                ExitCode::SUCCESS
            }
            Err(_) => ExitCode::FAILURE,
        };
    }
    let input = floodguard::report::Input {
        district_name: &c.sites.district.name,
        streets: &streets,
        teams: &c.teams,
        alerts: &alerts,
        silences: &silences,
        deliveries: &deliveries,
        since,
        until,
        tz,
        analysis: analysis.as_ref().ok(),
    };
    let text = if format == "html" {
        floodguard::report::html(&input)
    } else {
        floodguard::report::markdown(&input)
    };
    print!("{text}");
    if analysis.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
