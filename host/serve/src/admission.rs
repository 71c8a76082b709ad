//! How many scans run at once, and how many requests may wait for one:
//! a semaphore of `concurrency` permits in front of a bounded wait. The
//! request past the bound is answered at once (503, `Retry-After`), and a
//! waiting one gives up after `queue-wait-secs`: the server never holds an
//! unbounded queue, and a flood costs a rejected request, not memory.

use crate::errors::ApiError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

/// A scan slot; released on drop.
pub struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

impl Gate {
    pub fn new(concurrency: usize, max_waiting: usize, max_wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// A slot now, or after a bounded wait, or an overload answer.
    pub async fn admit(&self) -> Result<Admitted, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Admitted(permit));
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
            Ok(Ok(permit)) => Ok(Admitted(permit)),
            Ok(Err(_)) => Err(ApiError::internal("the scan slots are closed")),
            Err(_) => Err(ApiError::overloaded(format!(
                "no scan slot came free within {} s",
                self.max_wait.as_secs()
            ))),
        }
    }

    /// A slot, however long it takes (for jobs, bounded in number elsewhere).
    pub async fn admit_patiently(&self) -> Option<Admitted> {
        self.slots.clone().acquire_owned().await.ok().map(Admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_bound_a_request_is_refused_at_once() {
        let gate = Arc::new(Gate::new(1, 1, Duration::from_millis(300)));
        let first = gate.admit().await.unwrap();
        // One may wait...
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...the next is refused without waiting.
        let started = std::time::Instant::now();
        let refused = gate.admit().await.err().unwrap();
        assert_eq!(refused.code, "overloaded");
        assert!(started.elapsed() < Duration::from_millis(100));
        // The waiter gives up after its bound.
        assert_eq!(waiter.await.unwrap().unwrap_err().code, "overloaded");
        drop(first);
        assert!(gate.admit().await.is_ok());
    }
}
