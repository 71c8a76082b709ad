//! `bucketscan serve`: the HTTP scanning API, on the same pipelines,
//! sandbox, allow-list and result destinations as the agent.
//!
//! - `POST /v1/scan?pipeline=NAME`: a file in the body, scanned by the
//!   named pipeline's *inspectors* (nothing touches a bucket), answered
//!   with the report `bucketscan plugin run --output json` prints
//!   ([`scan_upload`]);
//! - `POST /v1/objects/scan`: one S3 object version through its bucket's
//!   whole pipeline, actions included, now or as a job ([`scan_object`],
//!   [`jobs`]);
//! - `GET /healthz`, `GET /readyz`, `GET /openapi.yaml` (the contract,
//!   `host/serve/openapi.yaml`).
//!
//! Every `/v1/` request is authenticated first ([`auth`]), admitted to a
//! bounded number of scan slots ([`admission`]), and limited in body size,
//! silence and total time ([`upload`], [`Api::router`]); every error is
//! JSON with a stable code ([`errors`]). The routes are axum's, on the
//! server skeleton the agent's health endpoints share
//! (`bucketscan_runtime::http`).

pub mod admission;
pub mod auth;
pub mod config;
pub mod errors;
pub mod jobs;
mod scan_object;
mod scan_upload;
pub mod scans;
pub mod upload;

use crate::config::ServeConfig;
use admission::Gate;
use auth::{Caller, Keys};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{BoxError, Extension, Router};
use bucketscan_runtime::agent::Agent;
use bucketscan_runtime::http::{self, ServerLimits};
use errors::{ApiError, json_response};
use jobs::Jobs;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use upload::BodyLimits;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.yaml");
/// Connections served at once; past it new ones wait in the kernel's
/// accept queue.
const MAX_CONNECTIONS: usize = 1024;

/// The API's shared state.
pub struct Api {
    pub agent: Arc<Agent>,
    keys: Keys,
    gate: Gate,
    limits: BodyLimits,
    config: ServeConfig,
    jobs: Jobs,
    /// Jobs that may wait for a scan slot at once (half the slots): jobs
    /// never crowd out the synchronous requests.
    job_slots: tokio::sync::Semaphore,
    /// Object scans in flight, owned by the server (see [`scans`]).
    scans: Arc<scans::Scans>,
    /// Where scans still running at shutdown go.
    handoff: scans::Handoff,
    /// The console under `/console/`, when it is on.
    console: Option<Arc<bucketscan_console::Console>>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "[serve]: no API key, no anonymous pipeline and no console: nobody could use the API (`bucketscan api-key` makes a key)"
    )]
    NoCallers,
    #[error(
        "--console-dev-user: the server listens on {0}, not on loopback: a development user is for a local run only"
    )]
    DevUserNotLocal(std::net::SocketAddr),
    #[error(
        "[serve]: key `{0}` may scan objects, but no queue would take an object scan the server could not finish \
         (stopped, or S3/SNS failed midway): set [serve] handoff-queue, or [agent] queues"
    )]
    NoHandoff(String),
}

impl Api {
    /// The API over `agent`'s pipelines, with `config` (its `[serve]`,
    /// from [`ServeConfig::from_config`]).
    pub fn new(agent: Arc<Agent>, config: ServeConfig) -> Result<Self, ServeError> {
        Self::with_console(agent, config, None)
    }

