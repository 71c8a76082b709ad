//! The receive loop: long-polls the configured SQS queues, handles messages
//! with bounded concurrency, keeps long scans' messages invisible, and
//! deletes a message only after every object in it was fully handled.
//!
//! Concurrency is counted in slots (`[agent] concurrency`). An object gives
//! its slot back once it is contained and keeps a tail place (a few per
//! slot) while its result is recorded and published and its deferred
//! deletes run: those wait on batches and on other services, not on this
//! agent's CPU. Its message stays in flight, kept invisible, until the end.
//!
//! It receives only while the agent is ready (clamd answers, the signature
//! database is loaded and fresh): a message received while it is not would
//! only fail and count toward the DLQ. While not ready it stops receiving
//! and says why, once per change.
//!
//! On shutdown (SIGTERM from ECS) it stops receiving at once, gives the
//! objects in flight (slots and tails) until `stop_timeout` to finish, and then hands the
//! messages of those still running back to the queue (visibility 0) so
//! another agent takes them right away instead of after the visibility
//! timeout. Either way nothing is lost: a message is deleted only after
//! its objects were fully handled.

use aws_sdk_sqs::types::{Message as SqsMessage, MessageSystemAttributeName};
use bucketscan_runtime::agent::{Agent, Handled};
use bucketscan_runtime::events::{Message, ObjectEvent, parse_message};
use bucketscan_scan::{ScanSlot, TAILS_PER_SLOT};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, watch};

/// How the agent consumes its queues (`[agent]` in the config).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub queue_urls: Vec<String>,
    /// Sweep items (`scan --enqueue`): received beside the event queues,
    /// into the slots uploads leave free but one (kept for the next
    /// upload, when there are several).
    pub sweep_queue_urls: Vec<String>,
    pub concurrency: usize,
    /// Sweep items handled at once at most: the CPU a sweep may take
    /// from uploads (slots alone only keep uploads from queueing).
    pub sweep_slots: usize,
    pub visibility_timeout: Duration,
    pub wait_time: Duration,
    /// A failed message becomes visible again after this times its
    /// receive count (capped at 15 minutes).
    pub retry_backoff: Duration,
    /// After a shutdown request, how long objects in flight may take before
    /// their messages are released.
    pub stop_timeout: Duration,
    /// The longest one object may take (a hung request, a stalled body):
    /// past it the object's message returns for another try.
    pub object_timeout: Duration,
}

/// Messages being handled right now: id -> (queue, receipt handle).
type InFlight = Arc<std::sync::Mutex<std::collections::HashMap<String, (String, String)>>>;

const MAX_BACKOFF: Duration = Duration::from_secs(900);
/// While not ready, how long to wait before asking again.
const NOT_READY_PAUSE: Duration = Duration::from_secs(2);

/// Runs until `shutdown` turns true, then finishes or releases the
/// messages in flight (see the module docs).
pub async fn run(agent: Arc<Agent>, sqs: aws_sdk_sqs::Client, settings: LoopSettings, shutdown: watch::Receiver<bool>) {
    let receiver = Receiver {
        permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        tails: Arc::new(Semaphore::new(settings.concurrency.max(1) * TAILS_PER_SLOT)),
        sweep_permits: Arc::new(Semaphore::new(settings.sweep_slots.max(1))),
        in_flight: InFlight::default(),
        settings: Arc::new(settings),
        agent,
        sqs,
    };
    tracing::info!(
        queues = ?receiver.settings.queue_urls,
        sweep_queues = ?receiver.settings.sweep_queue_urls,
        concurrency = receiver.settings.concurrency,
        "agent started"
    );
    // Uploads and sweep items are received side by side, into one set of
    // slots: sweeps only into the slots uploads leave free.
    tokio::join!(
        receiver.event_loop(shutdown.clone()),
        receiver.sweep_loop(shutdown.clone())
    );
    receiver.stop().await;
}

/// How often a sweep loop with no spare slot looks again.
const SWEEP_SLOT_POLL: Duration = Duration::from_millis(50);

