//! Where results are published: an SNS topic (`sns`), an EventBridge bus
//! in GuardDuty's event shape (`eventbridge`), or both ([`FanOut`]).
//!
//! The scan path publishes before it deletes anything, so a failed publish
//! leaves the object in place and the event comes back: every result
//! reaches every destination at least once.

mod eventbridge;
mod sns;

pub use eventbridge::{DETAIL_TYPE, EventBridgePublisher};
pub use sns::{MAX_BODY, SnsPublisher};

use async_trait::async_trait;
use bucketscan_core::report::ScanReport;
use bucketscan_scan::{PublishError, Publisher};
use std::sync::Arc;

/// Publishes to every destination, each whatever the others did — the
/// results table being down must not silence the SNS alert; fails if any
/// one failed (the object's event then comes back, and destinations that
/// took it see it again).
pub struct FanOut(pub Vec<Arc<dyn Publisher>>);

impl FanOut {
    /// `None` without destinations, the one publisher alone, or all of them.
    pub fn of(publishers: Vec<Arc<dyn Publisher>>) -> Option<Arc<dyn Publisher>> {
        match publishers.len() {
            0 => None,
            1 => publishers.into_iter().next(),
            _ => Some(Arc::new(Self(publishers))),
        }
    }
}

#[async_trait]
impl Publisher for FanOut {
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.each(report, false).await
    }

    async fn publish_batched(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.each(report, true).await
    }
}

impl FanOut {
    async fn each(&self, report: &ScanReport, batched: bool) -> Result<String, PublishError> {
        let mut lines = Vec::new();
        let mut failed: Option<PublishError> = None;
        for publisher in &self.0 {
            match publisher.publish_as(report, batched).await {
                Ok(line) => lines.push(line),
                Err(err) => match &mut failed {
                    None => failed = Some(err),
                    Some(first) => first.detail = format!("{}; and {err}", first.detail),
                },
            }
        }
        match failed {
            Some(mut err) if !lines.is_empty() => {
                err.detail = format!("{} (published: {})", err.detail, lines.join("; "));
                Err(err)
            }
            Some(err) => Err(err),
            None => Ok(lines.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::object::ObjectInfo;
    use std::sync::Mutex;

    /// A destination that records what it was given, or fails.
    struct Destination {
        name: &'static str,
        fails: bool,
        got: Mutex<u32>,
    }

    #[async_trait]
    impl Publisher for Destination {
        async fn publish(&self, _report: &ScanReport) -> Result<String, PublishError> {
            *self.got.lock().unwrap() += 1;
            if self.fails {
                return Err(PublishError {
                    destination: self.name.into(),
                    detail: "down".into(),
                });
            }
            Ok(format!("published to {}", self.name))
        }
    }

    fn destination(name: &'static str, fails: bool) -> Arc<Destination> {
        Arc::new(Destination {
            name,
            fails,
            got: Mutex::new(0),
        })
    }

    #[tokio::test]
    async fn a_destination_that_fails_first_does_not_keep_the_alert_from_the_others() {
        let (table, topic, bus) = (
            destination("table", true),
            destination("topic", false),
            destination("bus", false),
        );
        let fan_out = FanOut(vec![table.clone(), topic.clone(), bus.clone()]);
        let report = ScanReport::new(&ObjectInfo::default(), bucketscan_core::Verdict::Clean);
        let err = fan_out.publish(&report).await.unwrap_err();
        assert_eq!(err.destination, "table");
        assert!(err.detail.contains("published to topic; published to bus"), "{err}");
        for published in [&table, &topic, &bus] {
            assert_eq!(*published.got.lock().unwrap(), 1, "{} was tried", published.name);
        }
    }
}
