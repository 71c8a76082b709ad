//! Results are written in batches: one `BatchWriteItem` carries up to 25
//! of them, where a `PutItem` each would cost the agent a request per
//! object. A result of an object that gave its scan slot back (see
//! `ScanSlot`) waits at most `[results] batch-wait-ms` for others to join
//! it: the wait delays that object's alert and deferred deletes a little,
//! not the next object. A result whose caller cannot wait (it still holds
//! a slot, or answers a request) is sent at once, with whatever else is
//! waiting.
//!
//! Each writer learns whether its own item was written:
//! - items DynamoDB leaves unprocessed (throttling) are sent again, a few
//!   times with growing, jittered pauses;
//! - a batch refused for one bad item (`ValidationException`) is written
//!   item by item, so that item fails alone;
//! - any other failure (throttled or unavailable as a whole, no
//!   permission, the table gone) fails the batch's writers at once: their
//!   events come back, as a failed `PutItem`'s did.
//!
//! A writer that stopped waiting (its object timed out) is not written.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's most items per `BatchWriteItem`.
pub const MAX_BATCH: usize = 25;
/// Sends of the items a batch left unprocessed, before they fail.
const UNPROCESSED_SENDS: u32 = 6;
/// Batches being written at once: a store that stops answering holds
/// these, and then the gathering waits rather than piling up requests.
const BATCHES_IN_FLIGHT: usize = 8;

/// One item and who waits to hear it was written.
struct Waiting {
    item: Item,
    written: oneshot::Sender<Result<(), String>>,
    /// Its writer cannot wait for others.
    now: bool,
}