/// What the loop does after one of its steps.
enum Step {
    Go,
    Next,
    Stop,
}

/// The loop's shared parts: every handling task gets clones.
struct Receiver {
    agent: Arc<Agent>,
    sqs: aws_sdk_sqs::Client,
    settings: Arc<LoopSettings>,
    permits: Arc<Semaphore>,
    /// Held by sweep items beside their slot (`sweep_slots`).
    sweep_permits: Arc<Semaphore>,
    /// Held by objects contained and waiting on their record, alert and
    /// deletes, in place of their slot (see [`ScanSlot`]).
    tails: Arc<Semaphore>,
    in_flight: InFlight,
}

impl Receiver {
    /// The event queues, round after round, long-polled, into any free slot.
    async fn event_loop(&self, mut shutdown: watch::Receiver<bool>) {
        let mut not_ready: Option<String> = None;
        loop {
            for queue in &self.settings.queue_urls {
                if *shutdown.borrow() {
                    return;
                }
                let step = match self.wait_until_ready(&mut not_ready, &mut shutdown).await {
                    Step::Go => {
                        self.receive(queue, self.settings.wait_time, 10, 0, false, &mut shutdown)
                            .await
                    }
                    other => other,
                };
                if let Step::Stop = step {
                    return;
                }
            }
        }
    }

    /// The sweep queues: received from only while more slots are free than
    /// the one kept for the next upload (when there are several), so a
    /// sweep never makes an upload wait for a slot. Polling the free count
    /// rather than queueing for slots keeps the semaphore's queue to the
    /// uploads.
    async fn sweep_loop(&self, mut shutdown: watch::Receiver<bool>) {
        if self.settings.sweep_queue_urls.is_empty() {
            return;
        }
        let reserve = usize::from(self.settings.concurrency > 1);
        let mut not_ready: Option<String> = None;
        loop {
            for queue in &self.settings.sweep_queue_urls {
                let spare = loop {
                    if *shutdown.borrow() {
                        return;
                    }
                    let free = self.permits.available_permits();
                    let sweep_free = self.sweep_permits.available_permits();
                    if free > reserve && sweep_free > 0 {
                        break (free - reserve).min(sweep_free);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(SWEEP_SLOT_POLL) => {}
                        _ = shutdown.changed() => return,
                    }
                };
                let step = match self.wait_until_ready(&mut not_ready, &mut shutdown).await {
                    Step::Go => {
                        self.receive(queue, self.settings.wait_time, spare, reserve, true, &mut shutdown)
                            .await
                    }
                    other => other,
                };
                if let Step::Stop = step {
                    return;
                }
            }
        }
    }

    /// Readiness gates consumption: while not ready, says why (once per
    /// change) and pauses.
    async fn wait_until_ready(&self, not_ready: &mut Option<String>, shutdown: &mut watch::Receiver<bool>) -> Step {
        match bucketscan_runtime::health::readiness(&self.agent).await {
            Ok(()) => {
                if not_ready.take().is_some() {
                    tracing::info!("ready again: receiving");
                }
                Step::Go
            }
            Err(problems) => {
                let why = problems.join("; ");
                if not_ready.as_deref() != Some(why.as_str()) {
                    tracing::warn!("not ready, not receiving: {why}");
                    *not_ready = Some(why);
                }
                tokio::select! {
                    _ = tokio::time::sleep(NOT_READY_PAUSE) => Step::Next,
                    _ = shutdown.changed() => Step::Stop,
                }
            }
        }
    }

