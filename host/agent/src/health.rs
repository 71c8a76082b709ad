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
use crate::metrics::{Metrics, MetricsFormat};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

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
                bucketscan_engine::text::cap(why, 512)
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

fn ready_text(agent: &Agent) -> String {
    let mut text = String::from("ready\n");
    for note in notes(agent) {
        text.push_str(&note);
        text.push('\n');
    }
    text
}

/// Binds `addr` and serves until the process ends. Binding happens before
/// this returns, so a bad address is a start-up error.
pub async fn serve(addr: SocketAddr, agent: Arc<Agent>, metrics: Arc<Metrics>) -> Result<(), crate::StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| crate::StartError::Health { addr, error })?;
    tracing::info!(%addr, "serving /healthz, /readyz{}", if metrics.format() == MetricsFormat::Prometheus { ", /metrics" } else { "" });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (agent, metrics) = (agent.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (agent, metrics) = (agent.clone(), metrics.clone());
                    async move { Ok::<_, std::convert::Infallible>(route(request, &agent, &metrics).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

async fn route(request: Request<hyper::body::Incoming>, agent: &Agent, metrics: &Metrics) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness(agent).await {
            Ok(()) => text(StatusCode::OK, ready_text(agent)),
            Err(problems) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", problems.join("; ")),
            ),
        },
        "/metrics" if metrics.format() == MetricsFormat::Prometheus => {
            let mut response = text(StatusCode::OK, metrics.render_prometheus());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found: /healthz, /readyz, /metrics\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
