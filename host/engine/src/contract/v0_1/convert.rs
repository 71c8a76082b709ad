//! Contract 0.1 types to and from the domain's (`bucketscan-core`), checked
//! on the way in: a plugin's output is untrusted.

use super::inspector::bucketscan::plugin::types;
use crate::contract::limits::{MAX_FINDINGS, text};
use bucketscan_core::{Decision, Finding, UnscannableReason, Verdict};

pub(super) fn verdict_from_wit(verdict: types::Verdict) -> Result<Verdict, String> {
    Ok(match verdict {
        types::Verdict::Clean => Verdict::Clean,
        types::Verdict::Infected(findings) => {
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
                        location: None,
                    })
                })
                .collect::<Result<_, String>>()?;
            Verdict::Infected { findings }
        }
        types::Verdict::Blocked(reason) => Verdict::Blocked {
            reason: text("blocked reason", reason)?,
        },
        types::Verdict::Unscannable(u) => Verdict::Unscannable {
            reason: match u.reason {
                types::UnscannableReason::Encrypted => UnscannableReason::Encrypted,
                types::UnscannableReason::TooLarge => UnscannableReason::TooLarge,
                types::UnscannableReason::LimitsExceeded => UnscannableReason::LimitsExceeded,
                types::UnscannableReason::StaleSignatures => UnscannableReason::StaleSignatures,
                types::UnscannableReason::NotScanned => UnscannableReason::NotScanned,
            },
            detail: text("unscannable detail", u.detail)?,
        },
        types::Verdict::Error(message) => Verdict::Error {
            message: text("error message", message)?,
        },
    })
}

pub(super) fn decision_from_wit(decision: types::Decision) -> Result<Decision, String> {
    Ok(match decision {
        types::Decision::Continue => Decision::Continue,
        types::Decision::Verdict(verdict) => Decision::Verdict(verdict_from_wit(verdict)?),
    })
}

pub(super) fn verdict_to_wit(verdict: &Verdict) -> types::Verdict {
    match verdict {
        Verdict::Clean => types::Verdict::Clean,
        Verdict::Infected { findings } => types::Verdict::Infected(
            findings
                .iter()
                .map(|f| types::Finding {
                    engine: f.engine.clone(),
                    signature: f.signature.clone(),
                })
                .collect(),
        ),
        Verdict::Blocked { reason } => types::Verdict::Blocked(reason.clone()),
        Verdict::Unscannable { reason, detail } => {
            // Reasons only the host gives have no name in this series: the
            // plugin sees `not-scanned`, and the detail says which.
            let (reason, detail) = match reason {
                UnscannableReason::Encrypted => (types::UnscannableReason::Encrypted, detail.clone()),
                UnscannableReason::TooLarge => (types::UnscannableReason::TooLarge, detail.clone()),
                UnscannableReason::LimitsExceeded => (types::UnscannableReason::LimitsExceeded, detail.clone()),
                UnscannableReason::StaleSignatures => (types::UnscannableReason::StaleSignatures, detail.clone()),
                UnscannableReason::NotScanned => (types::UnscannableReason::NotScanned, detail.clone()),
                host_only => (
                    types::UnscannableReason::NotScanned,
                    format!("{}: {detail}", host_only.as_str()),
                ),
            };
            types::Verdict::Unscannable(types::Unscannable { reason, detail })
        }
        Verdict::Error { message } => types::Verdict::Error(message.clone()),
    }
}
