//! Result tags: what the agent writes onto scanned objects, and how they
//! share S3's ten tag slots with the object's own tags.
//!
//! The rules, in order of importance:
//! 1. **Our keys are ours.** Whatever an object carries under the agent's
//!    result keys when it arrives (an uploader can set any tag) is never
//!    trusted and never kept: it is replaced by the real result.
//! 2. **Containment beats the tag limit.** For a verdict that keeps the
//!    object out (infected, blocked, unscannable, error) every result tag is
//!    written; the object's own tags fill the slots that remain, in their
//!    original order, and the ones that do not fit are *dropped* and
//!    reported (notification, report, and the metadata of a quarantine
//!    copy).
//! 3. **A clean object keeps all its own tags.** Our tags take the slots
//!    that remain, most important first (result and seal, then date,
//!    engine, signature); the ones that do not fit are *omitted* and
//!    reported. A result is never written without its seal (the agent could
//!    not tell it from a forgery, nor take it back if it landed on newer
//!    bytes): when result and seal do not both fit, the object is *held* —
//!    not tagged, not promoted, reported as clean-but-held so a person can
//!    remove tags and rescan it.
//!
//! S3's other limits (128-character keys, 256-character values, a
//! restricted character set) are met by [`sanitize`].

use crate::seal::{SealOrigin, SealSubject, Sealer};
use crate::verdict::{ResultName, UnscannableReason, Verdict};
use serde::{Deserialize, Serialize};

/// S3's maximum number of tags on one object.
pub const MAX_TAGS: usize = 10;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// Whose tag vocabulary the result tag speaks, so that bucket policies and
/// rules written for another product keep working unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagProfile {
    /// `bucketscan-result` = `clean | infected | blocked | unscannable | error`.
    #[default]
    Bucketscan,
    /// GuardDuty Malware Protection for S3: `GuardDutyMalwareScanStatus` =
    /// `NO_THREATS_FOUND | THREATS_FOUND | UNSUPPORTED | FAILED`.
    Guardduty,
    /// Cloud Storage Security: `scan-result` = `Clean | Infected |
    /// Unscannable | Error`.
    Css,
}

impl TagProfile {
    pub const ALL: [TagProfile; 3] = [Self::Bucketscan, Self::Guardduty, Self::Css];

    /// The result tag's key when `[tags] result` is not set.
    pub fn result_key(self) -> &'static str {
        match self {
            Self::Bucketscan => "bucketscan-result",
            Self::Guardduty => "GuardDutyMalwareScanStatus",
            Self::Css => "scan-result",
        }
    }

    /// The value written for `result`. Blocked objects are written as the
    /// other products' "threat" value: a policy that lets only clean
    /// objects through must keep them out too.
    pub fn value(self, result: ResultName) -> &'static str {
        use ResultName::*;
        match (self, result) {
            (Self::Bucketscan, name) => name.as_str(),
            (Self::Guardduty, Clean) => "NO_THREATS_FOUND",
            (Self::Guardduty, Infected | Blocked) => "THREATS_FOUND",
            (Self::Guardduty, Unscannable) => "UNSUPPORTED",
            (Self::Guardduty, Error) => "FAILED",
            (Self::Css, Clean) => "Clean",
            (Self::Css, Infected | Blocked) => "Infected",
            (Self::Css, Unscannable) => "Unscannable",
            (Self::Css, Error) => "Error",
        }
    }

    /// The value written for `verdict`: [`TagProfile::value`] of its
    /// result, except that GuardDuty names a refused read `ACCESS_DENIED`.
    pub fn value_of(self, verdict: &Verdict) -> &'static str {
        match (self, verdict) {
            (
                Self::Guardduty,
                Verdict::Unscannable {
                    reason: UnscannableReason::AccessDenied,
                    ..
                },
            ) => GUARDDUTY_ACCESS_DENIED,
            _ => self.value(verdict.result_name()),
        }
    }

    /// The value a released false positive carries (`bucketscan release`).
    /// GuardDuty has no such value: its readers only know
    /// `NO_THREATS_FOUND` as "may be read", and a release means exactly that.
    pub fn allowed_value(self) -> &'static str {
        match self {
            Self::Bucketscan => "allowed",
            Self::Guardduty => "NO_THREATS_FOUND",
            Self::Css => "InfectedAllowed",
        }
    }

    /// The result a written value stands for (blocked reads back as
    /// infected under the other profiles; allowed as clean).
    pub fn parse(self, value: &str) -> Option<ResultName> {
        if value == self.allowed_value() {
            return Some(ResultName::Clean);
        }
        if self == Self::Guardduty && value == GUARDDUTY_ACCESS_DENIED {
            return Some(ResultName::Unscannable);
        }
        ResultName::ALL.into_iter().find(|name| self.value(*name) == value)
    }
}

