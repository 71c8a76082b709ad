//! One HTTP server skeleton for everything bucketscan serves — the API
//! (`bucketscan serve`) and the agent's health endpoints: an axum
//! [`Router`] over HTTP/1.1, with what a server facing unknown clients
//! needs around it — a deadline for the request headers (a client that
//! never finishes them is dropped), a cap on connections served at once
//! (past it new ones wait in the kernel's accept queue), and a graceful
//! drain when told to stop.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// The longest a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` completes, then stops
/// accepting and lets the requests in flight finish for at most `drain`.
/// Returns whether they all finished in time.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    tokio::time::timeout(drain, graceful.shutdown()).await.is_ok()
}

/// An answer computed at most once a second, one computation at a time:
/// for endpoints anyone may call (`/readyz` pings clamd), so that a burst
/// of requests — or a flood — costs one check, and a burst while clamd
/// hangs waits for the check in flight instead of opening a connection
/// each.
#[derive(Debug)]
pub struct CachedAnswer<T> {
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, T)>>,
}

impl<T> Default for CachedAnswer<T> {
    fn default() -> Self {
        Self {
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T: Clone> CachedAnswer<T> {
    /// How long an answer is reused.
    const FRESH: Duration = Duration::from_secs(1);

    /// The cached answer while fresh, else `compute`'s.
    pub async fn get<F: Future<Output = T>>(&self, compute: impl FnOnce() -> F) -> T {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < Self::FRESH
        {
            return answer.clone();
        }
        let answer = compute().await;
        *last = Some((tokio::time::Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_computed_once_a_second() {
        let cached = CachedAnswer::<usize>::default();
        let computed = AtomicUsize::new(0);
        let compute = || async { computed.fetch_add(1, Ordering::SeqCst) };
        assert_eq!(cached.get(compute).await, 0);
        assert_eq!(cached.get(compute).await, 0, "reused");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(cached.get(compute).await, 1, "computed again once stale");
    }
}
