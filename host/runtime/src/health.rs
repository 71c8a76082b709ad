//! The agent's HTTP endpoints, for the container health check and the load
//! balancer-less world of Fargate:
//!
//! - `GET /healthz`: 200 while the process serves requests (liveness);
//! - `GET /readyz`: 200 when the agent can scan — clamd answers PING, the
//!   signature database is loaded and fresh (when `[signatures]` is set),
//!   and at least one pipeline is loaded; 503 with the reasons otherwise.
//!   The receive loop asks the same question before every receive;
//! - `GET /metrics`: Prometheus text, when metrics are `prometheus`.

use crate::agent::Agent;
use crate::http::ServerLimits;
use crate::metrics::{Metrics, MetricsFormat};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Whether the agent can scan now, and if not, why.
pub async fn readiness(agent: &Agent) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Err(err) = agent.clamd().ping().await {
        problems.push(format!("clamd: {err}"));
    }
    if let Some(gate) = agent.clamd().gate()
        && let Err(why) = gate.check()
    {
        problems.push(format!("signatures: {why}"));
    }
    problems.extend(agent.services.yara.problems().into_iter().map(|p| format!("yara: {p}")));
    if agent.pipelines.snapshot().config.pipelines().next().is_none() {
        problems.push("no pipeline is configured".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// What is worth knowing about a ready agent: files the signature bucket
/// holds that it refused to install.
/// At most this many, and the count of the rest: whoever writes the
/// signature bucket must not be able to swell an unauthenticated answer.
pub fn notes(agent: &Agent) -> Vec<String> {
    const MAX_NOTES: usize = 20;
    let refused = agent
        .signatures
        .as_ref()
        .map(|state| state.refused())
        .unwrap_or_default();
    let mut notes: Vec<String> = refused
        .iter()
        .take(MAX_NOTES)
        .map(|why| {
            format!(
                "refused from the signature bucket: {}",
                bucketscan_core::text::cap(why, 512)
            )
        })
        .collect();
    if refused.len() > MAX_NOTES {
        notes.push(format!(
            "and {} more refused files (see the log)",
            refused.len() - MAX_NOTES
        ));
    }
    notes
}

/// [`readiness`], computed at most once a second (see
/// [`CachedAnswer`](crate::http::CachedAnswer)): what `/readyz` answers.
pub async fn cached_readiness(agent: &Agent) -> Result<(), Vec<String>> {
    agent.readiness.get(|| readiness(agent)).await
}

fn ready_text(agent: &Agent) -> String {
    let mut text = String::from("ready\n");
    for note in notes(agent) {
        text.push_str(&note);
        text.push('\n');
    }
    text
}

/// The health endpoints' limits: load balancers and the container's
/// health check are the only callers.
const LIMITS: ServerLimits = ServerLimits {
    header_timeout: Duration::from_secs(10),
    max_connections: 64,
};

/// Binds `addr` and serves until the process ends. Binding happens before
/// this returns, so a bad address is a start-up error.
pub async fn serve(addr: SocketAddr, agent: Arc<Agent>, metrics: Arc<Metrics>) -> Result<(), crate::StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| crate::StartError::Health { addr, error })?;
    tracing::info!(%addr, "serving /healthz, /readyz{}", if metrics.format() == MetricsFormat::Prometheus { ", /metrics" } else { "" });
    let router = router(agent, metrics);
    tokio::spawn(crate::http::serve(
        listener,
        router,
        LIMITS,
        std::future::pending(),
        Duration::ZERO,
    ));
    Ok(())
}

fn router(agent: Arc<Agent>, metrics: Arc<Metrics>) -> Router {
    let get_only = || async { text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()) };
    Router::new()
        .route(
            "/healthz",
            get(|| async { text(StatusCode::OK, "ok\n".into()) }).fallback(get_only),
        )
        .route("/readyz", get(ready).fallback(get_only))
        .route("/metrics", get(prometheus).fallback(get_only))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found: /healthz, /readyz, /metrics\n".into()) })
        .with_state((agent, metrics))
}

type Shared = State<(Arc<Agent>, Arc<Metrics>)>;

async fn ready(State((agent, _)): Shared) -> Response {
    match cached_readiness(&agent).await {
        Ok(()) => text(StatusCode::OK, ready_text(&agent)),
        Err(problems) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        ),
    }
}

async fn prometheus(State((_, metrics)): Shared) -> Response {
    if metrics.format() != MetricsFormat::Prometheus {
        return text(StatusCode::NOT_FOUND, "not found: /healthz, /readyz, /metrics\n".into());
    }
    let mut response = text(StatusCode::OK, metrics.render_prometheus());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}
