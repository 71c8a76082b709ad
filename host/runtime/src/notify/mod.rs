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

/// Publishes to every destination; fails if any one fails (the object's
/// event then comes back, and destinations that took it see it again).
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
        let mut lines = Vec::new();
        for publisher in &self.0 {
            lines.push(publisher.publish(report).await?);
        }
        Ok(lines.join("; "))
    }
}