/// GuardDuty's status for an object it was not allowed to read.
const GUARDDUTY_ACCESS_DENIED: &str = "ACCESS_DENIED";

/// The tag keys bucketscan writes (`[tags]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TagKeys {
    /// Whose vocabulary the result tag uses; also sets the result key's
    /// default (see [`TagKeys::with_profile_defaults`]).
    pub profile: TagProfile,
    /// The result, in the profile's values (`clean`, `infected`, ... for
    /// the default profile).
    pub result: String,
    /// The seal that proves the other result tags are the agent's own.
    pub seal: String,
    /// When the scan finished, RFC 3339 UTC.
    pub date: String,
    /// The engine and signature database version (clamd's VERSION).
    pub engine: String,
    /// The first finding's signature name, or the reason for other results.
    pub signature: String,
    /// The `Content-Encoding` the host undid before the scan (written only
    /// for objects that had one).
    pub decoded: String,
    /// How the verdict covers an object too large for the engine whole
    /// (`members`); not written for objects scanned whole.
    pub coverage: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        Self {
            profile: TagProfile::Bucketscan,
            result: "bucketscan-result".into(),
            seal: "bucketscan-seal".into(),
            date: "bucketscan-date".into(),
            engine: "bucketscan-engine".into(),
            signature: "bucketscan-signature".into(),
            decoded: "bucketscan-decoded".into(),
            coverage: "bucketscan-coverage".into(),
        }
    }
}

impl TagKeys {
    /// Applies the profile's result key when the config left `result` at
    /// the default profile's key.
    pub fn with_profile_defaults(mut self) -> Self {
        if self.result == TagProfile::Bucketscan.result_key() {
            self.result = self.profile.result_key().to_owned();
        }
        self
    }

    /// The result the object's result tag stands for, if it carries one.
    pub fn result_name_of(&self, tags: &[(String, String)]) -> Option<ResultName> {
        self.profile.parse(self.result_of(tags)?)
    }

    /// Every key, most important first.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.result,
            &self.seal,
            &self.date,
            &self.engine,
            &self.signature,
            &self.decoded,
            &self.coverage,
        ]
    }

    /// Whether `key` is one of ours: only the agent writes it. Every
    /// profile's result key counts, whatever the profile: a policy keyed
    /// on GuardDuty's or CSS's tag must never see an uploader's value for
    /// it, also not after the profile changes.
    pub fn owns(&self, key: &str) -> bool {
        self.all().contains(&key) || TagProfile::ALL.iter().any(|profile| profile.result_key() == key)
    }

    /// The object's own tags: everything not under our keys.
    pub fn foreign(&self, tags: &[(String, String)]) -> Vec<(String, String)> {
        tags.iter().filter(|(k, _)| !self.owns(k)).cloned().collect()
    }

    /// Our tags on an object, seal excluded, in the order written.
    pub fn ours_without_seal(&self, tags: &[(String, String)]) -> Vec<(String, String)> {
        tags.iter()
            .filter(|(k, _)| self.owns(k) && *k != self.seal)
            .cloned()
            .collect()
    }

    /// The value of our result tag on an object, if it carries one.
    pub fn result_of<'a>(&self, tags: &'a [(String, String)]) -> Option<&'a str> {
        find(tags, &self.result)
    }

    /// Whether `tags` hold result tags sealed by `sealer` for `subject`, and
    /// the origin the seal states.
    pub fn verify(&self, sealer: &Sealer, subject: SealSubject<'_>, tags: &[(String, String)]) -> Option<SealOrigin> {
        let seal = find(tags, &self.seal)?;
        self.result_of(tags)?;
        sealer.verify(seal, subject, &self.ours_without_seal(tags))
    }
}

fn find<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The values of one scan's result tags, before the seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultValues {
    pub result: String,
    pub date: String,
    pub engine: Option<String>,
    pub signature: Option<String>,
    /// The codings undone (`gzip+br`), when there were any.
    pub decoded: Option<String>,
    /// How the verdict covers the object, when not whole (`members`).
    pub coverage: Option<String>,
}

