//! `bucketscan scan`: a sweep over the objects already in a bucket (or under
//! a prefix), through the same scan path as events, with bounded
//! concurrency. An object whose result tags are *sealed* by an agent for
//! exactly its bytes (checked by their SHA-256, so they are read), from the
//! current signature database, is not scanned again unless a rescan is
//! asked for; result tags anyone else could have written (an uploader can
//! set any tag) never make a sweep skip. `--rescan` also scans the agents'
//! own copies.

use crate::agent::{Agent, Handled};
use bucketscan_core::tags;
use bucketscan_scan::{ScanSlot, TAILS_PER_SLOT, Target};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub bucket: String,
    pub prefix: Option<String>,
    pub rescan: bool,
    pub concurrency: usize,
}

/// What happened to one object.
#[derive(Debug, Clone, Serialize)]
pub struct SweepItem {
    pub key: String,
    pub size: u64,
    /// A result name, `held`, `skipped` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Why a sweep stopped before it listed every object. (One object that
/// fails is an item with outcome `failed`, not a stopped sweep.)
#[derive(Debug, Clone, thiserror::Error)]
pub enum SweepError {
    #[error("listing s3://{bucket}: {detail}")]
    Listing { bucket: String, detail: String },
    #[error("a scan task failed: {0}")]
    Task(String),
}

/// Sweeps the bucket, calling `progress` after each object.
pub async fn sweep(
    agent: Arc<Agent>,
    options: &SweepOptions,
    mut progress: impl FnMut(&SweepItem),
) -> Result<Vec<SweepItem>, SweepError> {
    let s3 = agent.clients.s3_for(&options.bucket).clone();
    // The signature database the results would come from now: objects
    // sealed from this one need no new scan.
    let current_engine = agent.clamd().version().await.ok().map(|v| tags::sanitize(&v));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let tails = Arc::new(Semaphore::new(options.concurrency.max(1) * TAILS_PER_SLOT));
    let mut tasks = JoinSet::new();
    let mut items = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&options.bucket)
        .set_prefix(options.prefix.clone())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| SweepError::Listing {
            bucket: options.bucket.clone(),
            detail: crate::aws::error_text(&err),
        })?;
        for object in page.contents() {
            let Some(key) = object.key().map(str::to_owned) else {
                continue;
            };
            let target = Target {
                etag: object.e_tag().map(crate::s3_store::bare_etag),
                size: Some(object.size().unwrap_or_default().max(0) as u64),
                rescan: options.rescan,
                skip_if_scanned_with: current_engine.clone().filter(|_| !options.rescan),
                ..Target::new(&options.bucket, &key)
            };
            let permit = permits.clone().acquire_owned().await.expect("semaphore stays open");
            let slot = ScanSlot::new(permit, tails.clone());
            let agent = agent.clone();
            tasks.spawn(async move { sweep_one(&agent, target, &slot).await });
            while let Some(done) = tasks.try_join_next() {
                let item = done.map_err(|err| SweepError::Task(err.to_string()))?;
                progress(&item);
                items.push(item);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        let item = done.map_err(|err| SweepError::Task(err.to_string()))?;
        progress(&item);
        items.push(item);
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(items)
}

async fn sweep_one(agent: &Agent, target: Target, slot: &ScanSlot) -> SweepItem {
    let item = |outcome: &str, detail: Option<String>| SweepItem {
        key: target.key.clone(),
        size: target.size.unwrap_or(0),
        outcome: outcome.to_owned(),
        detail,
    };
    match agent.handle_target(&target, slot).await {
        Handled::Scanned(report) => {
            let outcome = match report.outcome {
                bucketscan_core::report::Outcome::Held(_) => "held",
                _ => report.result().as_str(),
            };
            item(outcome, report.findings().first().map(|f| f.signature.clone()))
        }
        Handled::Skipped(why) => item("skipped", Some(why)),
        Handled::Retry { why, .. } => item("failed", Some(why)),
    }
}
