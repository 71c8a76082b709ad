//! Contract 0.2 types to and from the domain's (`bucketscan-core`), checked
//! on the way in: a plugin's output is untrusted.

use super::inspector::bucketscan::plugin::{types, yara};
use crate::contract::limits::{MAX_FINDINGS, text};
use bucketscan_core::config::SettingValue;
use bucketscan_core::report::StageOutcome;
use bucketscan_core::{Decision, Finding, ResultName, UnscannableReason, Verdict};

/// A plugin's error, as the report shows it: its kind first (`other` has none).
pub(super) fn plugin_error(err: types::PluginError) -> String {
    let text = match err {
        types::PluginError::InvalidSettings(m) => format!("invalid settings: {m}"),
        types::PluginError::Unavailable(m) => format!("unavailable: {m}"),
        types::PluginError::Other(m) => m,
    };
    bucketscan_core::text::cap(&text, 2048)
}

pub(super) fn setting_to_wit(value: &SettingValue) -> types::SettingValue {
    match value {
        SettingValue::Text(s) => types::SettingValue::Text(s.clone()),
        SettingValue::Integer(i) => types::SettingValue::Integer(*i),
        SettingValue::Float(f) => types::SettingValue::Float(*f),
        SettingValue::Boolean(b) => types::SettingValue::Boolean(*b),
        SettingValue::List(items) => types::SettingValue::Items(items.clone()),
    }
}

pub(super) fn outcome_to_wit(outcome: StageOutcome) -> types::StageOutcome {
    match outcome {
        StageOutcome::Continue => types::StageOutcome::Continue,
        StageOutcome::Verdict(ResultName::Clean) => types::StageOutcome::Clean,
        StageOutcome::Verdict(ResultName::Infected) => types::StageOutcome::Infected,
        StageOutcome::Verdict(ResultName::Blocked) => types::StageOutcome::Blocked,
        StageOutcome::Verdict(ResultName::Unscannable) => types::StageOutcome::Unscannable,
        StageOutcome::Verdict(ResultName::Error) => types::StageOutcome::Error,
        StageOutcome::Done => types::StageOutcome::Done,
        StageOutcome::Failed => types::StageOutcome::Failed,
        StageOutcome::Skipped => types::StageOutcome::Skipped,
        StageOutcome::NotApplicable => types::StageOutcome::NotApplicable,
    }
}

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

/// A rule that matched, as 0.2 plugins receive it.
pub(super) fn rule_match_to_wit(m: bucketscan_yara::RuleMatch) -> yara::RuleMatch {
    yara::RuleMatch {
        rule: m.rule,
        namespace: m.namespace,
        tags: m.tags,
        metadata: m.metadata,
        patterns: m
            .patterns
            .into_iter()
            .map(|p| yara::PatternMatch {
                pattern: p.pattern,
                offset: p.offset,
                length: p.length,
            })
            .collect(),
    }
}
