//! Publishes every result to an SNS topic, with message attributes `bucket`
//! and `scan-result` so subscribers can filter (for example: only
//! `infected`, or only one bucket).

use aws_sdk_sns::types::MessageAttributeValue;
use bucketscan_core::report::ScanReport;
use serde_json::json;

/// The SNS topic results go to.
#[derive(Debug, Clone)]
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    agent_id: String,
}

impl Notifier {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: String, agent_id: String) -> Self {
        Self {
            sns,
            topic_arn,
            agent_id,
        }
    }

    /// The message body subscribers receive.
    pub fn body(report: &ScanReport, agent_id: &str) -> serde_json::Value {
        json!({
            "bucket": report.bucket,
            "key": report.key,
            "version_id": report.version_id,
            "size": report.size,
            "result": report.result,
            "verdict": report.verdict,
            "findings": report.findings,
            "stages": report.stages,
            "duration_ms": report.duration_ms,
            "agent": agent_id,
        })
    }

    pub async fn publish(&self, report: &ScanReport) -> Result<(), String> {
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| err.to_string())
        };
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(format!("bucketscan: {}", report.result))
            .message(Self::body(report, &self.agent_id).to_string())
            .message_attributes("bucket", attribute(&report.bucket)?)
            .message_attributes("scan-result", attribute(report.result)?)
            .send()
            .await
            .map_err(|err| {
                format!(
                    "SNS Publish to {}: {}",
                    self.topic_arn,
                    aws_sdk_sns::error::DisplayErrorContext(&err)
                )
            })?;
        Ok(())
    }
}
