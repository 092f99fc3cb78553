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
    /// Validate the configuration and print the sites by street and kind.
    CheckConfig {
        #[arg(short, long, default_value = "config/floodguard.toml")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<floodguard::config::Config, ExitCode> {
    floodguard::config::load(path).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    // One TLS provider for every crate (ring); see PITFALLS.md.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(c) => {
                print!("{}", floodguard::check::describe(&c));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
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
            rt.block_on(async {
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
            })
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
