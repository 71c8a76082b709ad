//! Handling one object event from start to finish: fetch once, inspect,
//! write the result tags, run the actions, notify. The caller deletes the
//! queue message only when every object in it came back [`Handled::Done`].

use crate::aws::Clients;
use crate::fetch::{self, FetchError, SpoolConfig};
use crate::notify::Notifier;
use crate::s3_storage::{put_tags, OwnWrites};
use bucketscan_core::events::ObjectEvent;
use bucketscan_core::tags::{self, TagKeys};
use bucketscan_core::Verdict;
use bucketscan_engine::{runner, HostServices, LoadedPipelines, PluginHost};
use std::sync::Arc;

/// What became of one object event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Fully handled (or nothing to do): the message may go.
    Done(String),
    /// Not handled; leave the message for redelivery (and, after the
    /// queue's redrive limit, its DLQ).
    Retry(String),
}

/// Everything needed to handle objects; shared by all concurrent tasks.
pub struct Worker {
    pub host: PluginHost,
    pub pipelines: LoadedPipelines,
    pub services: Arc<HostServices>,
    pub clients: Clients,
    pub spool: SpoolConfig,
    pub tag_keys: TagKeys,
    pub notifier: Option<Notifier>,
    pub own_writes: Arc<OwnWrites>,
}

impl Worker {
    pub async fn handle(&self, event: &ObjectEvent) -> Handled {
        let where_ = format!("s3://{}/{}", event.bucket, event.key);
        let Some((scope, stages)) = self.pipelines.pipeline_for(&event.bucket, &event.key) else {
            tracing::info!(bucket = %event.bucket, key = %event.key, "no pipeline for this object; ignored");
            return Handled::Done(format!("{where_}: no pipeline"));
        };
        if self.own_writes.take(&event.bucket, &event.key) {
            tracing::debug!(bucket = %event.bucket, key = %event.key, "event of our own write; ignored");
            return Handled::Done(format!("{where_}: own write"));
        }
        tracing::info!(bucket = %event.bucket, key = %event.key, version = event.version_id.as_deref().unwrap_or(""), "scanning");
        let object = match fetch::fetch(&self.clients.s3, event, &self.spool).await {
            Ok(object) => object,
            Err(err @ (FetchError::Gone { .. } | FetchError::Changed { .. })) => {
                tracing::warn!(bucket = %event.bucket, key = %event.key, "{err}; nothing to scan");
                return Handled::Done(err.to_string());
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
        if let Err(err) = put_tags(&self.clients.s3, &object.info, &merged).await {
            return Handled::Retry(format!("{where_}: writing result tags: {err}"));
        }
        if let Verdict::Error { message } = &verdict {
            // Errors never settle an object: no actions, no acknowledgement.
            tracing::warn!(bucket = %event.bucket, key = %event.key, "scan error: {message}; will retry");
            return Handled::Retry(format!("{where_}: {message}"));
        }

        let report = runner::act(&self.host, &self.services, &stages, &object, inspected).await;
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
        Handled::Done(format!("{where_}: {}", report.result))
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
