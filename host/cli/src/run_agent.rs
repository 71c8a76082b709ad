//! `bucketscan run`: the long-running agent.

use anyhow::{Context as _, bail};
use bucketscan_agent::receive::{self, LoopSettings};
use bucketscan_core::config::ConfigSource;
use bucketscan_runtime::agent::Agent;
use bucketscan_runtime::metrics::{Metrics, MetricsFormat};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
    /// Serve /healthz, /readyz (and /metrics) on this address.
    #[arg(long, env = "BUCKETSCAN_HEALTH_ADDR", value_name = "HOST:PORT")]
    health_addr: Option<SocketAddr>,
    /// How metrics are exposed: Prometheus on the health address, or
    /// CloudWatch Embedded Metric Format lines on stdout.
    #[arg(long, env = "BUCKETSCAN_METRICS", value_enum, default_value_t = MetricsFormat::None)]
    metrics: MetricsFormat,
    /// After SIGTERM, how long objects in flight may take before their
    /// messages are released to other agents (keep it below ECS's
    /// stopTimeout).
    #[arg(long, env = "BUCKETSCAN_STOP_TIMEOUT_SECS", default_value_t = 25)]
    stop_timeout_secs: u64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let source = args.config.source()?;
    let config = bucketscan_runtime::config::Config::load(&source)?;
    if config.agent.queues.is_empty() {
        bail!("{source}: [agent] queues is empty; name at least one SQS queue URL");
    }
    if args.metrics == MetricsFormat::Prometheus && args.health_addr.is_none() {
        bail!("--metrics prometheus is served on the health address; set --health-addr (BUCKETSCAN_HEALTH_ADDR)");
    }
    let settings = LoopSettings {
        queue_urls: config.agent.queues.clone(),
        sweep_queue_urls: config.agent.sweep_queues.clone(),
        concurrency: config.agent.concurrency,
        sweep_slots: config.agent.sweep_slots(),
        visibility_timeout: Duration::from_secs(config.agent.visibility_timeout_secs),
        wait_time: Duration::from_secs(config.agent.wait_time_secs),
        retry_backoff: Duration::from_secs(config.agent.retry_backoff_secs),
        stop_timeout: Duration::from_secs(args.stop_timeout_secs),
        object_timeout: Duration::from_secs(config.agent.object_timeout_secs),
    };
    let mut agent = Agent::from_config(config).await?;
    let mut metrics = Metrics::new(args.metrics);
    if let Some(results) = &agent.results {
        metrics = metrics.with_results(results.failures.clone(), results.requests.clone());
    }
    let metrics = Arc::new(metrics);
    agent.metrics = metrics.clone();
    let agent = Arc::new(agent);
    let sqs = agent.clients.sqs.clone();
    if let Some(addr) = args.health_addr {
        bucketscan_runtime::health::serve(addr, agent.clone(), metrics).await?;
    }
    start_background(&agent, source)?;

    let stopped = stop_on_signal()?;
    receive::run(agent, sqs, settings, stopped).await;
    Ok(ExitCode::SUCCESS)
}

/// What every long-running command keeps going beside its work: the
/// signature databases synced and proven, hot reload (file changes and
/// SIGHUP), the allow-list object reloaded.
pub(crate) fn start_background(agent: &Arc<Agent>, source: ConfigSource) -> anyhow::Result<()> {
    // Synced, loaded and proven before the first scan: readiness waits
    // for this.
    if let Some(keeper) = agent.signature_keeper() {
        tokio::spawn(keeper.run());
    }
    // Compiled and swapped in as the bucket changes; readiness waits for
    // every set's first version.
    if let Some(keeper) = agent.rule_keeper() {
        tokio::spawn(keeper.run());
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = reload_tx.try_send(());
        }
    });
    bucketscan_runtime::reload::spawn(agent.clone(), source, reload_rx)?;
    agent.spawn_allow_list_refresh();
    Ok(())
}

/// Turns true on SIGTERM or SIGINT.
pub(crate) fn stop_on_signal() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    Ok(stopped)
}
