//! The YARA bridge: asks the host to run a rule set over the object and
//! turns the matches into a verdict by policy. It never says `clean`: a
//! rule set adds detections, it cannot allow a file. No match is no
//! objection (`continue`), and the other inspectors decide.
//!
//! Policy (stage settings):
//! - `rule-set` (required): the rule set to run; the stage needs it in its
//!   `yara` grant.
//! - `infected-tags` (default `["malware"]`): a matching rule with one of
//!   these tags makes the object `infected`.
//! - `infected-metadata` (default `["malware=true", "severity=high",
//!   "severity=critical"]`): so does one with one of these `key=value`
//!   metadata (values compared without case).
//! - Any other match is a finding only: logged with its rule, namespace,
//!   tags and offsets, and the object goes on to the next inspector.
//! - `over-limit` = `unscannable` | `continue` (default `unscannable`):
//!   what an object larger than the rule set reads whole is. `continue`
//!   leaves it to the other engines, and the log says YARA did not read it.
//!
//! Errors are never clean: a rule set not loaded or stale is `unscannable
//! (stale-signatures)`, anything else `error`.

mod policy;

use bucketscan_plugin_sdk::{
    Decision, Inspector, Level, PluginError, PluginInfo, Settings, Stage, UnscannableReason, Verdict, log, yara,
};
use policy::{OverLimit, Policy};

struct YaraBridge;

impl Inspector for YaraBridge {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "yara-bridge",
            env!("CARGO_PKG_VERSION"),
            "runs a YARA rule set in the host; matches become verdicts by policy",
        )
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        let policy = Policy::from_settings(&Settings::of(stage))?;
        let object = stage.object();
        let answer = match yara::scan(&object, &policy.rule_set) {
            Ok(answer) => answer,
            Err(yara::ScanError::SizeLimit(message)) => {
                return Ok(match policy.over_limit {
                    OverLimit::Unscannable => Decision::Verdict(Verdict::unscannable(
                        UnscannableReason::TooLarge,
                        format!("yara: {message}"),
                    )),
                    OverLimit::Continue => {
                        log(Level::Info, "yara did not read the object", &[("why", &message)]);
                        Decision::Continue
                    }
                });
            }
            Err(yara::ScanError::NotReady(message)) => {
                return Ok(Decision::Verdict(Verdict::unscannable(
                    UnscannableReason::StaleSignatures,
                    message,
                )));
            }
            Err(
                yara::ScanError::UnknownRuleSet(message)
                | yara::ScanError::Timeout(message)
                | yara::ScanError::Read(message)
                | yara::ScanError::Other(message),
            ) => return Ok(Decision::Verdict(Verdict::Error(format!("yara: {message}")))),
        };
        let judged = policy.judge(&answer.matches);
        for finding in &judged.findings_only {
            log(
                Level::Info,
                "yara finding",
                &[
                    ("rule", &finding.rule),
                    ("namespace", &finding.namespace),
                    ("tags", &finding.tags.join(",")),
                    ("offsets", &policy::offsets(finding)),
                    ("rule-set", &format!("{}@{}", answer.rule_set, answer.version)),
                ],
            );
        }
        Ok(match judged.infected.is_empty() {
            true => Decision::Continue,
            false => Decision::Verdict(Verdict::Infected(judged.infected)),
        })
    }
}

bucketscan_plugin_sdk::export_inspector!(YaraBridge);