    /// Waits for a free slot, receives from `queue` (at most `most`
    /// messages, long-polling for `wait`) and starts a task per message
    /// while more than `keep_free` slots are free; the rest go straight
    /// back to the queue.
    async fn receive(
        &self,
        queue: &str,
        wait: Duration,
        most: usize,
        keep_free: usize,
        sweep: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Step {
        // Wait for a free agent, then ask for no more messages than there
        // are free agents, so none sit invisible waiting.
        tokio::select! {
            acquired = self.permits.acquire() => if acquired.is_err() { return Step::Stop },
            _ = shutdown.changed() => return Step::Stop,
        }
        let free = self.permits.available_permits().clamp(1, most.clamp(1, 10)) as i32;
        let received = tokio::select! {
            received = self.sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(free)
                .wait_time_seconds(wait.as_secs() as i32)
                .visibility_timeout(self.settings.visibility_timeout.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send() => received,
            _ = shutdown.changed() => return Step::Stop,
        };
        match received {
            Ok(out) => {
                for message in out.messages.unwrap_or_default() {
                    self.spawn(queue, message, keep_free, sweep).await;
                }
            }
            Err(err) => {
                tracing::warn!(
                    queue,
                    "ReceiveMessage failed: {}; retrying",
                    bucketscan_runtime::aws::error_text(&err)
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Step::Go
    }

    /// Handles one message in its own task, holding a slot and an
    /// in-flight entry until it ends, however it ends. With no slot free
    /// (beyond `keep_free`) — the other loop took it during this one's
    /// poll — the message goes straight back to the queue: it never waits
    /// here invisible, without a heartbeat, or holds up a shutdown.
    async fn spawn(&self, queue: &str, message: SqsMessage, keep_free: usize, sweep: bool) {
        let permit = match self.permits.available_permits() > keep_free {
            true => self.permits.clone().try_acquire_owned().ok(),
            false => None,
        };
        let sweep_permit = match sweep {
            true => self.sweep_permits.clone().try_acquire_owned().ok().map(Some),
            false => Some(None),
        };
        let (Some(permit), Some(sweep_permit)) = (permit, sweep_permit) else {
            self.give_back(queue, &message).await;
            return;
        };
        // A sweep item keeps its sweep permit to the end: sweeps take no
        // more of the tail places than of the slots.
        let slot = ScanSlot::new(permit, self.tails.clone()).keeping(sweep_permit);
        let id = message.message_id().unwrap_or_default().to_owned();
        if let Some(receipt) = message.receipt_handle() {
            self.in_flight
                .lock()
                .unwrap()
                .insert(id.clone(), (queue.to_owned(), receipt.to_owned()));
        }
        let (agent, sqs, settings, queue) = (
            self.agent.clone(),
            self.sqs.clone(),
            self.settings.clone(),
            queue.to_owned(),
        );
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            // Even a panic while handling frees the entry and the permit
            // (and its heartbeat stops with it, see below): the message
            // then returns after its visibility timeout.
            let done = Finished { in_flight, id, slot };
            handle_message(&agent, &sqs, &settings, &queue, message, &done.slot).await;
        });
    }

    /// Makes `message` visible again at once, for whichever agent has a
    /// slot (if this fails, it returns after its visibility timeout).
    async fn give_back(&self, queue: &str, message: &SqsMessage) {
        let Some(receipt) = message.receipt_handle() else {
            return;
        };
        let given = self
            .sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(err) = given {
            tracing::warn!(
                queue,
                "no free slot, and the message could not be made visible again: {}; it returns after its visibility timeout",
                bucketscan_runtime::aws::error_text(&err)
            );
        }
    }

    /// No new messages: gives those in flight until the stop timeout, then
    /// releases what is still running.
    async fn stop(self) {
        let running = self.in_flight.lock().unwrap().len();
        tracing::info!(
            in_flight = running,
            stop_timeout_s = self.settings.stop_timeout.as_secs_f64(),
            "agent stopping: no new messages; finishing objects in flight"
        );
        let slots = self.settings.concurrency.max(1);
        let all = async {
            let _slots = self.permits.acquire_many(slots as u32).await;
            let _tails = self.tails.acquire_many((slots * TAILS_PER_SLOT) as u32).await;
        };
        if tokio::time::timeout(self.settings.stop_timeout, all).await.is_err() {
            release(&self.sqs, &self.in_flight).await;
        }
        tracing::info!("agent stopped");
    }
}

/// Marks a message handled when dropped, however its task ended, and
/// frees what its slot still holds.
struct Finished {
    in_flight: InFlight,
    id: String,
    slot: ScanSlot,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&self.id);
        }
    }
}

