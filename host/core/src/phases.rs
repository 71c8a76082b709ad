//! The rules of the one scan path every object takes — the agent's events,
//! `bucketscan scan` sweeps and `bucketscan plugin run --config` dry runs
//! alike (`bucketscan-scan` runs them; this module decides them):
//!
//! 1. **route**: the bucket's pipeline for the key; none, nothing to do;
//! 2. **open**: metadata and tags, and the **admit** check — the size
//!    (from the event, a listing or the response headers) against what the
//!    pipeline may scan: over it the verdict is `unscannable (too-large)`
//!    and no byte is downloaded; an object S3 will not hand over (a
//!    customer key, an archive tier, a key the agent may not use) is
//!    `unscannable` with that reason;
//! 3. **fetch**: the exact version (or ETag) once, within the spool budget,
//!    hashed as it arrives;
//! 4. **trust**: a result an agent sealed for exactly these bytes (its own
//!    copy, a sweep's "already current") ends the pass; result tags no
//!    agent sealed are removed before anything reads them;
//! 5. **inspect**: what a client receives — the `Content-Encoding` undone,
//!    the containers surveyed — through the inspectors, folded into one
//!    verdict (the stored bytes too, when they were decoded);
//! 6. **allow**: an operator's allow-list lifts findings on exactly those
//!    bytes, never a policy's `blocked`;
//! 7. **record**: the result tags (a storage action like any other, so a
//!    dry run shows them), sealed, never trusting what the object carried;
//! 8. **act**: the actions whose `on` matches — unless the verdict is
//!    `error` or the object is held; deletes (and the delete half of a
//!    move) are *deferred* to step 10;
//! 9. **notify**: the result is published;
//! 10. **release**: the deferred deletes run, conditional on the scanned
//!     version or ETag;
//!
//! and only then is the event **settled** (acknowledged).
//!
//! Because nothing destructive happens before the notification, a failure
//! anywhere (SNS down, a `required` webhook refusing, the process killed)
//! leaves the object where it was, and the redelivered event runs the path
//! again: the result is published at least once, and the source is removed
//! only after it was.

use crate::tags::TagPlan;
use crate::verdict::{UnscannableReason, Verdict};

/// Whether an object of `size` bytes may be fetched for a pipeline that
/// scans at most `limit` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Fetch,
    /// Decided without the bytes.
    TooLarge(Verdict),
}

pub fn admit(size: u64, limit: u64) -> Admission {
    if size > limit {
        Admission::TooLarge(Verdict::Unscannable {
            reason: UnscannableReason::TooLarge,
            detail: format!("{size} bytes is over the {limit}-byte limit of this pipeline; not downloaded"),
        })
    } else {
        Admission::Fetch
    }
}

/// Whether the actions run for `verdict` once `tags` were recorded: never
/// for a verdict that does not settle (see [`settles`]: nothing is moved,
/// promoted or deleted, and the event comes back), never for a held
/// object.
pub fn runs_actions(verdict: &Verdict, tags: &TagPlan) -> bool {
    settles(verdict) && tags.held.is_none()
}

/// Whether an object with `verdict` is settled once its path completed.
/// Two verdicts say more about the scanner than about the object and are
/// retried (until the queue's redrive policy gives up): an `error`, and
/// `unscannable (stale-signatures)` — signatures that were not loaded or
/// fresh at that moment, which a retry a little later can fix.
pub fn settles(verdict: &Verdict) -> bool {
    !matches!(
        verdict,
        Verdict::Error { .. }
            | Verdict::Unscannable {
                reason: UnscannableReason::StaleSignatures,
                ..
            }
    )
}

/// Whether the result is published: every settled result is.
pub fn publishes(verdict: &Verdict) -> bool {
    settles(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_limit_is_inclusive_and_decides_without_bytes() {
        assert_eq!(admit(10, 10), Admission::Fetch);
        let Admission::TooLarge(verdict) = admit(11, 10) else {
            panic!("over the limit")
        };
        assert_eq!(verdict.result_name(), "unscannable");
        assert!(verdict.to_string().contains("not downloaded"), "{verdict}");
    }

    #[test]
    fn errors_run_no_actions_and_never_settle() {
        let error = Verdict::error("clamd unreachable");
        assert!(!runs_actions(&error, &TagPlan::default()));
        assert!(!settles(&error));
        assert!(!publishes(&error));
        assert!(runs_actions(&Verdict::Clean, &TagPlan::default()));
    }

    #[test]
    fn stale_signatures_are_the_scanner_s_problem_and_are_retried() {
        let stale = Verdict::Unscannable {
            reason: UnscannableReason::StaleSignatures,
            detail: "built 72 h ago".into(),
        };
        assert!(!settles(&stale) && !runs_actions(&stale, &TagPlan::default()));
        let too_large = Verdict::Unscannable {
            reason: UnscannableReason::TooLarge,
            detail: String::new(),
        };
        assert!(
            settles(&too_large),
            "a property of the object: settled (quarantined, alerted)"
        );
    }

    #[test]
    fn a_held_object_runs_no_actions_but_settles() {
        let held = TagPlan {
            held: Some("no slot".into()),
            ..TagPlan::default()
        };
        assert!(!runs_actions(&Verdict::Clean, &held));
        assert!(settles(&Verdict::Clean));
    }
}
