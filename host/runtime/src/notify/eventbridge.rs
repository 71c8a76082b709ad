//! Results as GuardDuty Malware Protection for S3 publishes them to
//! EventBridge ("GuardDuty Malware Protection Object Scan Result"), so the
//! rules a team wrote for GuardDuty keep matching: same `detail-type`,
//! same `detail` fields (`scanStatus`, `resourceType`, `s3ObjectDetails`,
//! `scanResultDetails.scanResultStatus`, `threats[].name`).
//!
//! One difference cannot be avoided: EventBridge refuses `aws.*` sources
//! from anyone but AWS, so the `source` is ours (`[notifications]
//! event-source`, default `bucketscan`) and a rule matching
//! `source: ["aws.guardduty"]` must name it instead. What GuardDuty does
//! not have (the bucketscan result, findings' engines, the SHA-256, the
//! allow-list match) is under `detail.bucketscan`.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use bucketscan_core::ResultName;
use bucketscan_core::report::ScanReport;
use bucketscan_core::tags::TagProfile;
use bucketscan_core::text::cap as trim;
use bucketscan_scan::{PublishError, Publisher};
use serde_json::{Value, json};

/// GuardDuty's detail type for an object's scan result.
pub const DETAIL_TYPE: &str = "GuardDuty Malware Protection Object Scan Result";
/// EventBridge's limit on one entry (256 KiB); the detail stays well below.
const MAX_DETAIL: usize = 64 * 1024;

/// An EventBridge bus results go to.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    events: aws_sdk_eventbridge::Client,
    bus: String,
    source: String,
    agent_id: String,
}

impl EventBridgePublisher {
    pub fn new(events: aws_sdk_eventbridge::Client, bus: String, source: String, agent_id: String) -> Self {
        Self {
            events,
            bus,
            source,
            agent_id,
        }
    }

    /// The event's `detail`, GuardDuty's fields first.
    pub fn detail(report: &ScanReport, agent_id: &str) -> Value {
        let result = report.result();
        let status = match result {
            ResultName::Clean | ResultName::Infected | ResultName::Blocked => "COMPLETED",
            ResultName::Unscannable => "SKIPPED",
            ResultName::Error => "FAILED",
        };
        let threats: Option<Vec<Value>> = match &report.verdict {
            bucketscan_core::Verdict::Infected { findings } => Some(
                findings
                    .iter()
                    .take(32)
                    .map(|f| json!({ "name": trim(&f.signature, 256) }))
                    .collect(),
            ),
            bucketscan_core::Verdict::Blocked { reason } => {
                Some(vec![json!({ "name": format!("Blocked: {}", trim(reason, 240)) })])
            }
            _ => None,
        };
        let detail = json!({
            "schemaVersion": "1.0",
            "scanStatus": status,
            "resourceType": "S3_OBJECT",
            "s3ObjectDetails": {
                "bucketName": report.bucket,
                "objectKey": report.key,
                "eTag": report.etag,
                "versionId": report.version_id,
                "s3Throttled": false,
            },
            "scanResultDetails": {
                "scanResultStatus": TagProfile::Guardduty.value_of(&report.verdict),
                "threats": threats,
            },
            "bucketscan": {
                "result": result,
                "outcome": report.outcome,
                "sha256": report.sha256,
                "size": report.size,
                "findings": report.findings().iter().take(32).map(|f| json!({
                    "engine": trim(&f.engine, 256),
                    "signature": trim(&f.signature, 256),
                    "location": f.location.as_deref().map(|l| trim(l, 1024)),
                })).collect::<Vec<_>>(),
                "allowed": report.allowed,
                "decoded": report.decoded,
                "coverage": report.coverage,
                "agent": agent_id,
                "duration_ms": report.duration_ms,
                "retro": report.retro,
            },
        });
        if detail.to_string().len() <= MAX_DETAIL {
            detail
        } else {
            // Only a hostile object key gets here: keep GuardDuty's fields.
            let mut detail = detail;
            detail["bucketscan"] = json!({ "result": result, "truncated": true });
            detail
        }
    }
}

#[async_trait]
impl Publisher for EventBridgePublisher {
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError> {
        let failed = |detail: String| PublishError {
            destination: format!("EventBridge bus {}", self.bus),
            detail,
        };
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(DETAIL_TYPE)
            .resources(format!("arn:aws:s3:::{}/{}", report.bucket, report.key))
            .detail(Self::detail(report, &self.agent_id).to_string())
            .build();
        let sent = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|err| failed(format!("PutEvents: {}", crate::aws::error_text(&err))))?;
        // PutEvents answers 200 with per-entry failures.
        if sent.failed_entry_count() > 0 {
            let why = sent
                .entries()
                .iter()
                .filter_map(|e| e.error_message().or(e.error_code()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(failed(format!("PutEvents refused the event: {why}")));
        }
        Ok(format!("sent to EventBridge bus {}", self.bus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::object::ObjectInfo;
    use bucketscan_core::{Finding, Verdict};

    #[test]
    fn the_detail_has_guardduty_fields() {
        let info = ObjectInfo {
            bucket: "staging".into(),
            key: "a/b.txt".into(),
            etag: Some("e1".into()),
            ..ObjectInfo::default()
        };
        let report = ScanReport::new(
            &info,
            Verdict::Infected {
                findings: vec![Finding {
                    engine: "clamav".into(),
                    signature: "Eicar.UNOFFICIAL".into(),
                    location: None,
                }],
            },
        );
        let detail = EventBridgePublisher::detail(&report, "a1");
        assert_eq!(detail["scanStatus"], "COMPLETED");
        assert_eq!(detail["s3ObjectDetails"]["objectKey"], "a/b.txt");
        assert_eq!(detail["scanResultDetails"]["scanResultStatus"], "THREATS_FOUND");
        assert_eq!(detail["scanResultDetails"]["threats"][0]["name"], "Eicar.UNOFFICIAL");
        let clean = EventBridgePublisher::detail(&ScanReport::new(&info, Verdict::Clean), "a1");
        assert_eq!(clean["scanResultDetails"]["scanResultStatus"], "NO_THREATS_FOUND");
        assert!(clean["scanResultDetails"]["threats"].is_null());
    }
}
