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
//! The listing is ListObjectsV2, or an S3 Inventory report
//! ([`crate::inventory`]): a bucket of millions of objects is listed
//! from the report S3 writes daily, not by a million list calls.
//!
//! A sweep is resumable: it reports the last key it queued (and, for an
//! inventory, its position), and `--start-after KEY` (`--resume-at
//! FILE:ROW`) goes on from there.

use crate::events::sweep_item_message;
use crate::inventory::{MAX_FILE_BYTES, Manifest};
use crate::results::sweeps::SweepRecord;
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
    /// Where the objects are listed from.
    pub listing: Listing,
    pub queue_url: String,
    /// Names the sweep in every item (and in the agents' logs).
    pub sweep_id: String,
    /// Items per second at most.
    pub rate: u32,
    /// Scan again even objects carrying a current sealed result.
    pub rescan: bool,
}

/// Where a sweep's objects come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// ListObjectsV2 of the bucket, after this key (a resume).
    Bucket { start_after: Option<String> },
    /// An S3 Inventory report of the bucket: its `manifest.json` as
    /// `s3://BUCKET/KEY`, from a position on (a resume).
    Inventory {
        manifest: String,
        resume_at: Option<Position>,
    },
}

/// A place in an inventory report: data file `file` (from 0, in the
/// manifest's order), its rows from `row` on. Written `FILE:ROW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub file: usize,
    pub row: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.row)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text
            .split_once(':')
            .and_then(|(file, row)| Some((file.parse().ok()?, row.parse().ok()?)));
        let (file, row) = parsed.ok_or_else(|| format!("`{text}` is not a FILE:ROW position (e.g. 3:1500)"))?;
        Ok(Self { file, row })
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Enqueued {
    pub sweep_id: String,
    pub queued: u64,
    pub bytes: u64,
    /// The last key queued: `--start-after` resumes a listing after it.
    pub last_key: Option<String>,
    /// For an inventory: `--resume-at` resumes from here.
    pub resume_at: Option<String>,
}

impl Enqueued {
    /// The option that resumes after what is done.
    pub fn resume_hint(&self) -> String {
        match &self.resume_at {
            Some(position) => format!("--resume-at {position}"),
            None => format!("--start-after {:?}", self.last_key.as_deref().unwrap_or("")),
        }
    }
}

/// Why an enqueue stopped; `done` says how far it got.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail} (queued {} so far; resume with {})", done.queued, done.resume_hint())]
pub struct EnqueueError {
    pub detail: String,
    pub done: Enqueued,
}

/// One item ready to send, and where a resume would start after it.
struct Pending {
    key: String,
    size: u64,
    message: String,
    resume_at: Option<Position>,
}

/// An enqueue under way: the batch being filled, the pace, the tally.
struct Run<'a, 'j, P: FnMut(&Enqueued)> {
    sqs: &'a aws_sdk_sqs::Client,
    options: &'a EnqueueOptions,
    done: Enqueued,
    pace: Pace,
    batch: Vec<Pending>,
    progress: P,
    journal: Option<&'j mut Journal<'a>>,
}

impl<P: FnMut(&Enqueued)> Run<'_, '_, P> {
    fn fail(&self, detail: String) -> EnqueueError {
        EnqueueError {
            detail,
            done: self.done.clone(),
        }
    }

    /// Queues `key` as listed (sent with the next full batch).
    async fn push(
        &mut self,
        key: &str,
        etag: Option<String>,
        size: u64,
        resume_at: Option<Position>,
    ) -> Result<(), EnqueueError> {
        let options = self.options;
        if options.prefix.as_deref().is_some_and(|prefix| !key.starts_with(prefix)) {
            return Ok(());
        }
        let message = sweep_item_message(
            &options.bucket,
            key,
            etag,
            Some(size),
            &options.sweep_id,
            options.rescan,
        );
        self.batch.push(Pending {
            key: key.to_owned(),
            size,
            message,
            resume_at,
        });
        if self.batch.len() == BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the batch (its failed entries again, a few times), in
    /// listing order: `done` only ever counts a prefix of the listing, so
    /// a resume misses nothing.
    async fn flush(&mut self) -> Result<(), EnqueueError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.pace.wait(self.batch.len()).await;
        let bodies: Vec<&str> = self.batch.iter().map(|item| item.message.as_str()).collect();
        let (sent, failure) = send_messages(self.sqs, &self.options.queue_url, &bodies).await;
        for item in self.batch.drain(..sent) {
            self.done.queued += 1;
            self.done.bytes += item.size;
            self.done.last_key = Some(item.key);
            self.done.resume_at = item.resume_at.map(|p| p.to_string());
        }
        (self.progress)(&self.done);
        if let Some(journal) = self.journal.as_deref_mut() {
            journal.save(&self.done, QUEUING, false).await;
        }
        match failure {
            None => Ok(()),
            Some(detail) => Err(self.fail(detail)),
        }
    }
}

