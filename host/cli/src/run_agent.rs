//! `bucketscan run --config FILE`: the long-running agent.

use anyhow::{bail, Context as _};
use bucketscan_agent::agent::{self, LoopSettings};
use bucketscan_agent::aws::Clients;
use bucketscan_agent::fetch::SpoolConfig;
use bucketscan_agent::notify::Notifier;
use bucketscan_agent::s3_storage::{OwnWrites, S3Storage};
use bucketscan_agent::worker::Worker;
use bucketscan_core::config::Config;
use bucketscan_engine::{Clamd, HostServices, LoadedPipelines, PluginHost};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    if config.agent.queues.is_empty() {
        bail!("{}: [agent] queues is empty; name at least one SQS queue URL", path.display());
    }
    let host = PluginHost::new(&config.host)?;
    let clients = Clients::from_env(config.agent.path_style).await;
    let own_writes = Arc::new(OwnWrites::default());
    let storage = Arc::new(S3Storage::new(clients.s3.clone(), own_writes.clone()));
    let services = Arc::new(HostServices::new(Clamd::new(&config.clamav), storage));
    let agent_id = config
        .agent
        .agent_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let notifier = config
        .notifications
        .topic_arn
        .clone()
        .map(|arn| Notifier::new(clients.sns.clone(), arn, agent_id.clone()));
    let settings = LoopSettings {
        queue_urls: config.agent.queues.clone(),
        concurrency: config.agent.concurrency,
        visibility_timeout: Duration::from_secs(config.agent.visibility_timeout_secs),
        wait_time: Duration::from_secs(config.agent.wait_time_secs),
        retry_backoff: Duration::from_secs(config.agent.retry_backoff_secs),
    };
    let spool = SpoolConfig {
        threshold_bytes: config.agent.spool_threshold_bytes,
        dir: config.agent.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let tag_keys = config.tags.clone();
    let pipelines = LoadedPipelines::load(&host, config).await?;
    let worker = Arc::new(Worker {
        host,
        pipelines,
        services,
        clients: clients.clone(),
        spool,
        tag_keys,
        notifier,
        own_writes,
    });

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
    agent::run(worker, clients.sqs, settings, stopped).await;
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "bucketscan".into())
}
