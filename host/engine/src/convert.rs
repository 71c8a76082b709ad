//! Conversions between generated binding types and `bucketscan-core` types.
//!
//! Values coming from a plugin are untrusted: they are checked here, and
//! anything the contract does not allow (an infected verdict without
//! findings, oversized strings) is refused as malformed output.

use crate::bindings::types as wit;
use bucketscan_core::{Decision, Finding, UnscannableReason, Verdict};

/// Most findings one verdict may carry.
pub const MAX_FINDINGS: usize = 64;
/// Longest signature, reason or detail string accepted from a plugin.
pub const MAX_TEXT: usize = 1024;
/// Most lines one action may report.
pub const MAX_ACTION_LINES: usize = 64;

/// A string from a plugin: refused when oversized, cleaned of control
/// characters (it ends up in logs, tags, notifications and terminals).
fn text(field: &str, value: String) -> Result<String, String> {
    if value.len() > MAX_TEXT {
        Err(format!(
            "{field} is {} bytes; at most {MAX_TEXT} are allowed",
            value.len()
        ))
    } else {
        Ok(crate::text::cap(&value, MAX_TEXT))
    }
}

pub fn verdict_from_wit(verdict: wit::Verdict) -> Result<Verdict, String> {
    Ok(match verdict {
        wit::Verdict::Clean => Verdict::Clean,
        wit::Verdict::Infected(findings) => {
            if findings.is_empty() {
                return Err("an infected verdict must name at least one finding".into());
            }
            if findings.len() > MAX_FINDINGS {
                return Err(format!(
                    "{} findings; at most {MAX_FINDINGS} are allowed",
                    findings.len()
                ));
            }
            let findings = findings
                .into_iter()
                .map(|f| {
                    Ok(Finding {
                        engine: text("finding engine", f.engine)?,
                        signature: text("finding signature", f.signature)?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Verdict::Infected { findings }
        }
        wit::Verdict::Blocked(reason) => Verdict::Blocked {
            reason: text("blocked reason", reason)?,
        },
        wit::Verdict::Unscannable(u) => Verdict::Unscannable {
            reason: match u.reason {
                wit::UnscannableReason::Encrypted => UnscannableReason::Encrypted,
                wit::UnscannableReason::TooLarge => UnscannableReason::TooLarge,
                wit::UnscannableReason::LimitsExceeded => UnscannableReason::LimitsExceeded,
                wit::UnscannableReason::StaleSignatures => UnscannableReason::StaleSignatures,
                wit::UnscannableReason::NotScanned => UnscannableReason::NotScanned,
            },
            detail: text("unscannable detail", u.detail)?,
        },
        wit::Verdict::Error(message) => Verdict::Error {
            message: text("error message", message)?,
        },
    })
}

pub fn decision_from_wit(decision: wit::Decision) -> Result<Decision, String> {
    Ok(match decision {
        wit::Decision::Continue => Decision::Continue,
        wit::Decision::Verdict(verdict) => Decision::Verdict(verdict_from_wit(verdict)?),
    })
}

pub fn verdict_to_wit(verdict: &Verdict) -> wit::Verdict {
    match verdict {
        Verdict::Clean => wit::Verdict::Clean,
        Verdict::Infected { findings } => wit::Verdict::Infected(
            findings
                .iter()
                .map(|f| wit::Finding {
                    engine: f.engine.clone(),
                    signature: f.signature.clone(),
                })
                .collect(),
        ),
        Verdict::Blocked { reason } => wit::Verdict::Blocked(reason.clone()),
        Verdict::Unscannable { reason, detail } => wit::Verdict::Unscannable(wit::Unscannable {
            reason: match reason {
                UnscannableReason::Encrypted => wit::UnscannableReason::Encrypted,
                UnscannableReason::TooLarge => wit::UnscannableReason::TooLarge,
                UnscannableReason::LimitsExceeded => wit::UnscannableReason::LimitsExceeded,
                UnscannableReason::StaleSignatures => wit::UnscannableReason::StaleSignatures,
                UnscannableReason::NotScanned => wit::UnscannableReason::NotScanned,
            },
            detail: detail.clone(),
        }),
        Verdict::Error { message } => wit::Verdict::Error(message.clone()),
    }
}

pub fn action_lines_from_wit(lines: Vec<String>) -> Result<Vec<String>, String> {
    if lines.len() > MAX_ACTION_LINES {
        return Err(format!(
            "{} report lines; at most {MAX_ACTION_LINES} are allowed",
            lines.len()
        ));
    }
    lines.into_iter().map(|line| text("report line", line)).collect()
}
