//! `POST /v1/scan?pipeline=NAME`: a file in the request body, scanned by
//! the inspectors of the pipeline `[buckets.NAME]` declares (the longest
//! prefix matching the file's name wins, as for objects). Actions do not
//! run: nothing here touches a bucket. The answer is the scan report:
//! 200 for a finished scan whatever the verdict (the client reads
//! `result`), 503 `scan_failed` when the scan itself failed.

use crate::Api;
use crate::auth::Caller;
use crate::errors::{ApiError, json_response};
use crate::upload;
use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bucketscan_core::object::{ObjectInfo, printable};
use bucketscan_core::pipeline::StageKind;
use bucketscan_core::report::ScanReport;
use bucketscan_engine::PipelineStage;
use bucketscan_scan::Routing;
use std::sync::Arc;
use std::time::Instant;

/// The file's name (decides prefix pipelines, and the extension checks).
pub const FILENAME_HEADER: &str = "x-bucketscan-filename";
const MAX_FILENAME: usize = 1024;

pub async fn handle(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_param(request.uri().query().unwrap_or_default())?;
    if !caller.may_use_pipeline(&pipeline) {
        return Err(ApiError::forbidden(format!(
            "key `{}` may not use pipeline `{}`",
            caller.id,
            printable(&pipeline)
        )));
    }
    let headers = request.headers();
    let filename = filename(headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let snapshot = api.agent.pipelines.snapshot();
    let stages = inspectors_for(snapshot.as_ref(), &pipeline, &filename)?;

    // A slot before the body: an overloaded server reads nothing.
    let _slot = api.gate.admit(&caller.id).await?;
    let received = upload::receive(request.into_body(), announced, &api.limits).await?;
    let started = Instant::now();
    let info = ObjectInfo {
        bucket: pipeline.clone(),
        key: filename,
        size: received.size,
        content_type,
        sha256: Some(received.sha256.clone()),
        ..ObjectInfo::default()
    };
    let mut report = api
        .agent
        .scanner
        .inspect_only(snapshot.as_ref(), &stages, info, received.body)
        .await
        .map_err(|err| ApiError::unfinished(err.to_string()))?;
    // The entry's source and note name who released what from where:
    // not for every caller holding the same bytes.
    report.allowed = report.allowed.take().map(|mut allowed| {
        allowed.entry.source = "allow-list".into();
        allowed.entry.note = None;
        allowed
    });
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        caller = %caller.id,
        pipeline = %printable(&pipeline),
        key = %printable(&report.key),
        bytes = report.size,
        verdict = report.result().as_str(),
        "api scan"
    );
    if let Some(store) = &api.agent.results
        && let Err(err) = store.record_upload(&report, &pipeline, &caller.id).await
    {
        tracing::warn!(error = %err, "api scan: not recorded in the results table");
    }
    answer(&report)
}

/// `?pipeline=NAME`, required.
fn pipeline_param(query: &str) -> Result<String, ApiError> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "pipeline")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError::bad_request("query parameter `pipeline` is missing: POST /v1/scan?pipeline=NAME"))
}

/// The file's name from its percent-encoded header ("upload" without one).
fn filename(headers: &HeaderMap) -> Result<String, ApiError> {
    let filename = match headers.get(FILENAME_HEADER) {
        Some(value) => {
            let encoded = value.to_str().map_err(|_| {
                ApiError::bad_request(format!("{FILENAME_HEADER} is not visible ASCII (percent-encode it)"))
            })?;
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .map(|name| name.into_owned())
                .map_err(|_| ApiError::bad_request(format!("{FILENAME_HEADER} is not percent-encoded UTF-8")))?
        }
        None => "upload".to_owned(),
    };
    if filename.is_empty() || filename.len() > MAX_FILENAME {
        return Err(ApiError::bad_request(format!(
            "{FILENAME_HEADER}: 1 to {MAX_FILENAME} bytes"
        )));
    }
    Ok(filename)
}

/// The stages that would judge `filename` in `pipeline`; refused when the
/// pipeline is unknown or has no inspector to judge with.
fn inspectors_for(pipelines: &dyn Routing, pipeline: &str, filename: &str) -> Result<Arc<[PipelineStage]>, ApiError> {
    let Some((_, stages)) = pipelines.route(pipeline, filename) else {
        return Err(ApiError::not_found(
            "unknown_pipeline",
            format!(
                "no pipeline `{}`: declare [buckets.NAME] with its stages",
                printable(pipeline)
            ),
        ));
    };
    if !stages.iter().any(|stage| stage.plugin.kind == StageKind::Inspector) {
        return Err(ApiError::unprocessable(
            "no_inspector",
            format!(
                "pipeline `{}` has no inspector: it could not judge a file",
                printable(pipeline)
            ),
        ));
    }
    Ok(stages)
}

/// 200 with the report for a finished scan, whatever its verdict; 503
/// `scan_failed` (with the report) when the scan itself failed.
fn answer(report: &ScanReport) -> Result<Response, ApiError> {
    let body = serde_json::to_value(report).map_err(|err| ApiError::internal(err.to_string()))?;
    if let bucketscan_core::Verdict::Error { message } = &report.verdict {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "error": { "code": "scan_failed", "message": message },
                "report": body,
            }),
        );
        response.headers_mut().insert(header::RETRY_AFTER, 5.into());
        return Ok(response);
    }
    let mut response = json_response(StatusCode::OK, &body);
    if let Ok(value) = header::HeaderValue::from_str(report.result().as_str()) {
        response.headers_mut().insert("x-bucketscan-result", value);
    }
    Ok(response)
}
