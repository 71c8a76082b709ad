//! `bucketscan run --config FILE`: the long-running agent.

use anyhow::{bail, Context as _};
use bucketscan_agent::agent::{self, LoopSettings};
use bucketscan_agent::worker::Worker;
use bucketscan_core::config::Config;
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
    let settings = LoopSettings {
        queue_urls: config.agent.queues.clone(),
        concurrency: config.agent.concurrency,
        visibility_timeout: Duration::from_secs(config.agent.visibility_timeout_secs),
        wait_time: Duration::from_secs(config.agent.wait_time_secs),
        retry_backoff: Duration::from_secs(config.agent.retry_backoff_secs),
    };
    let signatures = config.signatures.clone();
    let worker = Arc::new(Worker::from_config(config).await?);
    let sqs = worker.clients.sqs.clone();
    if let Some(signatures) = signatures.filter(|s| s.bucket.is_some()) {
        // Sync before the first message, so a fresh task never scans with
        // whatever database its image happened to carry.
        match bucketscan_agent::signatures::sync_once(&worker.clients.s3, &signatures).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::info!(files = ?changed, "signatures synced at start");
                if let Err(err) = worker.services.clamd.reload().await {
                    tracing::warn!("clamd RELOAD failed: {err}");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::error!("signature sync failed at start: {err}"),
        }
        let (s3, worker) = (worker.clients.s3.clone(), worker.clone());
        tokio::spawn(async move { bucketscan_agent::signatures::keep_synced(s3, signatures, &worker.services.clamd).await });
    }

    // Hot reload: file changes and SIGHUP.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = reload_tx.try_send(());
        }
    });
    bucketscan_agent::reload::spawn(worker.clone(), path.to_owned(), reload_rx)?;

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
    agent::run(worker, sqs, settings, stopped).await;
    Ok(ExitCode::SUCCESS)
}
