//! Results are written in batches: one `BatchWriteItem` carries up to 25
//! of them, where a `PutItem` each would cost the agent a request per
//! object. A result waits at most `[results] batch-wait-ms` for others to
//! join it. The scan slot is free by then (the scan path gives it back
//! once the object is contained, see `ScanSlot`), so the wait delays the
//! object's alert and deferred deletes a little, not the next object.
//!
//! Each writer learns whether its own item was written: items DynamoDB
//! leaves unprocessed (throttling) are sent again a few times, and a batch
//! refused as a whole (one item it will not take, the table gone) is
//! written item by item, so one bad result never fails the others.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's most items per `BatchWriteItem`.
pub const MAX_BATCH: usize = 25;
/// Sends of the items a batch left unprocessed, before they fail.
const UNPROCESSED_SENDS: u32 = 4;

/// One item and who waits to hear it was written.
struct Waiting {
    item: Item,
    written: oneshot::Sender<Result<(), String>>,
}

/// Gathers items into batches and writes them (a task of its own).
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

    /// Writes `item` with whatever joins it within the wait.
    pub async fn write(&self, item: Item) -> Result<(), String> {
        let stopped = || "the results writer stopped".to_owned();
        let (written, answer) = oneshot::channel();
        self.queue.send(Waiting { item, written }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes items as they come: the first starts a batch, which is sent when
/// full or when the first has waited `wait` (0: whatever is queued now).
async fn gather(mut received: mpsc::UnboundedReceiver<Waiting>, writer: Arc<Writer>, wait: Duration) {
    while let Some(first) = received.recv().await {
        let deadline = tokio::time::Instant::now() + wait;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        // Sent on its own task: a slow batch does not hold up the next.
        let writer = writer.clone();
        tokio::spawn(async move { writer.write(batch).await });
    }
}

struct Writer {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Requests sent (a batch is one).
    requests: Counter,
}

impl Writer {
    async fn write(&self, mut batch: Vec<Waiting>) {
        for send in 1..=UNPROCESSED_SENDS {
            if batch.len() == 1 {
                return self.put_each(batch).await;
            }
            let unprocessed = match self.send_batch(&batch).await {
                Ok(unprocessed) => unprocessed,
                Err(_) => return self.put_each(batch).await,
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
                tokio::time::sleep(Duration::from_millis(50 << send)).await;
            }
        }
        let why = format!("left unprocessed by DynamoDB (throttled) {UNPROCESSED_SENDS} times");
        for waiting in batch {
            let _ = waiting.written.send(Err(why.clone()));
        }
    }

    /// One `BatchWriteItem`; the items it left unprocessed.
    async fn send_batch(&self, batch: &[Waiting]) -> Result<Vec<Item>, String> {
        let requests = batch
            .iter()
            .map(|waiting| {
                let put = PutRequest::builder().set_item(Some(waiting.item.clone())).build();
                put.map(|put| WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| err.to_string())?;
        self.requests.inc();
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())?;
        // Keyed by the table as named (a name or an ARN): take them all.
        Ok(out
            .unprocessed_items
            .unwrap_or_default()
            .into_values()
            .flatten()
            .filter_map(|request| request.put_request.map(|put| put.item))
            .collect())
    }

    /// Each item by its own `PutItem`, each writer told its own outcome.
    async fn put_each(&self, batch: Vec<Waiting>) {
        for waiting in batch {
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
        }
    }
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
}