impl ResultValues {
    /// The values for `verdict`, scanned at `date` with `engine`, in the
    /// vocabulary of `profile`.
    pub fn new(profile: TagProfile, verdict: &Verdict, date: &str, engine: Option<&str>) -> Self {
        let signature = match verdict {
            Verdict::Clean => None,
            Verdict::Infected { findings } => findings.first().map(|f| f.signature.clone()),
            Verdict::Blocked { reason } => Some(reason.clone()),
            Verdict::Unscannable { reason, .. } => Some(reason.as_str().to_owned()),
            Verdict::Error { message } => Some(message.clone()),
        };
        Self {
            result: profile.value_of(verdict).to_owned(),
            date: sanitize(date),
            engine: engine.map(sanitize).filter(|e| !e.is_empty()),
            signature: signature.map(|s| sanitize(&s)).filter(|s| !s.is_empty()),
            decoded: None,
            coverage: None,
        }
    }

    /// The tags, most important first, without the seal.
    fn pairs(&self, keys: &TagKeys) -> Vec<(String, String)> {
        let mut pairs = vec![
            (keys.result.clone(), self.result.clone()),
            (keys.date.clone(), self.date.clone()),
        ];
        if let Some(engine) = &self.engine {
            pairs.push((keys.engine.clone(), engine.clone()));
        }
        if let Some(signature) = &self.signature {
            pairs.push((keys.signature.clone(), signature.clone()));
        }
        if let Some(decoded) = &self.decoded {
            pairs.push((keys.decoded.clone(), sanitize(decoded)));
        }
        if let Some(coverage) = &self.coverage {
            pairs.push((keys.coverage.clone(), sanitize(coverage)));
        }
        pairs
    }
}

/// What to write on one object: its own tags that stay, our tags, and what
/// the ten-tag limit cost (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TagPlan {
    /// The complete tag set to write.
    pub tags: Vec<(String, String)>,
    /// The object's own tags that did not fit (containment verdicts only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<(String, String)>,
    /// Our tag keys left out so a clean object keeps all its own tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
    /// Why the object is held instead of tagged (clean, no slot left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// Where the tags go and how they are sealed.
#[derive(Debug, Clone, Copy)]
pub struct TagTarget<'a> {
    pub subject: SealSubject<'a>,
    pub origin: SealOrigin,
    /// True for verdicts that keep the object out (everything but clean):
    /// our tags then win over the object's own.
    pub contain: bool,
}

/// Plans the tags for one object: `existing` are its tags now (ours among
/// them are discarded), `values` the result to record.
pub fn plan(
    keys: &TagKeys,
    sealer: &Sealer,
    existing: &[(String, String)],
    values: &ResultValues,
    target: TagTarget<'_>,
) -> TagPlan {
    let foreign = keys.foreign(existing);
    let ours = values.pairs(keys);
    // Slots for ours, most important first: result, seal, then the rest.
    let wanted = ours.len() + 1;
    let room = if target.contain {
        wanted
    } else {
        MAX_TAGS.saturating_sub(foreign.len()).min(wanted)
    };
    if room < 2 {
        return TagPlan {
            tags: existing.to_vec(),
            held: Some(format!(
                "the object has {} tags of its own and S3 allows {MAX_TAGS}: no two slots are left for `{}` and \
                 its seal; remove a tag and scan it again",
                foreign.len(),
                keys.result
            )),
            ..TagPlan::default()
        };
    }
    // The result, then (after the seal) as many of the others as fit.
    let mut kept_ours = vec![ours[0].clone()];
    kept_ours.extend(ours.iter().skip(1).take(room - 2).cloned());
    let omitted: Vec<String> = ours.iter().skip(kept_ours.len()).map(|(k, _)| k.clone()).collect();
    let mut ours_written = kept_ours.clone();
    let seal = sealer.seal(target.origin, target.subject, &kept_ours);
    ours_written.insert(1, (keys.seal.clone(), seal));
    let slots_for_foreign = MAX_TAGS - ours_written.len();
    let (kept_foreign, dropped) = if foreign.len() > slots_for_foreign {
        (
            foreign[..slots_for_foreign].to_vec(),
            foreign[slots_for_foreign..].to_vec(),
        )
    } else {
        (foreign, Vec::new())
    };
    let mut tags = kept_foreign;
    tags.extend(ours_written);
    TagPlan {
        tags,
        dropped,
        omitted,
        held: None,
    }
}

/// Keeps a value within S3's tag character set and length: letters, digits,
/// spaces and `+ - = . _ : / @`; anything else becomes `_`.
pub fn sanitize(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.chars().take(MAX_VALUE).collect()
}

/// A tag key S3 would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid S3 tag key (1-{MAX_KEY} letters, digits, spaces, + - = . _ : / @)")]
pub struct InvalidTagKey(pub String);

