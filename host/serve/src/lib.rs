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
//! silence and total time ([`upload`], [`Api::route`]); every error is
//! JSON with a stable code ([`errors`]).

pub mod admission;
pub mod auth;
pub mod errors;
pub mod jobs;
mod scan_object;
mod scan_upload;
pub mod scans;
pub mod upload;

use admission::Gate;
use auth::{Caller, Keys};
use bucketscan_agent::agent::Agent;
use bucketscan_core::config::serve::ServeConfig;
use errors::{ApiError, json_response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use jobs::Jobs;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// The last readiness answer, reused for a second: `/readyz` needs no
    /// key, and must not let anyone make the server ping clamd at will.
    /// One check at a time: a burst while clamd hangs waits for the one
    /// in flight instead of opening a connection each.
    readiness: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "[serve]: no API key and no anonymous pipeline: nobody could use the API (`bucketscan api-key` makes a key)"
    )]
    NoCallers,
    #[error(
        "[serve]: key `{0}` may scan objects, but no queue would take an object scan the server could not finish \
         (stopped, or S3/SNS failed midway): set [serve] handoff-queue, or [agent] queues"
    )]
    NoHandoff(String),
}

impl Api {
    pub fn new(agent: Arc<Agent>) -> Result<Self, ServeError> {
        let config = agent.started_with.serve.clone();
        let keys = Keys::new(&config);
        if keys.is_empty() {
            return Err(ServeError::NoCallers);
        }
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
            readiness: tokio::sync::Mutex::new(None),
            agent,
            keys,
            limits,
            config,
        })
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.config.request_timeout_secs.max(1))
    }

    /// One request, start to finish, within the request timeout.
    pub async fn route(self: &Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let timeout = self.request_timeout();
        let answer = match tokio::time::timeout(timeout, self.dispatch(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(ApiError::timeout(timeout.as_secs())),
        };
        let response = answer.unwrap_or_else(|err| err.response());
        tracing::info!(
            %method,
            path = %bucketscan_core::object::printable(&path),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "api request"
        );
        response
    }

    async fn dispatch(self: &Arc<Self>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match path.as_str() {
            "/healthz" => return Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            "/readyz" => {
                return match self.ready().await {
                    Ok(()) => Ok(json_response(
                        StatusCode::OK,
                        &serde_json::json!({
                            "status": "ready",
                            "notes": bucketscan_agent::health::notes(&self.agent),
                        }),
                    )),
                    Err(problems) => Err(ApiError::not_ready(problems)),
                };
            }
            "/openapi.yaml" => {
                let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/yaml"),
                );
                return Ok(response);
            }
            _ => {}
        }
        if !path.starts_with("/v1/") {
            return Err(ApiError::not_found("not_found", format!("no such path: {path}")));
        }
        // Who, before anything else is read.
        let caller = self
            .keys
            .authenticate(request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()))?;
        match (path.as_str(), &method) {
            ("/v1/scan", &Method::POST) => scan_upload::handle(self, &caller, request).await,
            ("/v1/scan", _) => Err(ApiError::method_not_allowed("POST")),
            ("/v1/objects/scan", &Method::POST) => scan_object::handle(self, &caller, request).await,
            ("/v1/objects/scan", _) => Err(ApiError::method_not_allowed("POST")),
            (job, &Method::GET) if job.starts_with("/v1/jobs/") => self.job(&caller, &job["/v1/jobs/".len()..]),
            _ => Err(ApiError::not_found("not_found", format!("no such path: {path}"))),
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let mut cached = self.readiness.lock().await;
        if let Some((at, answer)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(1)
        {
            return answer.clone();
        }
        let answer = bucketscan_agent::health::readiness(&self.agent)
            .await
            .map_err(|problems| problems.join("; "));
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }

    fn job(&self, caller: &Caller, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
        let job = self
            .jobs
            .get(id, &caller.id)
            .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job `{id}`")))?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(job).unwrap_or_default(),
        ))
    }
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
    let idle = api.limits.idle;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let api = api.clone();
        let service = hyper::service::service_fn(move |request| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.route(request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            // A client that never finishes its headers is dropped.
            .header_read_timeout(idle)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    tracing::info!("API stopping: no new connections; letting requests in flight finish");
    let deadline = tokio::time::Instant::now() + drain;
    if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {drain:?}; stopping anyway");
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let unfinished = api.scans.finish(left).await;
    api.handoff.send(&unfinished).await;
}
