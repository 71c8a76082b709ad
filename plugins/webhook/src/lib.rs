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

use bucketscan_plugin_sdk::{Action, Level, Object, PluginInfo, Settings, Verdict, context, http, log};
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

    fn act(object: &Object, settings: &Settings, verdict: &Verdict) -> Result<Vec<String>, String> {
        settings.reject_unknown(&["url", "timeout-ms", "attempts", "required"])?;
        let urls = settings.list("url");
        if urls.is_empty() {
            return Err("setting `url` is required".into());
        }
        let timeout_ms = settings.u64("timeout-ms")?.unwrap_or(5000);
        if !(1..=30_000).contains(&timeout_ms) {
            return Err(format!("setting `timeout-ms`: {timeout_ms} is outside 1..=30000"));
        }
        let attempts = settings.u64("attempts")?.unwrap_or(3);
        if !(1..=5).contains(&attempts) {
            return Err(format!("setting `attempts`: {attempts} is outside 1..=5"));
        }
        let required = settings.bool_or("required", false)?;

        let body = result_json(object, verdict).to_string().into_bytes();
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for url in urls {
            let request = http::Request {
                url: url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.clone(),
                timeout_ms: timeout_ms as u32,
                attempts: attempts as u8,
            };
            match http::send(&request) {
                Ok(response) if (200..300).contains(&response.status) => {
                    lines.push(format!("webhook {url}: {}", response.status));
                }
                Ok(response) => failures.push(format!("{url}: answered {}", response.status)),
                Err(err) => failures.push(err),
            }
        }
        for failure in &failures {
            log(Level::Warn, "webhook delivery failed", &[("error", failure)]);
            lines.push(format!("webhook not delivered: {failure}"));
        }
        if required && !failures.is_empty() {
            return Err(format!("required webhook not delivered: {}", failures.join("; ")));
        }
        Ok(lines)
    }
}

/// The body: the object, the verdict with its findings, how long each
/// earlier stage took, and the agent.
fn result_json(object: &Object, verdict: &Verdict) -> Value {
    let info = object.info();
    let (result, detail, findings) = match verdict {
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
    let timings: Vec<Value> = context::stage_timings()
        .into_iter()
        .map(|t| json!({ "plugin": t.plugin, "outcome": t.outcome, "duration_us": t.duration_us }))
        .collect();
    json!({
        "bucket": info.bucket,
        "key": info.key,
        "version_id": info.version_id,
        "etag": info.etag,
        "size": info.size,
        "verdict": result,
        "detail": detail,
        "findings": findings,
        "timings": timings,
        "agent": context::agent_id(),
    })
}

bucketscan_plugin_sdk::export_action!(Webhook);
