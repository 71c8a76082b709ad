//! Handling one object event from start to finish: fetch once, inspect,
//! write the result tags, run the actions, notify. The caller deletes the
//! queue message only when no object in it came back [`Handled::Retry`].

use crate::aws::Clients;
use crate::fetch::{self, FetchError, SpoolConfig};
use crate::metrics::{Metrics, MetricsFormat, ObjectSample};
use crate::notify::Notifier;
use crate::reload::LivePipelines;
use crate::s3_storage::{OwnWrites, S3Storage, put_tags};
use bucketscan_core::Verdict;
use bucketscan_core::config::Config;
use bucketscan_core::events::ObjectEvent;
use bucketscan_core::report::ScanReport;
use bucketscan_core::tags::{self, TagKeys};
use bucketscan_engine::Clamd;
use bucketscan_engine::clamd::Freshness;
use bucketscan_engine::{HostServices, LoadedPipelines, PluginHost, runner};
use std::sync::Arc;

/// What became of one object event.
#[derive(Debug, Clone)]
pub enum Handled {
    /// Scanned and fully handled: tags written, actions done, notified.
    Scanned(Box<ScanReport>),
    /// Nothing to do (no pipeline, our own write, object gone or replaced).
    Skipped(String),
    /// Not handled; leave the message for redelivery (and, after the
    /// queue's redrive limit, its DLQ).
    Retry(String),
}

/// Everything needed to handle objects; shared by all concurrent tasks.
pub struct Worker {
    pub host: PluginHost,
    pub pipelines: LivePipelines,
    pub services: Arc<HostServices>,
    pub clients: Clients,
    pub spool: SpoolConfig,
    pub tag_keys: TagKeys,
    pub notifier: Option<Notifier>,
    pub own_writes: Arc<OwnWrites>,
    /// Counts every object handled (set by `bucketscan run`; the default
    /// counts without exposing anything).
    pub metrics: Arc<Metrics>,
}

impl Worker {
    /// Builds the worker a config describes: the Wasm host with every
    /// pipeline loaded, clamd, S3 storage, and the SNS notifier.
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        let host = PluginHost::new(&config.host)?;
        let clients = Clients::from_config(&config).await;
        let own_writes = Arc::new(OwnWrites::default());
        let mut storage = S3Storage::new(clients.clone(), own_writes.clone());
        storage.multipart_threshold = config.agent.multipart_copy_threshold_bytes;
        storage.part_size = config.agent.multipart_copy_part_bytes;
        let storage = Arc::new(storage);
        let mut clamd = Clamd::new(&config.clamav);
        if let Some(signatures) = &config.signatures {
            clamd = clamd.with_freshness(Freshness {
                database_dir: signatures.database_dir.clone(),
                max_age: std::time::Duration::from_secs(signatures.max_age_secs),
            });
        }
        let agent_id = config
            .agent
            .agent_id
            .clone()
            .unwrap_or_else(bucketscan_engine::capabilities::default_agent_id);
        let services = Arc::new(HostServices::new(clamd, storage).with_agent_id(agent_id.clone()));
        let notifier = config
            .notifications
            .topic_arn
            .clone()
            .map(|arn| Notifier::new(clients.sns.clone(), arn, agent_id));
        let spool = SpoolConfig {
            threshold_bytes: config.agent.spool_threshold_bytes,
            dir: config.agent.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        };
        let tag_keys = config.tags.clone();
        let pipelines = LivePipelines::new(LoadedPipelines::load(&host, config).await?);
        Ok(Self {
            host,
            pipelines,
            services,
            clients,
            spool,
            tag_keys,
            notifier,
            own_writes,
            metrics: Arc::new(Metrics::new(MetricsFormat::None)),
        })
    }

    pub async fn handle(&self, event: &ObjectEvent) -> Handled {
        let where_ = format!("s3://{}/{}", event.bucket, event.key);
        let pipelines = self.pipelines.snapshot();
        let Some((scope, stages)) = pipelines.pipeline_for(&event.bucket, &event.key) else {
            tracing::info!(bucket = %event.bucket, key = %event.key, "no pipeline for this object; ignored");
            return Handled::Skipped(format!("{where_}: no pipeline"));
        };
        if self.own_writes.take(&event.bucket, &event.key) {
            tracing::debug!(bucket = %event.bucket, key = %event.key, "event of our own write; ignored");
            return Handled::Skipped(format!("{where_}: own write"));
        }
        tracing::info!(bucket = %event.bucket, key = %event.key, version = event.version_id.as_deref().unwrap_or(""), "scanning");
        let started = std::time::Instant::now();
        let object = match fetch::fetch(self.clients.s3_for(&event.bucket), event, &self.spool).await {
            Ok(object) => object,
            Err(err @ (FetchError::Gone { .. } | FetchError::Changed { .. })) => {
                tracing::warn!(bucket = %event.bucket, key = %event.key, "{err}; nothing to scan");
                return Handled::Skipped(err.to_string());
            }
            Err(err) => {
                tracing::warn!(bucket = %event.bucket, key = %event.key, "{err}; will retry");
                return Handled::Retry(err.to_string());
            }
        };

        let inspected = runner::inspect(&self.host, &self.services, &stages, &object).await;
        let verdict = inspected.verdict.clone();
        let engine = inspected.engine_version();
        let result_tags = tags::result_tags(&self.tag_keys, &verdict, &now_rfc3339(), engine.as_deref());
        let merged = match tags::merge(&object.info.tags, &result_tags) {
            Ok(merged) => merged,
            Err(err) => {
                tracing::error!(bucket = %event.bucket, key = %event.key, "cannot tag the result: {err}");
                return Handled::Retry(format!("{where_}: {err}"));
            }
        };
        if let Err(err) = put_tags(self.clients.s3_for(&event.bucket), &object.info, &merged).await {
            return Handled::Retry(format!("{where_}: writing result tags: {err}"));
        }
        if let Verdict::Error { message } = &verdict {
            self.metrics.record_object(&ObjectSample {
                bucket: &event.bucket,
                result: verdict.result_name(),
                bytes: object.info.size,
                duration: started.elapsed(),
                stages: &inspected.stages,
            });
            // Errors never settle an object: no actions, no acknowledgement.
            tracing::warn!(bucket = %event.bucket, key = %event.key, "scan error: {message}; will retry");
            return Handled::Retry(format!("{where_}: {message}"));
        }

        let report = runner::act(&self.host, &self.services, &stages, &object, inspected).await;
        self.metrics.record_object(&ObjectSample {
            bucket: &report.bucket,
            result: report.result,
            bytes: report.size,
            duration: started.elapsed(),
            stages: &report.stages,
        });
        tracing::info!(
            bucket = %report.bucket,
            key = %report.key,
            version = report.version_id.as_deref().unwrap_or(""),
            verdict = report.result,
            findings = ?report.findings.iter().map(|f| f.signature.as_str()).collect::<Vec<_>>(),
            duration_ms = report.duration_ms,
            pipeline = %scope,
            "scanned"
        );
        if !report.actions_ok {
            let errors: Vec<&str> = report.stages.iter().filter_map(|s| s.error.as_deref()).collect();
            return Handled::Retry(format!("{where_}: actions failed: {}", errors.join("; ")));
        }
        if let Some(notifier) = &self.notifier {
            if let Err(err) = notifier.publish(&report).await {
                return Handled::Retry(format!("{where_}: {err}"));
            }
        }
        Handled::Scanned(Box::new(report))
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