/// Lists the bucket (or reads its inventory) and queues an item per
/// object, calling `progress` after each batch. `s3` reads the bucket, or
/// the inventory's bucket.
pub async fn enqueue<'a>(
    s3: &aws_sdk_s3::Client,
    sqs: &'a aws_sdk_sqs::Client,
    options: &'a EnqueueOptions,
    journal: Option<&mut Journal<'a>>,
    progress: impl FnMut(&Enqueued),
) -> Result<Enqueued, EnqueueError> {
    let mut run = Run {
        sqs,
        options,
        done: Enqueued {
            sweep_id: options.sweep_id.clone(),
            ..Enqueued::default()
        },
        pace: Pace::new(options.rate),
        batch: Vec::with_capacity(BATCH),
        progress,
        journal,
    };
    let listed = list(s3, &mut run).await.and(run.flush().await);
    if let Some(journal) = run.journal.as_deref_mut() {
        let state = if listed.is_ok() { QUEUED } else { STOPPED };
        journal.save(&run.done, state, true).await;
    }
    listed.map(|()| run.done)
}

async fn list<P: FnMut(&Enqueued)>(s3: &aws_sdk_s3::Client, run: &mut Run<'_, '_, P>) -> Result<(), EnqueueError> {
    let options = run.options;
    match &options.listing {
        Listing::Bucket { start_after } => list_bucket(s3, run, start_after.clone()).await,
        Listing::Inventory { manifest, resume_at } => {
            read_inventory(s3, run, manifest, resume_at.unwrap_or_default()).await
        }
    }
}

async fn list_bucket<P: FnMut(&Enqueued)>(
    s3: &aws_sdk_s3::Client,
    run: &mut Run<'_, '_, P>,
    start_after: Option<String>,
) -> Result<(), EnqueueError> {
    let options = run.options;
    let mut pages = s3
        .list_objects_v2()
        .bucket(&options.bucket)
        .set_prefix(options.prefix.clone())
        .set_start_after(start_after)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            run.fail(format!(
                "listing s3://{}: {}",
                options.bucket,
                crate::aws::error_text(&err)
            ))
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let size = object.size().unwrap_or(0).max(0) as u64;
            let etag = object.e_tag().map(crate::s3_store::bare_etag);
            run.push(key, etag, size, None).await?;
        }
    }
    Ok(())
}

/// Queues the current objects an S3 Inventory report lists, file by file
/// from `from` on.
async fn read_inventory<P: FnMut(&Enqueued)>(
    s3: &aws_sdk_s3::Client,
    run: &mut Run<'_, '_, P>,
    manifest_url: &str,
    from: Position,
) -> Result<(), EnqueueError> {
    let manifest = open_manifest(s3, manifest_url, &run.options.bucket)
        .await
        .map_err(|why| run.fail(why))?;
    let manifest = std::sync::Arc::new(manifest);
    for (index, file) in manifest.files.iter().enumerate().skip(from.file) {
        if file.size > MAX_FILE_BYTES {
            return Err(run.fail(format!(
                "s3://{}/{}: {} bytes; data files over {MAX_FILE_BYTES} are not read",
                manifest.destination_bucket, file.key, file.size
            )));
        }
        let bytes = get_bytes(s3, &manifest.destination_bucket, &file.key)
            .await
            .map_err(|why| run.fail(why))?;
        // Parsed on a blocking thread, a chunk of rows at a time.
        let (chunks, mut received) = tokio::sync::mpsc::channel(4);
        let (reader, file) = (manifest.clone(), file.clone());
        let parsing = tokio::task::spawn_blocking(move || {
            reader.read_rows(&file, bytes, |chunk| {
                chunks.blocking_send(chunk).map_err(|_| "the sweep stopped".to_owned())
            })
        });
        let first = if index == from.file { from.row } else { 0 };
        let mut row_index = 0;
        while let Some(chunk) = received.recv().await {
            for row in chunk {
                row_index += 1;
                if row_index > first && row.is_current_object() {
                    let after = Position {
                        file: index,
                        row: row_index,
                    };
                    run.push(&row.key, row.etag, row.size, Some(after)).await?;
                }
            }
        }
        parsing
            .await
            .map_err(|err| run.fail(err.to_string()))?
            .map_err(|err| run.fail(format!("s3://{}/{err}", manifest.destination_bucket)))?;
    }
    Ok(())
}

