//! `POST /v1/objects/scan` `{"bucket", "key", "version_id"?}`: one S3
//! object — exactly that version when given, current or not — through its
//! bucket's pipeline with every action (tags, promotion, quarantine,
//! notification), like `bucketscan scan s3://bucket/key --version-id V`.
//! Answered with the report when it is done, or at once with a job
//! (202, `Location: /v1/jobs/ID`) when the request says
//! `Prefer: respond-async`. Either way the scan belongs to the server
//! ([`crate::scans`]): a caller that hangs up or times out does not stop
//! it between its steps.

use crate::Api;
use crate::auth::Caller;
use crate::errors::{ApiError, json_response};
use crate::jobs::{Job, JobStatus};
use crate::scans::ScanTarget;
use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bucketscan_core::object::printable;
use bucketscan_runtime::agent::Handled;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use std::sync::Arc;

/// The largest request body this endpoint reads (the JSON naming the object).
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRequest {
    bucket: String,
    key: String,
    #[serde(default, alias = "version")]
    version_id: Option<String>,
}

pub async fn handle(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    let respond_async = request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async")));
    let body = tokio::time::timeout(
        api.limits.idle,
        Limited::new(request.into_body(), MAX_REQUEST).collect(),
    )
    .await
    .map_err(|_| ApiError::request_timeout("the request body did not arrive"))?
    .map_err(|err| ApiError::bad_request(format!("reading the request (at most {MAX_REQUEST} bytes): {err}")))?
    .to_bytes();
    let wanted: ObjectRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body is not {{\"bucket\", \"key\", \"version_id\"?}}: {err}"
        ))
    })?;
    if !caller.may_scan_bucket(&wanted.bucket) {
        return Err(ApiError::forbidden(format!(
            "key `{}` may not scan objects in `{}`",
            caller.id,
            printable(&wanted.bucket)
        )));
    }
    check_bucket(&api, &wanted.bucket)?;
    if respond_async {
        return start_job(&api, &caller, wanted);
    }
    let slot = api.gate.admit(&caller.id).await?;
    let target = target_of(&wanted);
    let owner = api.clone();
    let scan = api.scans.start(target.clone(), async move {
        let _slot = slot;
        owner.scan_or_hand_over(&target).await
    });
    let handled = scan
        .await
        .map_err(|err| ApiError::internal(format!("the scan task ended: {err}")))?;
    match handled {
        Handled::Scanned(report) => {
            let body = serde_json::to_value(&*report).map_err(|err| ApiError::internal(err.to_string()))?;
            Ok(json_response(StatusCode::OK, &body))
        }
        Handled::Skipped(why) => Err(ApiError::unprocessable("not_scanned", why)),
        Handled::Retry { why, report: None } => Err(ApiError::unfinished(why)),
        // What the pass found and did before it stopped (an action that
        // failed, the alert it published) goes with the answer.
        Handled::Retry {
            why,
            report: Some(report),
        } => {
            let mut response = ApiError::unfinished(why.clone()).response();
            let body = serde_json::json!({
                "error": { "code": "not_finished", "message": why },
                "report": &*report,
            });
            *response.body_mut() = axum::body::Body::from(body.to_string());
            Ok(response)
        }
    }
}

/// Only buckets a pipeline scans, and never a name that stands only for an
/// upload pipeline (`api-only`): such a name is not the agent's bucket,
/// and may well be somebody else's.
fn check_bucket(api: &Api, bucket: &str) -> Result<(), ApiError> {
    let unknown = |why: &str| {
        Err(ApiError::not_found(
            "unknown_bucket",
            format!("bucket `{}` {why}", printable(bucket)),
        ))
    };
    match api.agent.started_with.buckets.get(bucket) {
        None => unknown("is not declared in the config"),
        Some(declared) if declared.api_only => unknown("names an upload pipeline (api-only), not a bucket"),
        Some(declared) if !declared.is_scanned() => unknown("has no pipeline: nothing would scan its objects"),
        Some(_) => Ok(()),
    }
}

fn target_of(wanted: &ObjectRequest) -> ScanTarget {
    ScanTarget {
        bucket: wanted.bucket.clone(),
        key: wanted.key.clone(),
        version_id: wanted.version_id.clone(),
    }
}