    /// The API and, when `config` has `[serve.console]` or `dev_user` is
    /// given (on a loopback `listen` only), the console.
    pub fn with_console(
        agent: Arc<Agent>,
        config: ServeConfig,
        dev_user: Option<(bucketscan_console::identity::User, std::net::SocketAddr)>,
    ) -> Result<Self, ServeError> {
        let keys = Keys::new(&config);
        let sign_in = match (dev_user, &config.console) {
            (Some((_, listen)), _) if !listen.ip().is_loopback() => return Err(ServeError::DevUserNotLocal(listen)),
            (Some((user, _)), _) => Some(bucketscan_console::SignIn::DevUser(user)),
            (None, Some(console)) => Some(bucketscan_console::SignIn::LoadBalancer(
                bucketscan_console::identity::AlbVerifier::new(console.clone()),
            )),
            (None, None) => None,
        };
        if keys.is_empty() && sign_in.is_none() {
            return Err(ServeError::NoCallers);
        }
        let console = sign_in.map(|sign_in| {
            let entries = config
                .keys
                .iter()
                .map(|key| bucketscan_console::KeyEntry {
                    id: key.id.clone(),
                    pipelines: key.pipelines.clone(),
                    buckets: key.buckets.clone(),
                })
                .collect();
            Arc::new(bucketscan_console::Console::new(
                agent.clone(),
                sign_in,
                bucketscan_console::csrf::CsrfKey::from_env(),
                entries,
                auth::generate_key,
            ))
        });
        let started = &agent.started_with;
        let limits = BodyLimits {
            max_bytes: config.max_body_bytes.unwrap_or(started.clamav.stream_max_bytes),
            spool_threshold: started.agent.spool_threshold_bytes,
            spool_dir: started.agent.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
            min_rate: config.min_body_bytes_per_sec,
            budget: agent.spool_budget.clone(),
        };
        let handoff = scans::Handoff {
            sqs: agent.clients.sqs.clone(),
            queue: config
                .handoff_queue
                .clone()
                .or_else(|| started.agent.queues.first().cloned()),
        };
        Ok(Self {
            gate: Gate::new(
                config.concurrency,
                config.queue,
                Duration::from_secs(config.queue_wait_secs),
                config.per_key_concurrency.unwrap_or((config.concurrency / 2).max(1)),
            ),
            jobs: Jobs::new(config.max_jobs),
            job_slots: tokio::sync::Semaphore::new((config.concurrency / 2).max(1)),
            scans: Arc::default(),
            handoff,
            console,
            agent,
            keys,
            limits,
            config,
        })
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.config.request_timeout_secs.max(1))
    }

    /// The API's routes, with authentication in front of every `/v1/`
    /// one (before anything else of the request is read — and before the
    /// method is checked: nothing about the API answers a stranger), and
    /// the request timeout and request log around them all.
    pub fn router(self: &Arc<Self>) -> Router {
        let v1 = Router::new()
            .route(
                "/scan",
                post(scan_upload::handle).fallback(|| async { ApiError::method_not_allowed("POST") }),
            )
            .route(
                "/objects/scan",
                post(scan_object::handle).fallback(|| async { ApiError::method_not_allowed("POST") }),
            )
            .route("/jobs/{*id}", get(job))
            .fallback(no_such_path)
            .layer(middleware::from_fn_with_state(self.clone(), authenticate));
        let timeout = self.request_timeout();
        let mut router: Router<Arc<Self>> = Router::new();
        if let Some(console) = &self.console {
            router = router.merge(console.router());
        }
        router
            .route(
                "/healthz",
                any(|| async { json_response(StatusCode::OK, &json!({"status": "ok"})) }),
            )
            .route("/readyz", any(readyz))
            .route("/openapi.yaml", any(openapi))
            .nest("/v1", v1)
            .fallback(no_such_path)
            .layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                        ApiError::timeout(timeout.as_secs())
                    }))
                    .timeout(timeout),
            )
            .layer(middleware::from_fn(log_request))
            .with_state(self.clone())
    }
}

/// The caller, from the `Authorization` header, for the handlers.
async fn authenticate(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match api.keys.authenticate(authorization) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

/// One line per request: what was asked, the answer, how long it took.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %bucketscan_core::object::printable(&path),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "api request"
    );
    response
}

async fn no_such_path(uri: Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no such path: {}", uri.path()))
}

async fn readyz(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    match bucketscan_runtime::health::cached_readiness(&api.agent).await {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "status": "ready",
                "notes": bucketscan_runtime::health::notes(&api.agent),
            }),
        )),
        Err(problems) => Err(ApiError::not_ready(problems.join("; "))),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

async fn job(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = api
        .jobs
        .get(&id, &caller.id)
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job `{id}`")))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(job).unwrap_or_default(),
    ))
}

/// Serves `listener` until `stop` turns true, then lets requests and
/// object scans in flight finish for at most `drain` in all, and hands the
/// scans still running to the agents' queue.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let limits = ServerLimits {
        // A client that never finishes its headers is dropped.
        header_timeout: api.limits.idle,
        max_connections: MAX_CONNECTIONS,
    };
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
        tracing::info!("API stopping: no new connections; letting requests in flight finish");
    };
    let deadline = tokio::time::Instant::now() + drain;
    if !http::serve(listener, api.router(), limits, stopped, drain).await {
        tracing::warn!("requests still in flight after {drain:?}; stopping anyway");
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let unfinished = api.scans.finish(left).await;
    api.handoff.send(&unfinished).await;
}
