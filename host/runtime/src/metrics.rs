//! What the agent counts, per object: objects and bytes by bucket and
//! result, scan latency, plugin failures by plugin and cause, and queue lag
//! (how long a message waited before the agent took it). Exposed one of
//! two ways, chosen at start:
//!
//! - `prometheus`: the `/metrics` endpoint of the health server;
//! - `emf`: one CloudWatch Embedded Metric Format line per object on
//!   stdout, which CloudWatch Logs turns into metrics with no agent or
//!   endpoint (the natural choice on Fargate with the awslogs driver).

use bucketscan_core::report::StageReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsFormat {
    Prometheus,
    Emf,
    None,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    bucket: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    plugin: String,
    cause: String,
}

/// One scanned object, as metrics see it.
pub struct ObjectSample<'a> {
    pub bucket: &'a str,
    pub result: &'a str,
    pub bytes: u64,
    pub duration: Duration,
    pub stages: &'a [StageReport],
}

pub struct Metrics {
    format: MetricsFormat,
    registry: Registry,
    objects: Family<ResultLabels, Counter>,
    bytes: Family<ResultLabels, Counter>,
    latency: Histogram,
    plugin_failures: Family<FailureLabels, Counter>,
    queue_lag: Histogram,
    sweep_items: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new(format: MetricsFormat) -> Self {
        let mut registry = Registry::with_prefix("bucketscan");
        let objects = Family::<ResultLabels, Counter>::default();
        let bytes = Family::<ResultLabels, Counter>::default();
        // 1 ms .. ~9 min.
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let plugin_failures = Family::<FailureLabels, Counter>::default();
        // 0.1 s .. ~15 h.
        let queue_lag = Histogram::new(exponential_buckets(0.1, 2.0, 20));
        registry.register("objects", "Objects scanned, by bucket and result", objects.clone());
        registry.register("bytes", "Bytes scanned, by bucket and result", bytes.clone());
        registry.register(
            "scan_duration_seconds",
            "Time from fetch to the last action, per object",
            latency.clone(),
        );
        registry.register(
            "plugin_failures",
            "Stages that failed, by plugin and cause (timeout, trap, memory, ...)",
            plugin_failures.clone(),
        );
        registry.register(
            "queue_lag_seconds",
            "How long an event message waited on the queue before the agent took it",
            queue_lag.clone(),
        );
        let sweep_items = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sweep_items",
            "Sweep items (scan --enqueue, retro-scans) handled, by outcome: scanned, skipped, retry",
            sweep_items.clone(),
        );
        Self {
            format,
            registry,
            objects,
            bytes,
            latency,
            plugin_failures,
            queue_lag,
            sweep_items,
        }
    }

    /// Counts the results store's failed writes as
    /// `bucketscan_results_write_failures_total`, and its write requests
    /// as `bucketscan_results_write_requests_total`.
    pub fn with_results(mut self, failures: Counter, requests: Counter) -> Self {
        self.registry.register(
            "results_write_failures",
            "Results that could not be recorded in the results table (their events came back)",
            failures,
        );
        self.registry.register(
            "results_write_requests",
            "Requests that wrote results to the results table (a batch of up to 25 is one)",
            requests,
        );
        self
    }

    pub fn format(&self) -> MetricsFormat {
        self.format
    }

    pub fn record_object(&self, sample: &ObjectSample<'_>) {
        let labels = ResultLabels {
            bucket: sample.bucket.to_owned(),
            result: sample.result.to_owned(),
        };
        self.objects.get_or_create(&labels).inc();
        self.bytes.get_or_create(&labels).inc_by(sample.bytes);
        self.latency.observe(sample.duration.as_secs_f64());
        let failures: Vec<(&str, &str)> = sample
            .stages
            .iter()
            .filter_map(|stage| stage.cause.map(|cause| (stage.plugin.as_str(), cause.as_str())))
            .collect();
        for (plugin, cause) in &failures {
            self.plugin_failures
                .get_or_create(&FailureLabels {
                    plugin: (*plugin).to_owned(),
                    cause: (*cause).to_owned(),
                })
                .inc();
        }
        if self.format == MetricsFormat::Emf {
            emit(&emf_object(sample, &failures));
        }
    }

    /// One sweep item handled: `scanned`, `skipped` (already current,
    /// gone) or `retry`.
    pub fn record_sweep_item(&self, outcome: &str) {
        self.sweep_items
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if self.format == MetricsFormat::Emf {
            emit(&emf(
                &[],
                &[("SweepItems", "Count", json!(1))],
                json!({ "outcome": outcome }),
            ));
        }
    }

    pub fn record_queue_lag(&self, lag: Duration) {
        self.queue_lag.observe(lag.as_secs_f64());
        if self.format == MetricsFormat::Emf {
            emit(&emf(
                &[],
                &[("QueueLag", "Seconds", json!(lag.as_secs_f64()))],
                json!({}),
            ));
        }
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// An EMF document: metric values as top-level fields, declared under
/// `_aws` with their dimensions.
fn emf(
    dimensions: &[&str],
    metrics: &[(&str, &str, serde_json::Value)],
    mut fields: serde_json::Value,
) -> serde_json::Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let declared: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
        .collect();
    let object = fields.as_object_mut().expect("fields are an object");
    for (name, _, value) in metrics {
        object.insert((*name).to_owned(), value.clone());
    }
    object.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{ "Namespace": "bucketscan", "Dimensions": [dimensions], "Metrics": declared }],
        }),
    );
    fields
}