/// A task aborted when this is dropped: the heartbeat that keeps a message
/// invisible must never outlive the handling it covers (a panic, a
/// deadline, a shutdown), or the message would stay invisible for the
/// life of the process.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Makes the messages still in flight visible again at once, for another
/// agent. Their objects' work so far is harmless to repeat (tags merge,
/// copies are conditional on the scanned ETag).
async fn release(sqs: &aws_sdk_sqs::Client, in_flight: &InFlight) {
    let messages: Vec<(String, (String, String))> = in_flight.lock().unwrap().drain().collect();
    for (id, (queue, receipt)) in &messages {
        let released = sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
        match released {
            Ok(_) => tracing::warn!(message = %id, "stop timeout reached: message released for another agent"),
            Err(err) => tracing::error!(
                message = %id,
                "stop timeout reached; releasing the message failed ({}); it returns after its visibility timeout",
                bucketscan_runtime::aws::error_text(&err)
            ),
        }
    }
}

async fn handle_message(
    agent: &Agent,
    sqs: &aws_sdk_sqs::Client,
    settings: &LoopSettings,
    queue: &str,
    message: SqsMessage,
    slot: &ScanSlot,
) {
    let Some(receipt) = message.receipt_handle().map(str::to_owned) else {
        return;
    };
    let id = message.message_id().unwrap_or("?").to_owned();
    if let Some(lag) = queue_lag(&message) {
        agent.metrics.record_queue_lag(lag);
    }
    let events = match parse_message(message.body().unwrap_or_default()) {
        Ok(Message::TestEvent) => {
            tracing::info!(message = %id, "s3:TestEvent acknowledged");
            delete(sqs, queue, &receipt).await;
            return;
        }
        // A sweep queue carries sweep items only: whoever may write to it
        // gets no on-demand scans of other objects through it.
        Ok(Message::Objects(events))
            if settings.sweep_queue_urls.iter().any(|q| q == queue) && !events.iter().all(|e| e.is_sweep_item()) =>
        {
            tracing::error!(message = %id, queue, "not a sweep item, on a sweep queue; left for the dead-letter queue");
            return;
        }
        Ok(Message::Objects(mut events)) => {
            let redelivered = receive_count(&message) > 1;
            for event in &mut events {
                event.redelivered = redelivered;
            }
            events
        }
        Err(err) => {
            // Left on the queue: after its redrive limit it lands in the
            // DLQ, where a person can look at it. Nothing is lost.
            tracing::error!(message = %id, queue, "{err}; left for the dead-letter queue");
            return;
        }
    };
    // Keep the message invisible while its objects are scanned.
    let heartbeat = keep_invisible(sqs, queue, &receipt, settings.visibility_timeout);
    let retry = handle_events(agent, settings, &id, &events, slot).await;
    drop(heartbeat);
    if retry.is_empty() {
        delete(sqs, queue, &receipt).await;
    } else {
        return_later(sqs, settings, queue, &message, &receipt, &retry).await;
    }
}

/// Extends the message's visibility every half timeout until dropped.
fn keep_invisible(sqs: &aws_sdk_sqs::Client, queue: &str, receipt: &str, timeout: Duration) -> AbortOnDrop {
    let (sqs, queue, receipt) = (sqs.clone(), queue.to_owned(), receipt.to_owned());
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(timeout / 2).await;
            let extended = sqs
                .change_message_visibility()
                .queue_url(&queue)
                .receipt_handle(&receipt)
                .visibility_timeout(timeout.as_secs() as i32)
                .send()
                .await;
            if let Err(err) = extended {
                tracing::warn!("extending visibility: {}", bucketscan_runtime::aws::error_text(&err));
            }
        }
    }))
}

