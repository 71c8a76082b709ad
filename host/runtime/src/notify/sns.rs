//! Every settled result to an SNS topic, with message attributes `bucket`
//! and `scan-result` so subscribers can filter (for example: only
//! `infected`, or only one bucket), and `bucketscan-mark`: an HMAC of the
//! message under a key derived from the agents' seal key
//! (`bucketscan notification-key` prints it), so a subscriber can tell
//! the agents' results from anyone else's who may publish to the topic.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use bucketscan_core::report::{Outcome, ScanReport};
use bucketscan_core::{Finding, Verdict};
use bucketscan_scan::{PublishError, Publisher};
use serde_json::json;

/// The longest message body published (SNS allows 256 KiB with the
/// attributes).
pub const MAX_BODY: usize = 200 * 1024;

use bucketscan_core::text::cap as trim;

/// The verdict with at most `findings` findings and its texts trimmed.
fn bounded_verdict(verdict: &Verdict, findings: usize) -> Verdict {
    match verdict {
        Verdict::Infected { findings: all } => Verdict::Infected {
            findings: all
                .iter()
                .take(findings)
                .map(|f| Finding {
                    engine: trim(&f.engine, 256),
                    signature: trim(&f.signature, 256),
                    location: f.location.as_deref().map(|l| trim(l, 1024)),
                })
                .collect(),
        },
        Verdict::Blocked { reason } => Verdict::Blocked {
            reason: trim(reason, 1024),
        },
        Verdict::Unscannable { reason, detail } => Verdict::Unscannable {
            reason: *reason,
            detail: trim(detail, 1024),
        },
        Verdict::Error { message } => Verdict::Error {
            message: trim(message, 1024),
        },
        Verdict::Clean => Verdict::Clean,
    }
}

/// The SNS topic results go to.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    agent_id: String,
    sealer: bucketscan_core::seal::Sealer,
}

/// The message attribute that carries a notification's mark.
pub const MARK_ATTRIBUTE: &str = "bucketscan-mark";

impl SnsPublisher {
    pub fn new(
        sns: aws_sdk_sns::Client,
        topic_arn: String,
        agent_id: String,
        sealer: bucketscan_core::seal::Sealer,
    ) -> Self {
        Self {
            sns,
            topic_arn,
            agent_id,
            sealer,
        }
    }

    /// The message body subscribers receive, within SNS's 256 KiB: a
    /// hostile plugin's long findings or report lines must not make a
    /// result impossible to publish, so they are trimmed, and past
    /// [`MAX_BODY`] the stages' details give way to the summary.
    pub fn body(report: &ScanReport, agent_id: &str) -> String {
        let full = Self::body_value(report, agent_id, false).to_string();
        if full.len() <= MAX_BODY {
            return full;
        }
        Self::body_value(report, agent_id, true).to_string()
    }

    fn body_value(report: &ScanReport, agent_id: &str, summary_only: bool) -> serde_json::Value {
        let tags = report.tags.as_ref();
        let findings: Vec<serde_json::Value> = report
            .findings()
            .iter()
            .take(if summary_only { 8 } else { 64 })
            .map(|f| {
                json!({
                    "engine": trim(&f.engine, 256),
                    "signature": trim(&f.signature, 256),
                    // The member it was found in, for an object scanned member by member.
                    "location": f.location.as_deref().map(|l| trim(l, 1024)),
                })
            })
            .collect();
        let stages: Vec<serde_json::Value> = if summary_only {
            Vec::new()
        } else {
            report
                .stages
                .iter()
                .map(|stage| {
                    json!({
                        "plugin": stage.plugin,
                        "plugin_version": stage.plugin_version,
                        "kind": stage.kind,
                        "outcome": stage.outcome,
                        "actions": stage.actions.iter().take(16).map(|a| trim(a, 512)).collect::<Vec<_>>(),
                        "error": stage.error.as_deref().map(|e| trim(e, 1024)),
                        "cause": stage.cause,
                        "engine_version": stage.engine_version,
                        "rule_sets": stage.rule_sets,
                        "duration_ms": stage.duration_ms,
                    })
                })
                .collect()
        };
        json!({
            "bucket": report.bucket,
            "key": report.key,
            "version_id": report.version_id,
            "etag": report.etag,
            "size": report.size,
            "result": report.result(),
            "verdict": bounded_verdict(&report.verdict, if summary_only { 8 } else { 64 }),
            "findings": findings,
            "stages": stages,
            "sha256": report.sha256,
            // Set when the allow-list (or a release) let these bytes through:
            // what the pipeline said, and on whose word.
            "allowed": report.allowed,
            // What the host decoded and found inside before the scan.
            "decoded": report.decoded,
            "contents": report.contents.iter().take(if summary_only { 8 } else { 256 }).collect::<Vec<_>>(),
            // `members` when the object was over the size limit and its
            // members were scanned one by one; `whole`; null when unread.
            "coverage": report.coverage,
            "held": tags.and_then(|t| t.held.as_ref()),
            "dropped_tags": tags.map(|t| &t.dropped),
            "omitted_tags": tags.map(|t| &t.omitted),
            "actions": report.host_actions,
            // `done`, `held`, or `retry` when an action failed: the
            // verdict stands but containment is not finished yet.
            "outcome": bounded_outcome(&report.outcome),
            "duration_ms": report.duration_ms,
            "agent": agent_id,
            // Where the actions copied the bytes (a promotion, a quarantine).
            "copies": report.copies.iter().take(16).collect::<Vec<_>>(),
            // Set for a retro-scan: found by `database`, clean by
            // `previous_engine` since `clean_since`.
            "retro": report.retro,
            // The YARA rule sets that ran, `NAME@VERSION`.
            "rule_sets": report.rule_sets().into_iter().take(16).collect::<Vec<_>>(),
        })
    }
}

