//! The ClamAV bridge: asks the host to stream the object to clamd and turns
//! clamd's answer into a verdict.
//!
//! Policy (stage settings):
//! - `max-size` (e.g. `100MB`): larger objects are `unscannable (too-large)`
//!   without being sent to clamd.
//! - `limits` = `unscannable` | `infected`: what `Heuristics.Limits.Exceeded.*`
//!   alerts mean (default `unscannable`; never clean).
//! - `encrypted` = `unscannable` | `infected` | `blocked`: what
//!   `Heuristics.Encrypted.*` alerts mean (default `unscannable`).
//! - `pua` = `infected` | `ignore`: whether `PUA.*` signatures count
//!   (default `infected`).
//! - `heuristics` = `infected` | `ignore`: whether other `Heuristics.*`
//!   alerts count (default `infected`).
//!
//! clamd errors are never clean: a size-limit error is `unscannable
//! (too-large)`, stale signatures are `unscannable (stale-signatures)`,
//! anything else (unreachable, timeout, protocol) is `error`.

mod policy;

use bucketscan_plugin_sdk::{
    Decision, Inspector, Level, PluginError, PluginInfo, Settings, Stage, UnscannableReason, Verdict, clamav, log,
};
use policy::Policy;

struct ClamavBridge;

impl Inspector for ClamavBridge {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "clamav-bridge",
            env!("CARGO_PKG_VERSION"),
            "scans objects with clamd (INSTREAM) and maps results to verdicts",
        )
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        let policy = Policy::from_settings(&Settings::of(stage))?;
        let object = stage.object();
        let size = object.size();
        if let Some(max) = policy.max_size
            && size > max
        {
            return Ok(Decision::Verdict(Verdict::unscannable(
                UnscannableReason::TooLarge,
                format!("{size} bytes is over the clamav-bridge max-size of {max} bytes"),
            )));
        }
        let verdict = match clamav::scan(&object) {
            Ok(report) => {
                log(
                    Level::Debug,
                    "clamd scanned object",
                    &[("engine", &report.engine_version), ("found", &report.found.join(","))],
                );
                policy.verdict(&report.found)
            }
            Err(clamav::ScanError::SizeLimit(message)) => {
                Verdict::unscannable(UnscannableReason::TooLarge, format!("clamd: {message}"))
            }
            Err(clamav::ScanError::StaleSignatures(message)) => {
                Verdict::unscannable(UnscannableReason::StaleSignatures, message)
            }
            Err(
                clamav::ScanError::Unreachable(message)
                | clamav::ScanError::Timeout(message)
                | clamav::ScanError::Read(message)
                | clamav::ScanError::Other(message),
            ) => Verdict::Error(message),
        };
        Ok(Decision::Verdict(verdict))
    }
}

bucketscan_plugin_sdk::export_inspector!(ClamavBridge);