impl Api {
    /// One object scan, within the agent's per-object deadline; a scan
    /// that cannot finish (it ran out of time, S3 or SNS failed between
    /// two steps) is handed to the queue, where it is finished later —
    /// never left half done.
    async fn scan_or_hand_over(&self, target: &ScanTarget) -> Handled {
        let deadline = std::time::Duration::from_secs(self.agent.started_with.agent.object_timeout_secs.max(1));
        // Its own task, so that a panic inside is a scan to hand over, not
        // a request that vanished with its object half-handled.
        let agent = self.agent.clone();
        let owned = target.clone();
        let mut scan = tokio::spawn(async move {
            agent
                .scan_on_demand(&owned.bucket, &owned.key, owned.version_id.as_deref())
                .await
        });
        let handled = match tokio::time::timeout(deadline, &mut scan).await {
            Ok(Ok(handled)) => handled,
            Ok(Err(failed)) => Handled::retry(format!("the scan stopped: {failed}")),
            Err(_) => {
                scan.abort();
                Handled::retry(format!(
                    "not finished within [agent] object-timeout-secs ({} s)",
                    deadline.as_secs()
                ))
            }
        };
        match handled {
            Handled::Retry { why, report } => {
                let why = match self.handoff.send(std::slice::from_ref(target)).await {
                    Some(queue) => format!("{why}; handed to {queue}, where it is finished"),
                    None => format!("{why}; handing it to a queue failed: scan it again"),
                };
                Handled::Retry { why, report }
            }
            other => other,
        }
    }
}

fn start_job(api: &Arc<Api>, caller: &Caller, target: ObjectRequest) -> Result<Response, ApiError> {
    let job = api.jobs.create(Job {
        id: String::new(),
        status: JobStatus::Queued,
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        version_id: target.version_id.clone(),
        created_at: bucketscan_scan::now_rfc3339(),
        report: None,
        error: None,
        owner: caller.id.clone(),
    })?;
    let id = job.id.clone();
    let api_for_job = api.clone();
    let scan_target = target_of(&target);
    // Registered with the server's scans from the start, waiting for a
    // slot included: a shutdown hands a job that never ran to the agents.
    api.scans.start(scan_target, async move {
        let api = api_for_job;
        // Jobs wait as long as it takes — bounded in number by max-jobs,
        // and at most half the slots' worth of them queue for a slot.
        let _job_slot = api.job_slots.acquire().await;
        let _slot = api.gate.admit_patiently().await;
        api.jobs.update(&id, |job| job.status = JobStatus::Running);
        let timeout = std::time::Duration::from_secs(api.config.job_timeout_secs.max(1));
        let owner = api.clone();
        let target = target_of(&target);
        let mut scan = std::pin::pin!(async move { owner.scan_or_hand_over(&target).await });
        let handled = match tokio::time::timeout(timeout, &mut scan).await {
            Ok(handled) => handled,
            Err(_) => {
                // The job's answer is due; the scan is not stopped halfway
                // (its result still lands on the object and its alert).
                api.jobs.update(&id, |job| {
                    job.status = JobStatus::Failed;
                    job.error = Some(serde_json::json!({
                        "code": "scan_timeout",
                        "message": format!(
                            "the job took longer than {} s; its scan goes on, and its result will be on the \
                             object's tags and in the notifications",
                            timeout.as_secs()
                        ),
                    }));
                });
                return scan.await;
            }
        };
        api.jobs.update(&id, |job| match &handled {
            Handled::Scanned(report) => {
                job.status = JobStatus::Done;
                job.report = serde_json::to_value(&**report).ok();
            }
            Handled::Skipped(why) => {
                job.status = JobStatus::Failed;
                job.error = Some(serde_json::json!({"code": "not_scanned", "message": why}));
            }
            Handled::Retry { why, report } => {
                job.status = JobStatus::Failed;
                job.error = Some(serde_json::json!({"code": "not_finished", "message": why}));
                job.report = report.as_ref().and_then(|report| serde_json::to_value(&**report).ok());
            }
        });
        handled
    });
    let location = format!("/v1/jobs/{}", job.id);
    let mut response = json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({"id": job.id, "status": job.status, "status_url": location}),
    );
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
