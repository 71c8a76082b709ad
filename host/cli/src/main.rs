//! The `bucketscan` command: wires the config, the Wasm host and the
//! subcommands together. Logic lives in `bucketscan-core` and
//! `bucketscan-engine`; this crate only parses arguments and prints.

mod check;
mod clamd_sidecar;
mod config_args;
mod health;
mod inspect;
mod network_check;
mod output;
mod protect;
mod quarantine;
mod run_agent;
mod run_plugin;
mod scaffold;
mod scan;
mod serve;
mod sweep;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "bucketscan",
    version,
    about = "Scan S3 objects through pipelines of sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config and load every plugin it names; with --network,
    /// also call every AWS endpoint it needs and name those out of reach.
    Check(check::CheckArgs),
    /// Run the agent: consume S3 events from SQS and scan each object.
    Run(run_agent::RunArgs),
    /// Ask a running agent whether it is alive (or ready): the container health check.
    Health(health::HealthArgs),
    /// Scan the objects already in a bucket (or under a prefix).
    Scan(scan::ScanArgs),
    /// Sweeps queued for the fleet (`scan --enqueue`).
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
    /// Send a bucket's upload events to the agent's queue (other notifications are kept).
    Protect(protect::ProtectArgs),
    /// Remove the notification `protect` added, and nothing else.
    Unprotect {
        #[arg(long)]
        bucket: String,
    },
    /// Serve the HTTP scanning API: scan uploads before they are stored, objects on demand.
    Serve(serve::ServeArgs),
    /// Make an API key for `serve`: prints the key, and the config entry with its SHA-256.
    ApiKey(serve::ApiKeyArgs),
    /// Print the key subscribers check result notifications' `bucketscan-mark` with
    /// (derived from `[agent] seal-key`; it cannot seal result tags).
    NotificationKey(crate::config_args::ConfigArgs),
    /// Give a quarantined false positive back: restored, tagged allowed, allow-listed, announced.
    Release(Box<quarantine::ReleaseArgs>),
    /// What the quarantine holds.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Work with one plugin component.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The task's clamd container: wait for signatures and start clamd, or ping it.
    #[command(subcommand)]
    Clamd(clamd_sidecar::ClamdCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's name, version, contract version and the capabilities it imports.
    Inspect {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = output::Format::Text)]
        output: output::Format,
    },
    /// Run one plugin (or a bucket's whole pipeline) over a local file.
    Run(Box<run_plugin::RunArgs>),
    /// Create a ready-to-build plugin (Rust, Python or JavaScript) with its test.
    New(scaffold::NewArgs),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => check::run(args).await,
            Command::Run(args) => run_agent::run(args).await,
            Command::Health(args) => health::run(args),
            Command::Scan(args) => scan::run(args).await,
            Command::Sweep(command) => sweep::run(command).await,
            Command::Protect(args) => protect::protect(args).await,
            Command::Unprotect { bucket } => protect::unprotect(bucket).await,
            Command::Serve(args) => serve::run(args).await,
            Command::ApiKey(args) => serve::api_key(args),
            Command::NotificationKey(args) => serve::notification_key(args),
            Command::Release(args) => quarantine::release_command(*args).await,
            Command::Quarantine(command) => quarantine::command(command).await,
            Command::Plugin(PluginCommand::Inspect { file, output }) => inspect::run(&file, output).await,
            Command::Plugin(PluginCommand::Run(args)) => run_plugin::run(*args).await,
            Command::Plugin(PluginCommand::New(args)) => scaffold::run(args),
            Command::Clamd(command) => clamd_sidecar::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs: human-readable on stderr by default; with
/// `BUCKETSCAN_LOG_FORMAT=json`, one JSON object per event on stdout (what
/// CloudWatch Logs and other collectors parse), fields at the top level.
/// `BUCKETSCAN_LOG` filters (default `warn`; `info` shows one line per
/// object).
fn init_logging() {
    let filter = || EnvFilter::try_from_env("BUCKETSCAN_LOG").unwrap_or_else(|_| "warn".into());
    if std::env::var("BUCKETSCAN_LOG_FORMAT").is_ok_and(|format| format == "json") {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter())
            .with_writer(std::io::stdout)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
