//! `bucketscan scan`: a sweep over the objects already in a bucket (or under
//! a prefix), through the same scan path as events, with bounded
//! concurrency. An object whose result tags are *sealed* by an agent for
//! exactly its bytes, from the current signature database, is skipped
//! unless a rescan is asked for; result tags anyone else could have
//! written (an uploader can set any tag) never make a sweep skip.

use crate::worker::{Handled, Worker};
use bucketscan_core::seal::{SealOrigin, SealSubject};
use bucketscan_core::tags;
use bucketscan_scan::Target;
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

/// Sweeps the bucket, calling `progress` after each object.
pub async fn sweep(
    worker: Arc<Worker>,
    options: &SweepOptions,
    mut progress: impl FnMut(&SweepItem),
) -> Result<Vec<SweepItem>, String> {
    let s3 = worker.clients.s3_for(&options.bucket).clone();
    // The signature database the results would come from now: objects
    // sealed from this one need no new scan.
    let current_engine = worker.clamd().version().await.ok().map(|v| tags::sanitize(&v));
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
            let target = Target {
                bucket: options.bucket.clone(),
                key,
                version_id: None,
                etag: object.e_tag().map(crate::s3_store::bare_etag),
                size: Some(object.size().unwrap_or_default().max(0) as u64),
            };
            let permit = permits.clone().acquire_owned().await.expect("semaphore stays open");
            let (worker, rescan, current_engine) = (worker.clone(), options.rescan, current_engine.clone());
            tasks.spawn(async move {
                let item = sweep_one(&worker, target, rescan, current_engine.as_deref()).await;
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

async fn sweep_one(worker: &Worker, target: Target, rescan: bool, current_engine: Option<&str>) -> SweepItem {
    let item = |outcome: &str, detail: Option<String>| SweepItem {
        key: target.key.clone(),
        size: target.size.unwrap_or(0),
        outcome: outcome.to_owned(),
        detail,
    };
    if !rescan && let Some(engine) = current_engine {
        match sealed_result(worker, &target, engine).await {
            Ok(Some(result)) => return item("skipped", Some(format!("already {result} with {engine}"))),
            Ok(None) => {}
            Err(err) => return item("failed", Some(err)),
        }
    }
    match worker.handle_target(&target).await {
        Handled::Scanned(report) => {
            let outcome = match report.outcome {
                bucketscan_core::report::Outcome::Held(_) => "held",
                _ => report.result().as_str(),
            };
            item(outcome, report.findings().first().map(|f| f.signature.clone()))
        }
        Handled::Skipped(why) => item("skipped", Some(why)),
        Handled::Retry(why) => item("failed", Some(why)),
    }
}

/// The result an object carries, when an agent sealed it for exactly these
/// bytes from `engine` (and it is not an error).
async fn sealed_result(worker: &Worker, target: &Target, engine: &str) -> Result<Option<String>, String> {
    let s3 = worker.clients.s3_for(&target.bucket);
    let out = s3
        .get_object_tagging()
        .bucket(&target.bucket)
        .key(&target.key)
        .send()
        .await
        .map_err(|err| format!("GetObjectTagging: {}", aws_sdk_s3::error::DisplayErrorContext(&err)))?;
    let tags: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    let keys = &worker.scanner.tag_keys;
    let subject = SealSubject {
        bucket: &target.bucket,
        key: &target.key,
        etag: target.etag.as_deref().unwrap_or_default(),
    };
    if keys.verify(&worker.scanner.sealer, subject, &tags) != Some(SealOrigin::Scanned) {
        return Ok(None);
    }
    let tagged_engine = tags.iter().find(|(k, _)| *k == keys.engine).map(|(_, v)| v.as_str());
    let result = keys.result_of(&tags).unwrap_or_default();
    Ok((tagged_engine == Some(engine) && result != "error").then(|| result.to_owned()))
}