/// Gathers items into batches and writes them (a task of its own).
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Batcher {
    /// Starts the batching task, on the current runtime. The queue needs no
    /// bound of its own: every item's writer waits for it, and writers are
    /// bounded (slots and tail places).
    pub fn start(client: aws_sdk_dynamodb::Client, table: String, wait: Duration, requests: Counter) -> Self {
        let (queue, received) = mpsc::unbounded_channel();
        let writer = Writer {
            client,
            table,
            requests,
        };
        tokio::spawn(gather(received, Arc::new(writer), wait));
        Self { queue }
    }

    /// Whether its task has ended (its runtime shut down): a new one is
    /// needed.
    pub fn stopped(&self) -> bool {
        self.queue.is_closed()
    }

    /// Writes `item`: with whatever joins it within the wait, or (`now`)
    /// at once with whatever is waiting.
    pub async fn write(&self, item: Item, now: bool) -> Result<(), String> {
        let stopped = || "the results writer stopped".to_owned();
        let (written, answer) = oneshot::channel();
        self.queue.send(Waiting { item, written, now }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes items as they come: the first starts a batch, which is sent when
/// full, when an item that cannot wait joins, or when the first has
/// waited `wait`.
async fn gather(mut received: mpsc::UnboundedReceiver<Waiting>, writer: Arc<Writer>, wait: Duration) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = received.recv().await {
        let deadline = tokio::time::Instant::now() + wait;
        let mut now = first.now;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && !now {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(next)) => {
                    now = next.now;
                    batch.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // What is already queued goes too: it costs no wait.
        while batch.len() < MAX_BATCH {
            match received.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Sent on its own task: a slow batch does not hold up the next.
        let writer = writer.clone();
        tokio::spawn(async move {
            writer.write(batch).await;
            drop(permit);
        });
    }
}

struct Writer {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Requests sent (a batch is one).
    requests: Counter,
}

/// Why a `BatchWriteItem` failed as a whole.
enum Refused {
    /// One of its items is invalid (too large, a key DynamoDB refuses).
    AnItem,
    /// The request itself failed: the same would follow for each item.
    Request(String),
}

impl Writer {
    async fn write(&self, mut batch: Vec<Waiting>) {
        for send in 1..=UNPROCESSED_SENDS {
            // Nobody waits for these any more: their objects were given up
            // (and will be tried again), so recording them would only
            // record an attempt twice.
            batch.retain(|waiting| !waiting.written.is_closed());
            match batch.len() {
                0 => return,
                1 => return self.put_each(batch).await,
                _ => {}
            }
            let unprocessed = match self.send_batch(&batch).await {
                Ok(unprocessed) => unprocessed,
                Err(Refused::AnItem) => return self.put_each(batch).await,
                Err(Refused::Request(why)) => return fail_all(batch, &why),
            };
            let (left, written): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|waiting| unprocessed.iter().any(|item| same_key(item, &waiting.item)));
            for waiting in written {
                let _ = waiting.written.send(Ok(()));
            }
            batch = left;
            if batch.is_empty() {
                return;
            }
            if send < UNPROCESSED_SENDS {
                tokio::time::sleep(pause_after(send)).await;
            }
        }
        let why = format!("left unprocessed by DynamoDB (throttled) {UNPROCESSED_SENDS} times");
        fail_all(batch, &why);
    }

    /// One `BatchWriteItem`; the items it left unprocessed.
    async fn send_batch(&self, batch: &[Waiting]) -> Result<Vec<Item>, Refused> {
        let requests = batch
            .iter()
            .map(|waiting| {
                let put = PutRequest::builder().set_item(Some(waiting.item.clone())).build();
                put.map(|put| WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Refused::AnItem)?;
        self.requests.inc();
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|err| match err.code() {
                Some("ValidationException") => Refused::AnItem,
                _ => Refused::Request(aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()),
            })?;
        // Keyed by the table as named (a name or an ARN): take them all.
        Ok(out
            .unprocessed_items
            .unwrap_or_default()
            .into_values()
            .flatten()
            .filter_map(|request| request.put_request.map(|put| put.item))
            .collect())
    }

    /// Each item by its own `PutItem`, all at once, each writer told its
    /// own outcome.
    async fn put_each(&self, batch: Vec<Waiting>) {
        let puts = batch.into_iter().map(|waiting| async move {
            self.requests.inc();
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(waiting.item))
                .send()
                .await
                .map(|_| ())
                .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string());
            let _ = waiting.written.send(put);
        });
        futures_util::future::join_all(puts).await;
    }
}

fn fail_all(batch: Vec<Waiting>, why: &str) {
    for waiting in batch {
        let _ = waiting.written.send(Err(why.to_owned()));
    }
}

/// The pause before the next send of unprocessed items: doubling from
/// 100 ms, at most 3.2 s, jittered by up to half so that agents throttled
/// together do not come back together.
fn pause_after(send: u32) -> Duration {
    let base = Duration::from_millis(100 << (send - 1).min(5));
    let jitter = f64::from(getrandom::u32().unwrap_or(0) % 1000) / 1000.0;
    base.mul_f64(0.5 + jitter)
}

/// Whether two items have the same table key.
fn same_key(a: &Item, b: &Item) -> bool {
    ["pk", "sk"].iter().all(|key| a.get(*key) == b.get(*key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pk: &str, sk: &str, extra: &str) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.into())),
            ("sk".to_owned(), AttributeValue::S(sk.into())),
            ("report".to_owned(), AttributeValue::S(extra.into())),
        ])
    }

    #[test]
    fn items_are_matched_by_their_table_key_alone() {
        assert!(same_key(&item("a", "1", "x"), &item("a", "1", "y")));
        assert!(!same_key(&item("a", "1", "x"), &item("a", "2", "x")));
        assert!(!same_key(&item("a", "1", "x"), &item("b", "1", "x")));
    }

    #[test]
    fn pauses_grow_jittered_and_stay_bounded() {
        for send in 1..=UNPROCESSED_SENDS {
            let base = Duration::from_millis(100 << (send - 1).min(5));
            let pause = pause_after(send);
            assert!(pause >= base / 2 && pause <= base * 3 / 2, "{send}: {pause:?}");
        }
        assert!(pause_after(40) <= Duration::from_millis(4_800));
    }
}
