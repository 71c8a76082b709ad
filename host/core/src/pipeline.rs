//! How a pipeline's stages combine into one verdict.
//!
//! Inspectors run in order. The first verdict other than `clean` ends
//! inspection (later inspectors could not make the object clean again).
//! An object is clean only when at least one inspector said so and none said
//! anything worse: a pipeline where every inspector answered `continue` did
//! not prove the object clean, so it is `unscannable (not-scanned)`.

pub use crate::verdict::ResultName;
use crate::verdict::{Decision, UnscannableReason, Verdict};
use serde::{Deserialize, Serialize};

/// The two kinds of stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Looks at the object and may reach a verdict.
    Inspector,
    /// Acts on the final verdict.
    Action,
}

/// Whether the pipeline should run its next inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Next,
    Stop,
}

/// The verdict as it builds up over the inspectors of one pipeline run.
#[derive(Debug, Default)]
pub struct VerdictFold {
    reached: Option<Verdict>,
    /// Verdicts of inspectors that ran after the first one other than
    /// clean (only when the runner keeps going, see [`Flow`]).
    later: Vec<Verdict>,
}

impl VerdictFold {
    pub fn new() -> Self {
        Self::default()
    }

    /// The verdict earlier inspectors reached, handed to the next one.
    pub fn so_far(&self) -> Option<&Verdict> {
        self.reached.as_ref()
    }

    /// Records one inspector's decision. After the first verdict other
    /// than clean the answer is [`Flow::Stop`]; an inspector run anyway is
    /// recorded among [`VerdictFold::later`] and cannot change the verdict.
    pub fn record(&mut self, decision: Decision) -> Flow {
        if self.reached.as_ref().is_some_and(|v| !v.is_clean()) {
            if let Decision::Verdict(verdict) = decision {
                self.later.push(verdict);
            }
            return Flow::Stop;
        }
        match decision {
            Decision::Continue => Flow::Next,
            Decision::Verdict(Verdict::Clean) => {
                self.reached = Some(Verdict::Clean);
                Flow::Next
            }
            Decision::Verdict(verdict) => {
                self.reached = Some(verdict);
                Flow::Stop
            }
        }
    }

    /// The final verdict, and the verdicts of inspectors that ran after it
    /// was reached.
    pub fn finish(self) -> (Verdict, Vec<Verdict>) {
        let verdict = self.reached.unwrap_or_else(|| Verdict::Unscannable {
            reason: UnscannableReason::NotScanned,
            detail: "no inspector in the pipeline reached a verdict".into(),
        });
        (verdict, self.later)
    }
}

/// Whether an action configured with `on` runs for `verdict`; an empty `on`
/// means every verdict.
pub fn action_applies(on: &[ResultName], verdict: &Verdict) -> bool {
    on.is_empty() || on.contains(&verdict.result_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Finding;

    fn infected() -> Verdict {
        Verdict::Infected {
            findings: vec![Finding {
                engine: "clamav".into(),
                signature: "Eicar".into(),
                location: None,
            }],
        }
    }

    #[test]
    fn all_continue_is_not_proven_clean() {
        let mut inspection = VerdictFold::new();
        assert_eq!(inspection.record(Decision::Continue), Flow::Next);
        assert!(matches!(
            inspection.finish().0,
            Verdict::Unscannable {
                reason: UnscannableReason::NotScanned,
                ..
            }
        ));
    }

    #[test]
    fn clean_then_infected_is_infected() {
        let mut inspection = VerdictFold::new();
        assert_eq!(inspection.record(Decision::Verdict(Verdict::Clean)), Flow::Next);
        assert_eq!(inspection.so_far(), Some(&Verdict::Clean));
        assert_eq!(inspection.record(Decision::Verdict(infected())), Flow::Stop);
        assert_eq!(inspection.finish().0, infected());
    }

    #[test]
    fn an_error_stops_inspection_and_is_never_clean() {
        let mut inspection = VerdictFold::new();
        inspection.record(Decision::Verdict(Verdict::Clean));
        let flow = inspection.record(Decision::Verdict(Verdict::error("plugin trapped")));
        assert_eq!(flow, Flow::Stop);
        assert_eq!(inspection.finish().0.result_name(), ResultName::Error);
    }

    #[test]
    fn continue_after_clean_keeps_clean() {
        let mut inspection = VerdictFold::new();
        inspection.record(Decision::Verdict(Verdict::Clean));
        inspection.record(Decision::Continue);
        assert!(inspection.finish().0.is_clean());
    }

    #[test]
    fn inspectors_run_past_the_verdict_are_kept_apart_and_change_nothing() {
        let mut inspection = VerdictFold::new();
        assert_eq!(inspection.record(Decision::Verdict(infected())), Flow::Stop);
        let blocked = Verdict::Blocked {
            reason: "executable".into(),
        };
        assert_eq!(inspection.record(Decision::Verdict(blocked.clone())), Flow::Stop);
        inspection.record(Decision::Verdict(Verdict::Clean));
        let (verdict, later) = inspection.finish();
        assert_eq!(verdict, infected());
        assert_eq!(later, vec![blocked, Verdict::Clean]);
    }

    #[test]
    fn actions_filter_on_result_names() {
        assert!(action_applies(&[], &Verdict::Clean));
        assert!(action_applies(&[ResultName::Clean], &Verdict::Clean));
        assert!(!action_applies(&[ResultName::Clean], &infected()));
        assert!(action_applies(
            &[ResultName::Infected, ResultName::Blocked],
            &infected()
        ));
    }
}
