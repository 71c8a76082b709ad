//! `bucketscan scan s3://bucket/prefix --enqueue`: a sweep as work for the
//! fleet. The listing becomes sweep items on the agents' queue (batches
//! of ten, at the rate the operator sets), which every agent takes like an
//! upload event: the autoscaled service does the scanning, and scales on
//! it. An item names the object as listed (its ETag and size), so an
//! object over a pipeline's limit is never downloaded, and one overwritten
//! since is scanned as it is now; one that carries a current sealed result
//! is skipped without a GET, as the upload path does — unless the sweep
//! asks for a rescan.
//!
//! A sweep is resumable: it reports the last key it queued, and
//! `--start-after KEY` lists from there.

use crate::events::sweep_item_message;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Messages per SendMessageBatch (SQS's most).
pub(crate) const BATCH: usize = 10;
/// Sends of one batch's failed entries before the sweep stops.
const ATTEMPTS: u32 = 4;

/// What to enqueue, where, how fast.
#[derive(Debug, Clone)]
pub struct EnqueueOptions {
    pub bucket: String,
    pub prefix: Option<String>,
    /// List keys after this one (resume a sweep).
    pub start_after: Option<String>,
    pub queue_url: String,
    /// Names the sweep in every item (and in the agents' logs).
    pub sweep_id: String,
    /// Items per second at most.
    pub rate: u32,
    /// Scan again even objects carrying a current sealed result.
    pub rescan: bool,
}

/// What an enqueue did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Enqueued {
    pub sweep_id: String,
    pub queued: u64,
    pub bytes: u64,
    /// The last key queued: `--start-after` resumes after it.
    pub last_key: Option<String>,
}

/// Why an enqueue stopped; `done` says how far it got.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail} (queued {} so far; resume with --start-after {:?})", done.queued, done.last_key.as_deref().unwrap_or(""))]
pub struct EnqueueError {
    pub detail: String,
    pub done: Enqueued,
}

/// Lists the bucket and queues an item per object, calling `progress`
/// after each batch.
pub async fn enqueue(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    options: &EnqueueOptions,
    mut progress: impl FnMut(&Enqueued),
) -> Result<Enqueued, EnqueueError> {
    let mut done = Enqueued {
        sweep_id: options.sweep_id.clone(),
        ..Enqueued::default()
    };
    let mut pace = Pace::new(options.rate);
    let mut pages = s3
        .list_objects_v2()
        .bucket(&options.bucket)
        .set_prefix(options.prefix.clone())
        .set_start_after(options.start_after.clone())
        .into_paginator()
        .send();
    let mut batch: Vec<(String, u64, String)> = Vec::with_capacity(BATCH);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| EnqueueError {
            detail: format!("listing s3://{}: {}", options.bucket, crate::aws::error_text(&err)),
            done: done.clone(),
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let size = object.size().unwrap_or(0).max(0) as u64;
            let message = sweep_item_message(
                &options.bucket,
                key,
                object.e_tag().map(crate::s3_store::bare_etag),
                Some(size),
                &options.sweep_id,
                options.rescan,
            );
            batch.push((key.to_owned(), size, message));
            if batch.len() == BATCH {
                pace.wait(BATCH).await;
                send(sqs, options, &mut batch, &mut done).await?;
                progress(&done);
            }
        }
    }
    if !batch.is_empty() {
        pace.wait(batch.len()).await;
        send(sqs, options, &mut batch, &mut done).await?;
        progress(&done);
    }
    Ok(done)
}

/// Sends `batch` (its failed entries again, a few times), in key order:
/// `done` only ever counts a prefix of the listing, so a resume misses
/// nothing.
async fn send(
    sqs: &aws_sdk_sqs::Client,
    options: &EnqueueOptions,
    batch: &mut Vec<(String, u64, String)>,
    done: &mut Enqueued,
) -> Result<(), EnqueueError> {
    let bodies: Vec<&str> = batch.iter().map(|(_, _, body)| body.as_str()).collect();
    let (sent, failure) = send_messages(sqs, &options.queue_url, &bodies).await;
    for (key, size, _) in batch.drain(..sent) {
        done.queued += 1;
        done.bytes += size;
        done.last_key = Some(key);
    }
    match failure {
        None => Ok(()),
        Some(detail) => Err(EnqueueError {
            detail,
            done: done.clone(),
        }),
    }
}

/// Sends up to ten `bodies` in one batch (its failed entries again, a few
/// times). Returns how many *leading* bodies are sure to be queued, and
/// why the rest are not: entries after the first failure that were sent
/// are queued twice by a caller that resends from there (a duplicate,
/// never a gap).
pub(crate) async fn send_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &[&str],
) -> (usize, Option<String>) {
    let mut pending: Vec<usize> = (0..bodies.len()).collect();
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let entries = pending
            .iter()
            .map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(bodies[i])
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        match sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(answer) => {
                let failed: Vec<usize> = answer.failed().iter().filter_map(|f| f.id().parse().ok()).collect();
                if let Some(first) = answer.failed().first() {
                    last_error = format!("{}: {}", first.code(), first.message().unwrap_or_default());
                }
                pending.retain(|i| failed.contains(i));
            }
            Err(err) => last_error = crate::aws::error_text(&err),
        }
        if pending.is_empty() {
            return (bodies.len(), None);
        }
    }
    let sent = pending.iter().min().copied().unwrap_or(bodies.len());
    (sent, Some(format!("sending to {queue_url}: {last_error}")))
}

/// At most `rate` items a second, on average since the start.
struct Pace {
    started: Instant,
    rate: f64,
    sent: u64,
}

impl Pace {
    fn new(rate: u32) -> Self {
        Self {
            started: Instant::now(),
            rate: f64::from(rate.max(1)),
            sent: 0,
        }
    }

    async fn wait(&mut self, items: usize) {
        self.sent += items as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate);
        if let Some(early) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(early).await;
        }
    }
}
