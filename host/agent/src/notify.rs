//! Publishes every settled result to an SNS topic, with message attributes
//! `bucket` and `scan-result` so subscribers can filter (for example: only
//! `infected`, or only one bucket). The scan path publishes before it
//! deletes anything, so a failed publish leaves the object in place and the
//! event comes back: every result is published at least once.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use bucketscan_core::report::ScanReport;
use bucketscan_scan::Publisher;
use serde_json::json;

/// The SNS topic results go to.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    agent_id: String,
}

impl SnsPublisher {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: String, agent_id: String) -> Self {
        Self {
            sns,
            topic_arn,
            agent_id,
        }
    }

    /// The message body subscribers receive.
    pub fn body(report: &ScanReport, agent_id: &str) -> serde_json::Value {
        let tags = report.tags.as_ref();
        json!({
            "bucket": report.bucket,
            "key": report.key,
            "version_id": report.version_id,
            "etag": report.etag,
            "size": report.size,
            "result": report.result(),
            "verdict": report.verdict,
            "findings": report.findings(),
            "stages": report.stages,
            "held": tags.and_then(|t| t.held.as_ref()),
            "dropped_tags": tags.map(|t| &t.dropped),
            "omitted_tags": tags.map(|t| &t.omitted),
            "actions": report.host_actions,
            "duration_ms": report.duration_ms,
            "agent": agent_id,
        })
    }
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn publish(&self, report: &ScanReport) -> Result<String, String> {
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| err.to_string())
        };
        let result = report.result();
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(format!("bucketscan: {result}"))
            .message(Self::body(report, &self.agent_id).to_string())
            .message_attributes("bucket", attribute(&report.bucket)?)
            .message_attributes("scan-result", attribute(result.as_str())?)
            .send()
            .await
            .map_err(|err| {
                format!(
                    "SNS Publish to {}: {}",
                    self.topic_arn,
                    aws_sdk_sns::error::DisplayErrorContext(&err)
                )
            })?;
        Ok(format!("published to {}", self.topic_arn))
    }
}
