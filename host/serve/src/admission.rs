//! How many scans run at once, and how many requests may wait for one:
//! a semaphore of `concurrency` permits in front of a bounded wait. The
//! request past the bound is answered at once (503, `Retry-After`), and a
//! waiting one gives up after `queue-wait-secs`: the server never holds an
//! unbounded queue, and a flood costs a rejected request, not memory. One
//! key holds at most `per-key` of the slots and waiting places together
//! (429 past it), so one caller cannot take the API from the others.

use crate::errors::ApiError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
    per_key: usize,
    /// Key -> slots held or waited for.
    by_key: Arc<Mutex<HashMap<String, usize>>>,
}

/// A scan slot; released on drop.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _share: Option<KeyShare>,
}

/// One key's use of the gate; given back on drop.
struct KeyShare {
    by_key: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        let mut by_key = self.by_key.lock().unwrap();
        if let Some(count) = by_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                by_key.remove(&self.key);
            }
        }
    }
}

impl Gate {
    pub fn new(concurrency: usize, max_waiting: usize, max_wait: Duration, per_key: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
            per_key: per_key.max(1),
            by_key: Arc::default(),
        }
    }

    /// Counts one more use by `key`, unless it has its share already.
    fn share(&self, key: &str) -> Result<KeyShare, ApiError> {
        let mut by_key = self.by_key.lock().unwrap();
        let count = by_key.entry(key.to_owned()).or_default();
        if *count >= self.per_key {
            return Err(ApiError::too_many_requests(format!(
                "key `{key}` already holds or waits for {} scan slots (at most {} per key)",
                count, self.per_key
            )));
        }
        *count += 1;
        Ok(KeyShare {
            by_key: self.by_key.clone(),
            key: key.to_owned(),
        })
    }

    /// A slot for `key` now, or after a bounded wait, or an overload
    /// answer.
    pub async fn admit(&self, key: &str) -> Result<Admitted, ApiError> {
        let share = self.share(key)?;
        let admitted = self.admit_within_bounds().await?;
        Ok(Admitted {
            _share: Some(share),
            ..admitted
        })
    }

    async fn admit_within_bounds(&self) -> Result<Admitted, ApiError> {
        let admitted = |permit| Admitted {
            _permit: permit,
            _share: None,
        };
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(admitted(permit));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::overloaded(format!(
                "every scan slot is busy and {} requests are already waiting",
                self.max_waiting
            )));
        }
        let waited = tokio::time::timeout(self.max_wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(permit)) => Ok(admitted(permit)),
            Ok(Err(_)) => Err(ApiError::internal("the scan slots are closed")),
            Err(_) => Err(ApiError::overloaded(format!(
                "no scan slot came free within {} s",
                self.max_wait.as_secs()
            ))),
        }
    }

    /// A slot, however long it takes (for jobs, bounded in number elsewhere).
    pub async fn admit_patiently(&self) -> Option<Admitted> {
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        Some(Admitted {
            _permit: permit,
            _share: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_bound_a_request_is_refused_at_once() {
        let gate = Arc::new(Gate::new(1, 1, Duration::from_millis(300), 4));
        let first = gate.admit("a").await.unwrap();
        // One may wait...
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit("b").await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...the next is refused without waiting.
        let started = std::time::Instant::now();
        let refused = gate.admit("c").await.err().unwrap();
        assert_eq!(refused.code, "overloaded");
        assert!(started.elapsed() < Duration::from_millis(100));
        // The waiter gives up after its bound.
        assert_eq!(waiter.await.unwrap().unwrap_err().code, "overloaded");
        drop(first);
        assert!(gate.admit("a").await.is_ok());
    }

    #[tokio::test]
    async fn one_key_holds_at_most_its_share_and_gets_it_back() {
        let gate = Gate::new(4, 4, Duration::from_millis(100), 2);
        let first = gate.admit("greedy").await.unwrap();
        let _second = gate.admit("greedy").await.unwrap();
        let refused = gate.admit("greedy").await.err().unwrap();
        assert_eq!(refused.code, "too_many_requests");
        assert!(refused.message.contains("at most 2 per key"), "{}", refused.message);
        let _other = gate.admit("polite").await.expect("another key still gets a slot");
        drop(first);
        assert!(gate.admit("greedy").await.is_ok(), "the share comes back");
    }
}
