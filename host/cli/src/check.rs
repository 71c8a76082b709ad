//! `bucketscan check --config FILE`: validate the config and load every
//! plugin it names, so a broken config is caught before deployment.

use bucketscan_engine::{Clamd, Engine, LoadedPipelines};
use bucketscan_runtime::config::Config;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load_file(path)?;
    // `[serve]` is the API's; checked here too, so a bad one fails before
    // a deployment rather than at the API task's start.
    bucketscan_serve::config::ServeConfig::from_config(&config)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let engine = Engine::new(&config.engine)?;
    let clamd = Clamd::new(&config.clamav);
    let loaded = LoadedPipelines::load(&engine, config.pipelines()).await?;
    println!("{}: ok", path.display());
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
    Ok(ExitCode::SUCCESS)
}