/// Handles each object of a message; returns why those to be tried again
/// were not finished (empty when all were). Only the last object may give
/// the slot back early: the ones before it still need it afterwards.
async fn handle_events(
    agent: &Agent,
    settings: &LoopSettings,
    id: &str,
    events: &[ObjectEvent],
    slot: &ScanSlot,
) -> Vec<String> {
    let mut retry = Vec::new();
    let kept = ScanSlot::unbounded();
    for (i, event) in events.iter().enumerate() {
        let slot = if i + 1 == events.len() { slot } else { &kept };
        match tokio::time::timeout(settings.object_timeout, agent.handle(event, slot)).await {
            Ok(Handled::Scanned(report)) => {
                tracing::debug!(message = %id, "s3://{}/{}: {}", report.bucket, report.key, report.result())
            }
            Ok(Handled::Skipped(why)) => tracing::debug!(message = %id, "{why}"),
            Ok(Handled::Retry { why, .. }) => retry.push(why),
            Err(_) => {
                // Whatever it was waiting for (a request that never
                // answers) is dropped with it; what it did so far is safe
                // to repeat.
                let why = format!(
                    "s3://{}/{}: not finished within [agent] object-timeout-secs ({} s); it is tried again",
                    event.bucket,
                    bucketscan_core::object::printable(&event.key),
                    settings.object_timeout.as_secs()
                );
                tracing::error!(message = %id, "{why}");
                retry.push(why);
            }
        }
    }
    retry
}

/// How many times the queue has delivered `message` (this time included).
fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Leaves a message not fully handled on the queue, visible again after a
/// backoff that grows with its receive count.
async fn return_later(
    sqs: &aws_sdk_sqs::Client,
    settings: &LoopSettings,
    queue: &str,
    message: &SqsMessage,
    receipt: &str,
    retry: &[String],
) {
    let count = receive_count(message);
    let backoff = (settings.retry_backoff * count).min(MAX_BACKOFF);
    let id = message.message_id().unwrap_or("?");
    tracing::warn!(message = %id, receive_count = count, retry_in_s = backoff.as_secs(), "not handled: {}", retry.join("; "));
    let _ = sqs
        .change_message_visibility()
        .queue_url(queue)
        .receipt_handle(receipt)
        .visibility_timeout(backoff.as_secs() as i32)
        .send()
        .await;
}

async fn delete(sqs: &aws_sdk_sqs::Client, queue: &str, receipt: &str) {
    if let Err(err) = sqs
        .delete_message()
        .queue_url(queue)
        .receipt_handle(receipt)
        .send()
        .await
    {
        // The message will come back and be handled again; handling is
        // idempotent (tags are merged, copies conditional).
        tracing::warn!("DeleteMessage failed: {}", bucketscan_runtime::aws::error_text(&err));
    }
}

/// How long a message waited on the queue (SQS's SentTimestamp to now).
fn queue_lag(message: &SqsMessage) -> Option<Duration> {
    let sent_ms: u64 = message
        .attributes()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.saturating_sub(Duration::from_millis(sent_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panic_while_handling_stops_the_heartbeat_and_frees_the_slot() {
        let beats = Arc::new(AtomicUsize::new(0));
        let permits = Arc::new(Semaphore::new(1));
        let in_flight = InFlight::default();
        in_flight.lock().unwrap().insert("m1".into(), ("q".into(), "r".into()));
        let task = tokio::spawn({
            let (beats, in_flight) = (beats.clone(), in_flight.clone());
            let permit = permits.clone().acquire_owned().await.unwrap();
            async move {
                let _done = Finished {
                    in_flight,
                    id: "m1".into(),
                    slot: ScanSlot::new(permit, Arc::new(Semaphore::new(1))),
                };
                let _heartbeat = AbortOnDrop(tokio::spawn(async move {
                    loop {
                        beats.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }));
                tokio::time::sleep(Duration::from_millis(30)).await;
                panic!("handling failed");
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        let after = beats.load(Ordering::SeqCst);
        assert!(after > 0, "it was beating");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(beats.load(Ordering::SeqCst), after, "no heartbeat after the panic");
        assert!(in_flight.lock().unwrap().is_empty());
        assert_eq!(permits.available_permits(), 1);
    }
}
