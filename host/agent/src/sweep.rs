//! `bucketscan scan`: a sweep over the objects already in a bucket (or under
//! a prefix), through the same worker as events, with bounded concurrency.
//! Objects already tagged with a result from the current signature database
//! are skipped unless a rescan is asked for.

use crate::worker::{Handled, Worker};
use bucketscan_core::events::ObjectEvent;
use bucketscan_core::tags;
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
    /// A result name, `skipped` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Sweeps the bucket, calling `progress` after each object.
pub async fn sweep(
    worker: Arc<Worker>,
    options: &SweepOptions,
    mut progress: impl FnMut(&SweepItem),
) -> Result<Vec<SweepItem>, String> {
    let s3 = worker.clients.s3_for(&options.bucket).clone();
    // The signature database the results would come from now: objects
    // tagged from this one need no new scan.
    let current_engine = worker.services.clamd.version().await.ok().map(|v| tags::sanitize(&v));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut items = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&options.bucket)
        .set_prefix(options.prefix.clone())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            format!(
                "listing s3://{}: {}",
                options.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )
        })?;
        for object in page.contents() {
            let Some(key) = object.key().map(str::to_owned) else {
                continue;
            };
            let size = object.size().unwrap_or_default().max(0) as u64;
            let event = ObjectEvent {
                bucket: options.bucket.clone(),
                key: key.clone(),
                version_id: None,
                etag: object.e_tag().map(crate::fetch::bare_etag),
                size: Some(size),
                event_name: "Sweep".into(),
            };
            let permit = permits.clone().acquire_owned().await.expect("semaphore stays open");
            let (worker, rescan, current_engine) = (worker.clone(), options.rescan, current_engine.clone());
            tasks.spawn(async move {
                let item = sweep_one(&worker, event, size, rescan, current_engine.as_deref()).await;
                drop(permit);
                item
            });
            while let Some(done) = tasks.try_join_next() {
                let item = done.map_err(|err| err.to_string())?;
                progress(&item);
                items.push(item);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        let item = done.map_err(|err| err.to_string())?;
        progress(&item);
        items.push(item);
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(items)
}

async fn sweep_one(
    worker: &Worker,
    event: ObjectEvent,
    size: u64,
    rescan: bool,
    current_engine: Option<&str>,
) -> SweepItem {
    let item = |outcome: &str, detail: Option<String>| SweepItem {
        key: event.key.clone(),
        size,
        outcome: outcome.to_owned(),
        detail,
    };
    if !rescan {
        if let Some(engine) = current_engine {
            match scanned_with(worker, &event).await {
                Ok(Some((result, tagged_engine))) if tagged_engine == engine && result != "error" => {
                    return item("skipped", Some(format!("already {result} with {engine}")));
                }
                Ok(_) => {}
                Err(err) => return item("failed", Some(err)),
            }
        }
    }
    match worker.handle(&event).await {
        Handled::Scanned(report) => item(report.result, report.findings.first().map(|f| f.signature.clone())),
        Handled::Skipped(why) => item("skipped", Some(why)),
        Handled::Retry(why) => item("failed", Some(why)),
    }
}

/// The result and engine an object is tagged with, if any.
async fn scanned_with(worker: &Worker, event: &ObjectEvent) -> Result<Option<(String, String)>, String> {
    let s3 = worker.clients.s3_for(&event.bucket);
    let tags = crate::fetch::object_tags(s3, &event.bucket, &event.key, None).await?;
    let find = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    Ok(find(&worker.tag_keys.result).zip(find(&worker.tag_keys.engine)))
}