/// Checks a tag key set from the config.
pub fn validate_key(key: &str) -> Result<(), InvalidTagKey> {
    if key.is_empty() || key.chars().count() > MAX_KEY || sanitize(key) != key {
        Err(InvalidTagKey(key.to_owned()))
    } else {
        Ok(())
    }
}

/// `k1=v1&k2=v2`, percent-encoded: how dropped tags are kept in metadata.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Finding;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn own(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
    }

    const SUBJECT: SealSubject<'static> = SealSubject {
        bucket: "staging",
        key: "a.txt",
        etag: "e1",
        version_id: None,
        sha256: Some("ab"),
    };

    fn target(contain: bool) -> TagTarget<'static> {
        TagTarget {
            subject: SUBJECT,
            origin: SealOrigin::Scanned,
            contain,
        }
    }

    fn infected() -> Verdict {
        Verdict::Infected {
            findings: vec![Finding {
                engine: "clamav".into(),
                signature: "Eicar-Test-Signature.UNOFFICIAL".into(),
                location: None,
            }],
        }
    }

    fn values(verdict: &Verdict) -> ResultValues {
        ResultValues::new(
            TagProfile::Bucketscan,
            verdict,
            "2026-11-25T10:00:00Z",
            Some("ClamAV 1.4.6/27000"),
        )
    }

    fn sealer() -> Sealer {
        Sealer::new(b"0123456789abcdef".to_vec())
    }

    #[test]
    fn forged_result_tags_are_replaced_and_other_tags_kept() {
        let keys = TagKeys::default();
        let existing = pairs(&[
            ("team", "finance"),
            ("bucketscan-result", "clean"),
            ("bucketscan-seal", "s1-00"),
        ]);
        let plan = plan(&keys, &sealer(), &existing, &values(&infected()), target(true));
        assert_eq!(keys.result_of(&plan.tags), Some("infected"));
        assert_eq!(plan.tags.iter().filter(|(k, _)| k == "bucketscan-result").count(), 1);
        assert!(plan.tags.contains(&("team".into(), "finance".into())));
        assert!(plan.dropped.is_empty() && plan.omitted.is_empty() && plan.held.is_none());
        assert_eq!(keys.verify(&sealer(), SUBJECT, &plan.tags), Some(SealOrigin::Scanned));
    }

    #[test]
    fn containment_writes_every_result_tag_and_drops_the_last_own_tags() {
        let keys = TagKeys::default();
        let plan = plan(&keys, &sealer(), &own(9), &values(&infected()), target(true));
        assert_eq!(plan.tags.len(), MAX_TAGS);
        assert_eq!(keys.result_of(&plan.tags), Some("infected"));
        for key in keys
            .all()
            .into_iter()
            .filter(|k| *k != keys.decoded && *k != keys.coverage)
        {
            assert!(
                plan.tags.iter().any(|(k, _)| k == key),
                "{key} missing: {:?}",
                plan.tags
            );
        }
        assert_eq!(
            plan.dropped,
            own(9)[5..].to_vec(),
            "the first five own tags stay, in order"
        );
        assert!(plan.tags.starts_with(&own(5)));
    }

    #[test]
    fn a_clean_object_keeps_all_its_tags_and_omits_ours_from_the_least_important() {
        let keys = TagKeys::default();
        let plan = plan(&keys, &sealer(), &own(7), &values(&Verdict::Clean), target(false));
        assert!(plan.dropped.is_empty());
        assert!(plan.tags.starts_with(&own(7)));
        // Clean has no signature tag: result, seal, date fit; engine does not.
        assert_eq!(plan.omitted, vec!["bucketscan-engine".to_string()]);
        assert_eq!(keys.verify(&sealer(), SUBJECT, &plan.tags), Some(SealOrigin::Scanned));
    }

    #[test]
    fn a_clean_object_with_two_free_slots_gets_the_sealed_result_only() {
        let keys = TagKeys::default();
        let plan = plan(&keys, &sealer(), &own(8), &values(&Verdict::Clean), target(false));
        assert_eq!(keys.result_of(&plan.tags), Some("clean"));
        assert_eq!(plan.tags.len(), 10);
        assert_eq!(plan.omitted, ["bucketscan-date", "bucketscan-engine"]);
        assert_eq!(keys.verify(&sealer(), SUBJECT, &plan.tags), Some(SealOrigin::Scanned));
    }

    #[test]
    fn a_result_is_never_written_without_its_seal() {
        // Nine or ten own tags: no room for result and seal together.
        let keys = TagKeys::default();
        for n in [9, 10] {
            let existing = own(n);
            let plan = plan(&keys, &sealer(), &existing, &values(&Verdict::Clean), target(false));
            assert_eq!(plan.tags, existing, "untouched");
            assert!(plan.held.as_deref().unwrap().contains(&format!("{n} tags of its own")));
        }
    }

    #[test]
    fn forged_result_tags_free_their_slots_for_the_real_result() {
        let keys = TagKeys::default();
        let mut existing = own(8);
        existing.push(("bucketscan-result".into(), "clean".into()));
        existing.push(("bucketscan-engine".into(), "forged".into()));
        let plan = plan(&keys, &sealer(), &existing, &values(&Verdict::Clean), target(false));
        assert!(plan.held.is_none());
        assert_eq!(keys.result_of(&plan.tags), Some("clean"));
        assert!(!plan.tags.iter().any(|(_, v)| v == "forged"));
    }

    #[test]
    fn result_values_name_the_signature() {
        let v = values(&infected());
        assert_eq!(v.result, "infected");
        assert_eq!(v.signature.as_deref(), Some("Eicar-Test-Signature.UNOFFICIAL"));
        assert_eq!(values(&Verdict::Clean).signature, None);
    }

    #[test]
    fn profiles_speak_the_other_products_values_and_read_them_back() {
        let guardduty = TagKeys {
            profile: TagProfile::Guardduty,
            ..TagKeys::default()
        }
        .with_profile_defaults();
        assert_eq!(guardduty.result, "GuardDutyMalwareScanStatus");
        let values = ResultValues::new(TagProfile::Guardduty, &infected(), "d", None);
        assert_eq!(values.result, "THREATS_FOUND");
        let blocked = Verdict::Blocked { reason: "exe".into() };
        assert_eq!(
            ResultValues::new(TagProfile::Css, &blocked, "d", None).result,
            "Infected"
        );
        assert_eq!(
            ResultValues::new(TagProfile::Css, &Verdict::Clean, "d", None).result,
            "Clean"
        );
        for profile in [TagProfile::Bucketscan, TagProfile::Guardduty, TagProfile::Css] {
            for name in [
                ResultName::Clean,
                ResultName::Infected,
                ResultName::Unscannable,
                ResultName::Error,
            ] {
                assert_eq!(profile.parse(profile.value(name)), Some(name), "{profile:?} {name}");
            }
            assert_eq!(profile.parse(profile.allowed_value()), Some(ResultName::Clean));
            assert_eq!(profile.parse("something else"), None);
        }
        // A key the config sets stays.
        let custom = TagKeys {
            profile: TagProfile::Css,
            result: "av-status".into(),
            ..TagKeys::default()
        }
        .with_profile_defaults();
        assert_eq!(custom.result, "av-status");
        let plan = plan(&guardduty, &sealer(), &[], &values, target(true));
        assert_eq!(guardduty.result_name_of(&plan.tags), Some(ResultName::Infected));
        assert_eq!(
            guardduty.verify(&sealer(), SUBJECT, &plan.tags),
            Some(SealOrigin::Scanned)
        );
    }

    #[test]
    fn every_profiles_result_key_is_ours_whatever_the_profile() {
        let keys = TagKeys::default();
        let forged = pairs(&[
            ("GuardDutyMalwareScanStatus", "NO_THREATS_FOUND"),
            ("scan-result", "Clean"),
            ("team", "qa"),
        ]);
        assert_eq!(keys.foreign(&forged), pairs(&[("team", "qa")]));
        let plan = plan(&keys, &sealer(), &forged, &values(&infected()), target(true));
        assert!(
            !plan
                .tags
                .iter()
                .any(|(k, _)| k == "GuardDutyMalwareScanStatus" || k == "scan-result")
        );
    }

    #[test]
    fn guardduty_names_a_refused_read_access_denied_and_reads_it_back() {
        let denied = Verdict::Unscannable {
            reason: UnscannableReason::AccessDenied,
            detail: "kms:Decrypt".into(),
        };
        assert_eq!(TagProfile::Guardduty.value_of(&denied), "ACCESS_DENIED");
        assert_eq!(
            TagProfile::Guardduty.parse("ACCESS_DENIED"),
            Some(ResultName::Unscannable)
        );
        let archived = Verdict::Unscannable {
            reason: UnscannableReason::Archived,
            detail: String::new(),
        };
        assert_eq!(TagProfile::Guardduty.value_of(&archived), "UNSUPPORTED");
        assert_eq!(TagProfile::Bucketscan.value_of(&denied), "unscannable");
    }

    #[test]
    fn values_are_sanitized() {
        assert_eq!(sanitize("file type (PE)!"), "file type _PE__");
        assert!(validate_key("bucketscan-result").is_ok());
        assert!(validate_key("bad,key").is_err());
    }
}