/// The outcome with its reason trimmed: a reason quotes plugins' and
/// services' errors, which nobody here bounds.
fn bounded_outcome(outcome: &Outcome) -> Outcome {
    let bound = |why: &String| trim(why, 2048);
    match outcome {
        Outcome::Done => Outcome::Done,
        Outcome::Held(why) => Outcome::Held(bound(why)),
        Outcome::Skipped(why) => Outcome::Skipped(bound(why)),
        Outcome::Retry(why) => Outcome::Retry(bound(why)),
    }
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError> {
        let failed = |detail: String| PublishError {
            destination: self.topic_arn.clone(),
            detail,
        };
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| failed(err.to_string()))
        };
        let result = report.result();
        let body = Self::body(report, &self.agent_id);
        let mark = self.sealer.mark_notification(&body);
        let (subject, scan_kind) = match report.retro {
            Some(_) => (format!("bucketscan: {result} (retro-scan)"), "retro-scan"),
            None => (format!("bucketscan: {result}"), "scan"),
        };
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .message_attributes(MARK_ATTRIBUTE, attribute(&mark)?)
            .message_attributes("bucket", attribute(&report.bucket)?)
            .message_attributes("scan-result", attribute(result.as_str())?)
            .message_attributes("outcome", attribute(report.outcome.status())?)
            // Subscriptions can filter retro-detections on this.
            .message_attributes("scan-kind", attribute(scan_kind)?)
            .send()
            .await
            .map_err(|err| failed(format!("SNS Publish: {}", crate::aws::error_text(&err))))?;
        Ok(format!("published to {}", self.topic_arn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::object::ObjectInfo;
    use bucketscan_core::pipeline::StageKind;
    use bucketscan_core::report::{StageOutcome, StageReport};

    #[test]
    fn a_hostile_report_still_fits_in_one_notification() {
        // 64 findings of 1 KiB each and 64 report lines of 1 KiB per
        // stage: more than SNS takes, unless bounded.
        let findings = (0..64)
            .map(|i| Finding {
                engine: "e".repeat(1024),
                signature: format!("{i}{}", "s".repeat(1023)),
                location: Some("l".repeat(4096)),
            })
            .collect();
        let mut report = ScanReport::new(&ObjectInfo::default(), Verdict::Infected { findings });
        report.stages = (0..4)
            .map(|_| StageReport {
                plugin: "hostile".into(),
                plugin_version: "6.6.6".into(),
                kind: StageKind::Action,
                outcome: StageOutcome::Done,
                actions: vec!["a".repeat(1024); 64],
                error: None,
                cause: None,
                engine_version: None,
                rule_sets: Vec::new(),
                duration_ms: 1.0,
            })
            .collect();
        // A failed action's reason quotes the plugins' errors.
        report.outcome = Outcome::Retry("r".repeat(300 * 1024));
        let body = SnsPublisher::body(&report, "agent");
        assert!(body.len() <= MAX_BODY, "{} bytes", body.len());
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["result"], "infected");
        assert!(!parsed["findings"].as_array().unwrap().is_empty());
        assert_eq!(parsed["outcome"]["status"], "retry");
    }
}
