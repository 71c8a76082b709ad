//! `bucketscan check --config FILE`: validate the config and load every
//! plugin it names, so a broken config is caught before deployment; with
//! `--network`, also reach every AWS endpoint it needs (`network_check`).

use crate::config_args::ConfigArgs;
use bucketscan_engine::{Clamd, Engine, LoadedPipelines};
use bucketscan_runtime::config::Config;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Also call every AWS endpoint the config needs (queues, topic, bus,
    /// results table, buckets) and name those this machine cannot reach.
    #[arg(long)]
    network: bool,
    /// How long each call may take to answer (--network).
    #[arg(long, default_value_t = 10)]
    network_timeout_secs: u64,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source = args.config.source()?;
    let config = Config::load(&source)?;
    let path = source;
    // `[serve]` is the API's; checked here too, so a bad one fails before
    // a deployment rather than at the API task's start.
    bucketscan_serve::config::ServeConfig::from_config(&config)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let engine = Engine::new(&config.engine)?;
    let clamd = Clamd::new(&config.clamav);
    let loaded = LoadedPipelines::load(&engine, config.pipelines()).await?;
    println!("{path}: ok");
    for (name, plugin) in &loaded.plugins {
        let capabilities: Vec<&str> = plugin.capabilities.iter().map(|c| c.as_str()).collect();
        println!(
            "  plugin {name}: {} {}, contract {}, imports [{}]",
            format!("{:?}", plugin.kind).to_lowercase(),
            plugin.label(),
            plugin.contract,
            capabilities.join(", ")
        );
    }
    for (scope, stages) in loaded.config.pipelines() {
        let names: Vec<&str> = stages.iter().map(|s| s.plugin.get_ref().as_str()).collect();
        println!("  pipeline {scope}: {}", names.join(" -> "));
    }
    // clamd being down is not a config error, but worth saying.
    if let Err(err) = clamd.ping().await {
        println!("  note: {err}; scans will report errors until it answers");
    }
    if !args.network {
        return Ok(ExitCode::SUCCESS);
    }
    println!("network:");
    let clients = bucketscan_runtime::aws::Clients::from_env(config.agent.path_style).await;
    let deadline = Duration::from_secs(args.network_timeout_secs);
    let probes = crate::network_check::probe_all(&config, &clients, deadline).await;
    let (report, all_reached) = crate::network_check::report(&probes);
    print!("{report}");
    Ok(if all_reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