/// The manifest at `url`, if it is a report of `bucket` whose data files
/// are beside it: a manifest that sends the sweep to read another
/// bucket is refused.
async fn open_manifest(s3: &aws_sdk_s3::Client, url: &str, bucket: &str) -> Result<Manifest, String> {
    let (manifest_bucket, key) = bucketscan_core::allow::parse_s3_url(url)?;
    let json = get_bytes(s3, &manifest_bucket, &key).await?;
    let manifest = Manifest::parse(url, &json).map_err(|err| err.to_string())?;
    if manifest.source_bucket != bucket {
        return Err(format!(
            "{url} is the inventory of bucket `{}`, not of `{bucket}`",
            manifest.source_bucket
        ));
    }
    if manifest.destination_bucket != manifest_bucket {
        return Err(format!(
            "{url} puts its data files in bucket `{}`, not beside it in `{manifest_bucket}`",
            manifest.destination_bucket
        ));
    }
    Ok(manifest)
}

async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<bytes::Bytes, String> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| format!("reading s3://{bucket}/{key}: {}", crate::aws::error_text(&err)))?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|err| format!("reading s3://{bucket}/{key}: {err}"))?;
    Ok(body.into_bytes())
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

/// A sweep's record states (see `results::sweeps`).
pub const QUEUING: &str = "queuing";
pub const QUEUED: &str = "queued";
pub const STOPPED: &str = "stopped";
/// How often a running enqueue rewrites its record.
const JOURNAL_EVERY: Duration = Duration::from_secs(5);

/// Where an enqueue keeps its sweep's record (with `[results]`), for
/// `bucketscan sweep status`.
pub struct Journal<'a> {
    store: &'a crate::results::ResultsStore,
    /// What earlier runs of a resumed sweep queued.
    before: SweepRecord,
    saved: Option<Instant>,
}

impl<'a> Journal<'a> {
    /// The journal of `options`' sweep; a sweep id used before (a resume,
    /// or the same sweep queued again) goes on counting from its record,
    /// as its results do.
    pub async fn open(store: &'a crate::results::ResultsStore, options: &EnqueueOptions) -> Result<Self, String> {
        let prior = store.load_sweep(&options.sweep_id).await?;
        let now = bucketscan_scan::now_rfc3339();
        let before = prior.unwrap_or_else(|| SweepRecord {
            id: options.sweep_id.clone(),
            bucket: options.bucket.clone(),
            source: match &options.listing {
                Listing::Inventory { manifest, .. } => manifest.clone(),
                Listing::Bucket { .. } => {
                    format!("s3://{}/{}", options.bucket, options.prefix.as_deref().unwrap_or(""))
                }
            },
            started_at: now,
            ..SweepRecord::default()
        });
        Ok(Self {
            store,
            before,
            saved: None,
        })
    }

    /// A resume at a position is one in the report the sweep started
    /// from: tomorrow's report has other rows at that position.
    pub fn check_resume(&self, options: &EnqueueOptions) -> Result<(), String> {
        match &options.listing {
            Listing::Inventory {
                manifest,
                resume_at: Some(position),
            } if self.before.queued > 0 && self.before.source != *manifest => Err(format!(
                "sweep `{}` was queued from {}, not {manifest}: --resume-at {position} is a position in that report",
                options.sweep_id, self.before.source
            )),
            _ => Ok(()),
        }
    }

    /// Records `done` in state `state` (at most every few seconds unless
    /// `now`); a failed write is logged, and the sweep goes on.
    pub async fn save(&mut self, done: &Enqueued, state: &str, now: bool) {
        if !now && self.saved.is_some_and(|at| at.elapsed() < JOURNAL_EVERY) {
            return;
        }
        self.saved = Some(Instant::now());
        let record = SweepRecord {
            state: state.to_owned(),
            queued: self.before.queued + done.queued,
            bytes: self.before.bytes + done.bytes,
            last_key: done.last_key.clone().or(self.before.last_key.clone()),
            resume_at: done.resume_at.clone().or(self.before.resume_at.clone()),
            updated_at: bucketscan_scan::now_rfc3339(),
            ..self.before.clone()
        };
        if let Err(err) = self.store.save_sweep(&record).await {
            tracing::warn!(sweep = %record.id, "the sweep's record was not written (`sweep status` lags): {err}");
        }
    }
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