fn emf_object(sample: &ObjectSample<'_>, failures: &[(&str, &str)]) -> serde_json::Value {
    emf(
        &["Bucket", "Result"],
        &[
            ("Objects", "Count", json!(1)),
            ("Bytes", "Bytes", json!(sample.bytes)),
            (
                "ScanDuration",
                "Milliseconds",
                json!(sample.duration.as_secs_f64() * 1000.0),
            ),
            ("PluginFailures", "Count", json!(failures.len())),
        ],
        json!({
            "Bucket": sample.bucket,
            "Result": sample.result,
            "failures": failures.iter().map(|(plugin, cause)| format!("{plugin}:{cause}")).collect::<Vec<_>>(),
        }),
    )
}

/// EMF lines go to stdout whole, one per line, beside the JSON log events.
fn emit(document: &serde_json::Value) {
    let mut line = document.to_string();
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_labelled_counters_and_histograms() {
        let metrics = Metrics::new(MetricsFormat::Prometheus);
        let failed = StageReport {
            plugin: "hostile".into(),
            plugin_version: "0.1.0".into(),
            kind: bucketscan_core::pipeline::StageKind::Inspector,
            outcome: bucketscan_core::report::StageOutcome::Failed,
            actions: Vec::new(),
            error: Some("timeout".into()),
            cause: Some(bucketscan_core::report::FailureCause::Timeout),
            engine_version: None,
            rule_sets: Vec::new(),
            duration_ms: 5.0,
        };
        metrics.record_object(&ObjectSample {
            bucket: "b",
            result: "error",
            bytes: 10,
            duration: Duration::from_millis(5),
            stages: &[failed],
        });
        metrics.record_object(&ObjectSample {
            bucket: "b",
            result: "clean",
            bytes: 32,
            duration: Duration::from_millis(7),
            stages: &[],
        });
        metrics.record_queue_lag(Duration::from_secs(2));
        metrics.record_sweep_item("skipped");
        metrics.record_sweep_item("skipped");
        let text = metrics.render_prometheus();
        assert!(
            text.contains(r#"bucketscan_sweep_items_total{outcome="skipped"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bucketscan_objects_total{bucket="b",result="clean"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bucketscan_bytes_total{bucket="b",result="clean"} 32"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bucketscan_plugin_failures_total{plugin="hostile",cause="timeout"} 1"#),
            "{text}"
        );
        assert!(text.contains("bucketscan_scan_duration_seconds_count 2"), "{text}");
        assert!(text.contains("bucketscan_queue_lag_seconds_count 1"), "{text}");
    }

    #[test]
    fn emf_declares_what_it_carries() {
        let doc = emf_object(
            &ObjectSample {
                bucket: "b",
                result: "infected",
                bytes: 68,
                duration: Duration::from_millis(3),
                stages: &[],
            },
            &[],
        );
        assert_eq!(doc["Bucket"], "b");
        assert_eq!(doc["Objects"], 1);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(["Bucket", "Result"])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][2]["Name"],
            "ScanDuration"
        );
    }
}
