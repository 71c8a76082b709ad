//! The results store: every result an agent publishes is also recorded in
//! a DynamoDB table ([`record`] has its layout), which a fleet of tasks
//! writes at once and nobody runs a server for. It is what answers "what
//! happened to this object last Tuesday", the console's searches, and a
//! sweep's progress.
//!
//! The store is one more destination of the publish step: the scan path
//! records before it deletes anything, so a write that fails leaves the
//! object in place and the event comes back, exactly like a failed SNS
//! publish (containment already happened; only the deferred deletes
//! wait). Failures are counted (`bucketscan_results_write_failures_total`).
//! Agents' records are written in batches ([`batch`]), after the scan slot
//! was given back.

mod batch;
pub mod claims;
pub mod record;
pub mod revocations;
pub mod search;
pub mod sweeps;

use crate::notify::SnsPublisher;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use bucketscan_core::report::ScanReport;
use bucketscan_scan::{PublishError, Publisher};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use std::collections::HashMap;
use time::OffsetDateTime;

/// `[results]`: the table results are recorded in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResultsConfig {
    /// The DynamoDB table (name or ARN), as the templates create it.
    pub table: String,
    /// How long a result is kept, in days (the table's TTL); 0 keeps it.
    #[serde(default = "ResultsConfig::default_keep_days")]
    pub keep_days: u32,
    /// How long a result waits for others to be written with it (one
    /// request for up to 25), in milliseconds; 0 sends what is waiting.
    #[serde(default = "ResultsConfig::default_batch_wait_ms")]
    pub batch_wait_ms: u64,
}

impl ResultsConfig {
    /// The longest `batch-wait-ms`: every object's alert and deferred
    /// deletes wait on its record.
    pub const MAX_BATCH_WAIT_MS: u64 = 5_000;

    fn default_keep_days() -> u32 {
        400
    }

    fn default_batch_wait_ms() -> u64 {
        200
    }
}

/// Writes (and reads) the results table.
pub struct ResultsStore {
    client: aws_sdk_dynamodb::Client,
    config: ResultsConfig,
    agent_id: String,
    /// The digest of the config this agent runs now (see
    /// [`crate::config::digest`]): recorded with each result, so the
    /// console can tell which config is live on which agent.
    config_digest: arc_swap::ArcSwap<String>,
    /// Writes that failed (each one sent its event back); shared with
    /// the metrics registry.
    pub failures: Counter,
    /// Write requests sent (a batch of results is one); shared with the
    /// metrics registry.
    pub requests: Counter,
    /// Batches the agents' records; started with the first.
    batcher: std::sync::Mutex<Option<batch::Batcher>>,
}

impl ResultsStore {
    pub fn new(client: aws_sdk_dynamodb::Client, config: ResultsConfig, agent_id: String) -> Self {
        Self {
            client,
            config,
            agent_id,
            config_digest: arc_swap::ArcSwap::from_pointee(String::new()),
            failures: Counter::default(),
            requests: Counter::default(),
            batcher: std::sync::Mutex::new(None),
        }
    }

    /// The config this agent runs from now on (at start, and after each
    /// reload).
    pub fn set_config_digest(&self, digest: String) {
        self.config_digest.store(std::sync::Arc::new(digest));
    }

    /// Records `report` as this agent's, in a batch with the results of
    /// other objects (see [`batch`]); `now`: sent at once, with whatever
    /// else is waiting.
    pub async fn record(&self, report: &ScanReport, now: bool) -> Result<(), String> {
        let item = self.item(report, &self.agent_id)?;
        self.batcher().write(item, now).await
    }

    /// The batcher, started on the current runtime when there is none, or
    /// when the one there is stopped with its runtime.
    fn batcher(&self) -> batch::Batcher {
        let mut batcher = self.batcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*batcher {
            Some(running) if !running.stopped() => running.clone(),
            _ => {
                let started = batch::Batcher::start(
                    self.client.clone(),
                    self.config.table.clone(),
                    std::time::Duration::from_millis(self.config.batch_wait_ms),
                    self.requests.clone(),
                );
                *batcher = Some(started.clone());
                started
            }
        }
    }

    /// Records a `POST /v1/scan` upload: under the pseudo-bucket
    /// `api:PIPELINE` (never a real bucket's history), by this agent for
    /// the key `caller`. A failure is counted and returned; nothing waits
    /// on it (no object to contain).
    pub async fn record_upload(&self, report: &ScanReport, pipeline: &str, caller: &str) -> Result<(), String> {
        let mut upload = report.clone();
        upload.bucket = format!("api:{pipeline}");
        let item = self.item(&upload, &format!("{} (API key {caller})", self.agent_id))?;
        // Sent at once: the caller waits for its answer, no slot to free.
        let recorded = self.batcher().write(item, true).await;
        if recorded.is_err() {
            self.failures.inc();
        }
        recorded
    }

