//! The webhook: posts every scan result as JSON to one or more URLs.
//!
//! Settings:
//! - `url`: a URL, or several (a TOML array); each host must be in the
//!   stage's `http` grant;
//! - `timeout-ms` (default 5000) per attempt, `attempts` (default 3): a
//!   timeout, connection error, 5xx or 429 is retried with a doubling
//!   backoff by the host;
//! - `required` (default false): when false, a receiver that stays down is
//!   logged and reported but the object's handling goes on — a slow or
//!   failing receiver never holds up an object or changes its verdict.
//!   When true, a failed delivery fails the stage and the agent retries the
//!   whole object later (a receiver that must see every result).
//!
//! Signing is the host's: give the stage a `signing-secret` and each request
//! carries `x-bucketscan-timestamp` and `x-bucketscan-signature`
//! (`sha256=` HMAC-SHA256 of `TIMESTAMP.BODY`). The secret never reaches
//! this plugin.

use bucketscan_plugin_sdk::{
    Action, Level, PluginError, PluginInfo, Settings, Stage, StageOutcome, Verdict, final_verdict, http, log,
};
use serde_json::{Value, json};

struct Webhook;

impl Action for Webhook {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "webhook",
            env!("CARGO_PKG_VERSION"),
            "posts each scan result as signed JSON to configured URLs",
        )
    }

    fn act(stage: &Stage) -> Result<Vec<String>, PluginError> {
        let settings = Settings::of(stage);
        settings.reject_unknown(&["url", "timeout-ms", "attempts", "required"])?;
        let invalid = |message: String| PluginError::InvalidSettings(message);
        let urls = settings.list("url")?;
        if urls.is_empty() {
            return Err(invalid("setting `url` is required".into()));
        }
        let timeout_ms = settings.u64("timeout-ms")?.unwrap_or(5000);
        if !(1..=30_000).contains(&timeout_ms) {
            return Err(invalid(format!(
                "setting `timeout-ms`: {timeout_ms} is outside 1..=30000"
            )));
        }
        let attempts = settings.u64("attempts")?.unwrap_or(3);
        if !(1..=5).contains(&attempts) {
            return Err(invalid(format!("setting `attempts`: {attempts} is outside 1..=5")));
        }
        let required = settings.bool_or("required", false)?;

        let body = result_json(stage)?.to_string().into_bytes();
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for url in urls {
            let request = http::Request::new(&url);
            request.set_header("content-type", "application/json");
            request.set_body(&body);
            request.set_timeout_ms(timeout_ms as u32);
            request.set_attempts(attempts as u8);
            match http::send(request) {
                Ok(response) if (200..300).contains(&response.status()) => {
                    lines.push(format!("webhook {url}: {}", response.status()));
                }
                Ok(response) => failures.push(format!("{url}: answered {}", response.status())),
                // The host's message names the request and its attempts.
                Err(err) => failures.push(err.message().to_owned()),
            }
        }
        for failure in &failures {
            log(Level::Warn, "webhook delivery failed", &[("error", failure)]);
            lines.push(format!("webhook not delivered: {failure}"));
        }
        if required && !failures.is_empty() {
            return Err(PluginError::Unavailable(format!(
                "required webhook not delivered: {}",
                failures.join("; ")
            )));
        }
        Ok(lines)
    }
}

/// A stage outcome's stable name (the one the agent's JSON uses).
fn outcome_name(outcome: StageOutcome) -> &'static str {
    match outcome {
        StageOutcome::Continue => "continue",
        StageOutcome::Clean => "clean",
        StageOutcome::Infected => "infected",
        StageOutcome::Blocked => "blocked",
        StageOutcome::Unscannable => "unscannable",
        StageOutcome::Error => "error",
        StageOutcome::Done => "done",
        StageOutcome::Failed => "failed",
        StageOutcome::Skipped => "skipped",
        StageOutcome::NotApplicable => "not applicable",
    }
}

/// The body: the object, the verdict with its findings, how long each
/// earlier stage took, and the agent.
fn result_json(stage: &Stage) -> Result<Value, PluginError> {
    let object = stage.object();
    let verdict = final_verdict(stage)?;
    let (result, detail, findings) = match &verdict {
        Verdict::Clean => ("clean", String::new(), Vec::new()),
        Verdict::Infected(findings) => (
            "infected",
            String::new(),
            findings
                .iter()
                .map(|f| json!({ "engine": f.engine, "signature": f.signature }))
                .collect(),
        ),
        Verdict::Blocked(reason) => ("blocked", reason.clone(), Vec::new()),
        Verdict::Unscannable(u) => ("unscannable", format!("{:?}: {}", u.reason, u.detail), Vec::new()),
        Verdict::Error(message) => ("error", message.clone(), Vec::new()),
    };
    let timings: Vec<Value> = stage
        .earlier_stages()
        .into_iter()
        .map(|t| json!({ "plugin": t.plugin, "outcome": outcome_name(t.outcome), "duration_us": t.duration_us }))
        .collect();
    Ok(json!({
        "bucket": object.bucket(),
        "key": object.key(),
        "version_id": object.version_id(),
        "etag": object.etag(),
        "sha256": object.sha256(),
        "size": object.size(),
        "verdict": result,
        "detail": detail,
        "findings": findings,
        "timings": timings,
        "agent": stage.agent_id(),
    }))
}

bucketscan_plugin_sdk::export_action!(Webhook);
