//! Object scans owned by the server, not by the request that asked for
//! them. Once admitted, a scan runs to its end whatever its caller does —
//! hangs up, times out, polls a job or not — because stopping between two
//! of its steps (tags written, alert not yet published) would leave an
//! object tagged infected and never quarantined, with nothing to revisit
//! it. On shutdown the server waits for them within its stop timeout and
//! hands whatever is still running (or still waiting for a slot) to the
//! agents' queue as an on-demand scan, so nothing admitted is dropped.

use bucketscan_runtime::agent::Handled;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

/// The object a scan is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTarget {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// The scans in flight.
#[derive(Default)]
pub struct Scans {
    next: AtomicU64,
    running: Mutex<HashMap<u64, (ScanTarget, AbortHandle)>>,
    ended: Notify,
}

impl Scans {
    /// Runs `scan` of `target` as a task of its own; the handle gives its
    /// result to whoever still wants it.
    pub fn start(
        self: &Arc<Self>,
        target: ScanTarget,
        scan: impl Future<Output = Handled> + Send + 'static,
    ) -> JoinHandle<Handled> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        // Registered before the task can end: its guard removes it.
        let mut running = self.running.lock().unwrap();
        let scans = self.clone();
        let task = tokio::spawn(async move {
            let _ended = Ended { scans, id };
            scan.await
        });
        running.insert(id, (target, task.abort_handle()));
        task
    }

    pub fn count(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// Waits up to `within` for every scan to end; stops the rest and
    /// returns what they were about.
    pub async fn finish(&self, within: Duration) -> Vec<ScanTarget> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.ended.notified();
            if self.count() == 0 {
                return Vec::new();
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                break;
            }
        }
        let stopped: Vec<(ScanTarget, AbortHandle)> = self.running.lock().unwrap().drain().map(|(_, r)| r).collect();
        stopped
            .into_iter()
            .map(|(target, task)| {
                task.abort();
                target
            })
            .collect()
    }
}

/// Unregisters a scan when its task ends (done, failed or aborted).
struct Ended {
    scans: Arc<Scans>,
    id: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Ok(mut running) = self.scans.running.lock() {
            running.remove(&self.id);
        }
        self.scans.ended.notify_waiters();
    }
}

/// Where scans the server could not finish go: the agents' queue.
pub struct Handoff {
    pub sqs: aws_sdk_sqs::Client,
    pub queue: Option<String>,
}

impl Handoff {
    /// Sends each target to the queue as an on-demand scan; says in the
    /// log what could not be handed over (no queue, SQS refused). Returns
    /// the queue when every target was handed over.
    pub async fn send(&self, targets: &[ScanTarget]) -> Option<&str> {
        let mut all = true;
        for target in targets {
            let what = format!(
                "s3://{}/{}{}",
                target.bucket,
                bucketscan_core::object::printable(&target.key),
                target
                    .version_id
                    .as_deref()
                    .map(|v| format!("?versionId={v}"))
                    .unwrap_or_default()
            );
            let Some(queue) = &self.queue else {
                all = false;
                tracing::error!(
                    "{what}: its on-demand scan did not finish before shutdown and no queue is configured to hand it \
                     to ([serve] handoff-queue or [agent] queues); scan it again"
                );
                continue;
            };
            let body = bucketscan_runtime::events::on_demand_message(
                &target.bucket,
                &target.key,
                target.version_id.as_deref(),
            );
            match self.sqs.send_message().queue_url(queue).message_body(body).send().await {
                Ok(_) => tracing::warn!("{what}: its on-demand scan did not finish here; handed to {queue}"),
                Err(err) => {
                    all = false;
                    tracing::error!(
                        "{what}: handing its unfinished scan to {queue} failed ({}); scan it again",
                        bucketscan_runtime::aws::error_text(&err)
                    )
                }
            }
        }
        self.queue.as_deref().filter(|_| all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(key: &str) -> ScanTarget {
        ScanTarget {
            bucket: "b".into(),
            key: key.into(),
            version_id: None,
        }
    }

    #[tokio::test]
    async fn a_scan_outlives_whoever_awaited_it_and_the_rest_are_stopped_at_shutdown() {
        let scans = Arc::new(Scans::default());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let quick = scans.start(target("quick"), async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
            Handled::Skipped("done".into())
        });
        // The caller gives up at once: the scan goes on.
        drop(quick);
        let _slow = scans.start(target("slow"), async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Handled::Skipped("never".into())
        });
        assert_eq!(scans.count(), 2);
        done_rx.await.expect("the dropped caller's scan finished");
        let stopped = scans.finish(Duration::from_millis(100)).await;
        assert_eq!(stopped, vec![target("slow")]);
        assert_eq!(scans.count(), 0);
    }
}