    /// The item recording `report` by `agent`, now.
    fn item(&self, report: &ScanReport, agent: &str) -> Result<batch::Item, String> {
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).map_err(|err| err.to_string())?;
        let nonce = hex::encode(nonce);
        let recorded = record::Recorded {
            agent,
            at: OffsetDateTime::now_utc(),
            keep_days: (self.config.keep_days > 0).then_some(self.config.keep_days),
            nonce: &nonce,
            body: SnsPublisher::body(report, agent),
            config: &self.config_digest.load(),
        };
        Ok(record::item(report, &recorded))
    }

    /// Every recorded result of `bucket`/`key`, oldest first (at most
    /// `limit`).
    pub async fn history(&self, bucket: &str, key: &str, limit: i32) -> Result<Vec<StoredResult>, String> {
        self.history_in_order(bucket, key, limit, true).await
    }

    /// The newest `limit` results of `bucket`/`key`, newest first: what
    /// a page shows (an uploader who overwrote a key a thousand times
    /// cannot push its latest scan out of view).
    pub async fn latest_history(&self, bucket: &str, key: &str, limit: i32) -> Result<Vec<StoredResult>, String> {
        self.history_in_order(bucket, key, limit, false).await
    }

    async fn history_in_order(
        &self,
        bucket: &str,
        key: &str,
        limit: i32,
        oldest_first: bool,
    ) -> Result<Vec<StoredResult>, String> {
        let query = self
            .client
            .query()
            .table_name(&self.config.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(record::object_pk(bucket, key)))
            .scan_index_forward(oldest_first)
            .limit(limit);
        Self::results_of(query).await
    }

    /// The results recorded for `bucket` on `day` (`YYYY-MM-DD`, UTC),
    /// newest first (at most `limit`).
    pub async fn bucket_day(&self, bucket: &str, day: &str, limit: i32) -> Result<Vec<StoredResult>, String> {
        self.query_index(record::BY_BUCKET, "bucket_day", record::bucket_day(bucket, day), limit)
            .await
    }

    /// The results with `result` recorded on `day`, newest first.
    pub async fn result_day(&self, result: &str, day: &str, limit: i32) -> Result<Vec<StoredResult>, String> {
        self.query_index(record::BY_RESULT, "result_day", record::result_day(result, day), limit)
            .await
    }

    /// Every recorded result of bytes with this SHA-256, newest first.
    pub async fn by_sha256(&self, sha256: &str, limit: i32) -> Result<Vec<StoredResult>, String> {
        self.query_index(record::BY_SHA256, "sha256", sha256.to_owned(), limit)
            .await
    }

    async fn query_index(
        &self,
        index: &str,
        attribute: &str,
        value: String,
        limit: i32,
    ) -> Result<Vec<StoredResult>, String> {
        let query = self
            .client
            .query()
            .table_name(&self.config.table)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", attribute)
            .expression_attribute_values(":v", AttributeValue::S(value))
            .scan_index_forward(false)
            .limit(limit);
        Self::results_of(query).await
    }

    /// The item under `pk`/`sk` (a claim, a sweep's record), read
    /// consistently; empty when there is none.
    async fn get_item(&self, pk: &str, sk: &str) -> Result<HashMap<String, AttributeValue>, String> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(error_text)?
            .item
            .unwrap_or_default())
    }

    /// The results one query returns.
    async fn results_of(
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<StoredResult>, String> {
        let items = query
            .send()
            .await
            .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())?
            .items
            .unwrap_or_default();
        Ok(items.iter().map(StoredResult::from_item).collect())
    }
}

/// A DynamoDB request's error in one line.
fn error_text<E: std::error::Error + 'static>(err: aws_sdk_dynamodb::error::SdkError<E>) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()
}

/// A text attribute of `item`.
fn text_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    }
}

/// A number attribute of `item` (0 when absent).
fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A recorded result, as the queries return it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StoredResult {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub sha256: Option<String>,
    pub result: String,
    pub detail: String,
    pub coverage: Option<String>,
    pub agent: String,
    /// The digest of the config the agent ran (empty if not recorded).
    pub config: String,
    pub recorded_at: String,
    /// How long the scan took, from the first byte read to the verdict.
    pub duration_ms: Option<f64>,
    /// The report as published (JSON).
    pub report: String,
    pub etag: Option<String>,
    /// The engine and database that reached the result (the `engine` tag).
    pub engine: Option<String>,
    /// Copies the actions made (a promotion): where the bytes also live.
    pub copies: Vec<bucketscan_core::report::CopyRef>,
}

impl StoredResult {
    fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        Self {
            bucket: text("bucket").unwrap_or_default(),
            key: text("key").unwrap_or_default(),
            version_id: text("version_id"),
            sha256: text("sha256"),
            result: text("result").unwrap_or_default(),
            detail: text("detail").unwrap_or_default(),
            coverage: text("coverage"),
            agent: text("agent").unwrap_or_default(),
            config: text("config").unwrap_or_default(),
            recorded_at: text("recorded_at").unwrap_or_default(),
            duration_ms: match item.get("duration_ms") {
                Some(AttributeValue::N(ms)) => ms.parse().ok(),
                _ => None,
            },
            report: text("report").unwrap_or_default(),
            etag: text("etag"),
            engine: text("engine"),
            copies: text("copies")
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Publisher for ResultsStore {
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.publish_recorded(report, true).await
    }

    async fn publish_batched(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.publish_recorded(report, false).await
    }
}

impl ResultsStore {
    async fn publish_recorded(&self, report: &ScanReport, now: bool) -> Result<String, PublishError> {
        match self.record(report, now).await {
            Ok(()) => Ok(format!("recorded in {}", self.config.table)),
            Err(detail) => {
                self.failures.inc();
                Err(PublishError {
                    destination: self.config.table.clone(),
                    detail,
                })
            }
        }
    }
}
