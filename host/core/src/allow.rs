//! The allow-list: SHA-256 digests of exact bytes an operator declared
//! safe (a false positive, released). A scan of bytes on the list ends
//! `clean`, and the report says so and keeps what the pipeline found: an
//! allow-listed pass is never silent. Anything else — one byte different —
//! has another digest and is scanned as usual.
//!
//! Entries come from `[allow-list] sha256` in the config and, optionally,
//! from an S3 object (`[allow-list] object`) that `bucketscan release`
//! appends to and agents reload. Its format is one entry per line:
//! `HEX-SHA256 MARK [note]`, `#` starting a comment, where MARK is an
//! HMAC under the agents' seal key over the digest and the note
//! ([`Sealer::mark_allowed`]): whoever can write the object but does not
//! hold the key cannot add an entry. Lines without a valid mark are
//! skipped and reported; the others still apply.
//!
//! A line `revoke HEX-SHA256 [note]` revokes a digest (the console's
//! revoke button writes one). It needs no mark: a revocation only ever
//! allows less, which whoever can write the object can already do by
//! deleting lines. What it must survive is the opposite, an older copy of
//! the object written back without it, so a revocation is also kept where
//! that cannot undo it: in every running agent's memory
//! ([`AllowList::keep_revocations`]), in the results store's audit trail
//! (agents read it at every reload), and for good in the config's
//! `[allow-list] revoked`.

use crate::seal::Sealer;
use crate::verdict::{ResultName, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `[allow-list]` in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AllowListConfig {
    /// Digests allowed by the config itself.
    pub sha256: Vec<String>,
    /// `s3://bucket/key` of a list agents reload (and `release` appends to).
    pub object: Option<String>,
    /// How often agents reload the object, in seconds.
    pub refresh_secs: Option<u64>,
    /// Digests never allowed, whatever the list object says: how an entry
    /// is revoked (a line deleted from the object could be written back
    /// from an older copy of it).
    pub revoked: Vec<String>,
}

impl AllowListConfig {
    /// The default reload interval of the list object.
    pub const DEFAULT_REFRESH_SECS: u64 = 60;

    /// Checks every digest; the error names the entry.
    pub fn validate(&self) -> Result<(), String> {
        for (index, digest) in self.sha256.iter().enumerate() {
            check_digest(digest).map_err(|why| format!("[allow-list] sha256[{index}]: {why}"))?;
        }
        for (index, digest) in self.revoked.iter().enumerate() {
            check_digest(digest).map_err(|why| format!("[allow-list] revoked[{index}]: {why}"))?;
        }
        if let Some(object) = &self.object {
            parse_s3_url(object).map_err(|why| format!("[allow-list] object: {why}"))?;
        }
        Ok(())
    }

    /// Refuses a list object in a bucket whose uploads are scanned: whoever
    /// may upload there could write the list.
    pub fn check_placement(&self, scanned: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if let Some(object) = &self.object
            && let Ok((bucket, _)) = parse_s3_url(object)
            && scanned(&bucket)
        {
            return Err(format!(
                "[allow-list] object `{object}`: bucket `{bucket}` has a pipeline, so its uploaders could write the \
                 list; keep it in a bucket only operators write"
            ));
        }
        Ok(())
    }
}

/// `s3://bucket/key` → (bucket, key).
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{url}` is not an s3://bucket/key URL"))?;
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok((bucket.to_owned(), key.to_owned())),
        _ => Err(format!("`{url}` names no bucket and key (s3://bucket/key)")),
    }
}

/// What starts a line that revokes a digest.
const REVOKE: &str = "revoke ";

/// `note` as the rest of one line: no line breaks, no comment mark.
fn one_line_note(note: &str) -> String {
    note.replace(['\n', '\r', '#'], " ").trim().to_owned()
}

/// Checks a SHA-256 given as text.
pub fn check_digest(digest: &str) -> Result<(), String> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("`{digest}` is not a SHA-256 (64 hex digits)"))
    }
}

/// Why one digest is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowEntry {
    /// Where the entry comes from: `config`, or `s3://bucket/key:LINE`.
    pub source: String,
    /// The text after the digest on its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The digests allowed now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: HashMap<String, AllowEntry>,
    /// Digests never allowed, and who said so.
    revoked: HashMap<String, AllowEntry>,
}

/// A line of a list object that is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}:{line}: {why}")]
pub struct AllowListError {
    /// The list object, `s3://bucket/key`.
    pub list: String,
    pub line: usize,
    pub why: String,
}

impl AllowList {
    /// The config's own entries.
    pub fn from_config(config: &AllowListConfig) -> Self {
        let mut list = Self::default();
        for digest in &config.revoked {
            list.revoke(
                digest,
                AllowEntry {
                    source: "config".into(),
                    note: None,
                },
            );
        }
        for digest in &config.sha256 {
            list.entries.insert(
                digest.to_ascii_lowercase(),
                AllowEntry {
                    source: "config".into(),
                    note: None,
                },
            );
        }
        list
    }

    /// Adds the entries of a list object's `text`, read from `source`,
    /// whose marks `sealer` verifies; returns the lines skipped, and why.
    pub fn add_text(&mut self, source: &str, text: &str, sealer: &Sealer) -> Vec<AllowListError> {
        let mut skipped = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(revocation) = line.strip_prefix(REVOKE) {
                if let Err(why) = self.add_revoke_line(source, index + 1, revocation) {
                    skipped.push(AllowListError {
                        list: source.to_owned(),
                        line: index + 1,
                        why,
                    });
                }
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let digest = parts.next().unwrap_or_default();
            let mark = parts.next().unwrap_or_default();
            let note = parts.next().unwrap_or_default().trim();
            let problem = match check_digest(digest) {
                Err(why) => Some(why),
                Ok(()) if !sealer.verify_allowed(mark, source, digest, note) => Some(format!(
                    "`{digest}` has no valid mark: not written by `bucketscan release` with this seal key (skipped)"
                )),
                Ok(()) => None,
            };
            if let Some(why) = problem {
                skipped.push(AllowListError {
                    list: source.to_owned(),
                    line: index + 1,
                    why,
                });
                continue;
            }
            self.entries.entry(digest.to_ascii_lowercase()).or_insert(AllowEntry {
                source: format!("{source}:{}", index + 1),
                note: Some(note.to_owned()).filter(|n| !n.is_empty()),
            });
        }
        skipped
    }

    /// The rest of a `revoke` line: the digest, then its note.
    fn add_revoke_line(&mut self, source: &str, line: usize, rest: &str) -> Result<(), String> {
        let rest = rest.trim_start();
        let (digest, note) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        check_digest(digest).map_err(|why| format!("revoke: {why}"))?;
        let note = Some(note.trim().to_owned()).filter(|n| !n.is_empty());
        // Anyone who can write the object wrote this note: say so.
        self.revoke(
            digest,
            AllowEntry {
                source: format!("{source}:{line} (no mark)"),
                note,
            },
        );
        Ok(())
    }

    /// Revokes `digest` (the first word on why stays).
    pub fn revoke(&mut self, digest: &str, why: AllowEntry) {
        self.revoked.entry(digest.to_ascii_lowercase()).or_insert(why);
    }

    /// Keeps every revocation of `previous` (the list this one replaces):
    /// an older copy of the list object written back, without its
    /// `revoke` lines, does not bring a revoked digest back.
    pub fn keep_revocations(&mut self, previous: &AllowList) {
        for (digest, why) in &previous.revoked {
            self.revoke(digest, why.clone());
        }
    }

    /// Why `digest` is revoked, if it is.
    pub fn revocation(&self, digest: &str) -> Option<&AllowEntry> {
        self.revoked.get(&digest.to_ascii_lowercase())
    }

    /// Every revoked digest and why, in digest order.
    pub fn revocations(&self) -> Vec<(&str, &AllowEntry)> {
        let mut revoked: Vec<(&str, &AllowEntry)> = self.revoked.iter().map(|(d, why)| (d.as_str(), why)).collect();
        revoked.sort_by_key(|(digest, _)| *digest);
        revoked
    }

    /// A line for the list object `list`: `sha256`, its mark, and `note`
    /// (one line; newlines become spaces).
    pub fn line(sealer: &Sealer, list: &str, sha256: &str, note: &str) -> String {
        let note = one_line_note(note);
        format!(
            "{} {} {note}",
            sha256.to_ascii_lowercase(),
            sealer.mark_allowed(list, sha256, &note)
        )
    }

    /// A line that revokes `sha256`, with `note` (who, when, why).
    pub fn revoke_line(sha256: &str, note: &str) -> String {
        format!("{REVOKE}{} {}", sha256.to_ascii_lowercase(), one_line_note(note))
    }

    pub fn get(&self, sha256: &str) -> Option<&AllowEntry> {
        let sha256 = sha256.to_ascii_lowercase();
        if self.revoked.contains_key(&sha256) {
            return None;
        }
        self.entries.get(&sha256)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every digest allowed now and why (revoked ones left out), in
    /// digest order.
    pub fn entries(&self) -> Vec<(&str, &AllowEntry)> {
        let mut entries: Vec<(&str, &AllowEntry)> = self
            .entries
            .iter()
            .filter(|(digest, _)| !self.revoked.contains_key(*digest))
            .map(|(digest, entry)| (digest.as_str(), entry))
            .collect();
        entries.sort_by_key(|(digest, _)| *digest);
        entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether bytes with `sha256` and `verdict` are allowed through, and
    /// by which entry. Only what a scanner found in the bytes (infected,
    /// unscannable) can be a false positive: errors are not about the bytes
    /// (clamd down, a plugin failed), and `blocked` is a pipeline's policy
    /// (no executables here), which one release must not lift for every
    /// pipeline of the fleet.
    pub fn allows(&self, sha256: Option<&str>, verdict: &Verdict) -> Option<&AllowEntry> {
        if !matches!(verdict.result_name(), ResultName::Infected | ResultName::Unscannable) {
            return None;
        }
        self.get(sha256?)
    }
}

impl AllowList {
    /// The verdict to record for bytes with `sha256` the pipeline judged
    /// `verdict`, where `later` are the verdicts of inspectors that ran
    /// after it (see `VerdictFold`): clean with the match when the list
    /// allows the bytes and no later inspector said anything the list
    /// cannot lift (a policy's `blocked`, an `error`) — then that later
    /// verdict stands; else `verdict` unchanged.
    pub fn apply(&self, sha256: Option<&str>, verdict: Verdict, later: &[Verdict]) -> (Verdict, Option<AllowMatch>) {
        let Some((sha256, entry)) = sha256.zip(self.allows(sha256, &verdict)) else {
            return (verdict, None);
        };
        let liftable = |v: &Verdict| matches!(v.result_name(), ResultName::Infected | ResultName::Unscannable);
        if let Some(standing) = later.iter().find(|v| !v.is_clean() && !liftable(v)) {
            return (standing.clone(), None);
        }
        let allowed = AllowMatch {
            sha256: sha256.to_owned(),
            verdict,
            entry: entry.clone(),
        };
        (Verdict::Clean, Some(allowed))
    }

    /// Whether bytes with `sha256` are on the list at all: their findings
    /// may be lifted, so every inspector must run (a later policy stage
    /// must still have its say).
    pub fn may_lift(&self, sha256: Option<&str>) -> bool {
        sha256.is_some_and(|sha256| self.get(sha256).is_some())
    }
}

/// In a report: the verdict the pipeline gave bytes the allow-list let
/// through, and the entry that did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowMatch {
    pub sha256: String,
    /// What the pipeline said of these bytes.
    pub verdict: Verdict,
    #[serde(flatten)]
    pub entry: AllowEntry,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Finding;

    const A: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn infected() -> Verdict {
        Verdict::Infected {
            findings: vec![Finding {
                engine: "clamav".into(),
                signature: "Eicar".into(),
                location: None,
            }],
        }
    }

    fn sealer() -> Sealer {
        Sealer::new(b"0123456789abcdef".to_vec())
    }

    #[test]
    fn only_the_exact_digest_is_allowed_and_never_an_error() {
        let mut list = AllowList::default();
        let text = format!(
            "# released\n{}\n",
            AllowList::line(&sealer(), "s3://lists/allow-list.txt", A, "false positive, ticket 7")
        );
        assert!(list.add_text("s3://lists/allow-list.txt", &text, &sealer()).is_empty());
        let entry = list.allows(Some(A), &infected()).unwrap();
        assert_eq!(entry.source, "s3://lists/allow-list.txt:2");
        assert_eq!(entry.note.as_deref(), Some("false positive, ticket 7"));
        let other = A.replace('2', "3");
        assert!(list.allows(Some(&other), &infected()).is_none());
        assert!(
            list.allows(None, &infected()).is_none(),
            "bytes not read are never allowed"
        );
        assert!(list.allows(Some(A), &Verdict::error("clamd down")).is_none());
        let blocked = Verdict::Blocked {
            reason: "executable".into(),
        };
        assert!(
            list.allows(Some(A), &blocked).is_none(),
            "a policy is not a false positive"
        );
    }

    #[test]
    fn lines_without_the_agents_mark_are_skipped_and_named() {
        let good = AllowList::line(&sealer(), "s3://l/a", A, "ok");
        let other = "b".repeat(64);
        let forged_mark = sealer().mark_allowed("s3://l/a", &other, "note").replace("a1-", "a1-0");
        let text = [
            good.clone(),
            format!("{other} forged-by-someone"),
            format!("{other} {forged_mark} note"),
            good.replace(" ok", " changed note"),
            AllowList::line(&Sealer::new(b"another-key-0123456".to_vec()), "s3://l/a", &other, "x"),
            AllowList::line(&sealer(), "s3://another/list", &other, "moved from another list"),
            "not-a-digest".into(),
        ]
        .join("\n");
        let mut list = AllowList::default();
        let skipped = list.add_text("s3://l/a", &text, &sealer());
        assert_eq!(skipped.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7]);
        assert!(skipped[0].to_string().starts_with("s3://l/a:2: "), "{}", skipped[0]);
        assert_eq!(list.len(), 1);
        assert!(list.get(A).is_some() && list.get(&other).is_none());
        // Revoked in the config: the marked line no longer counts.
        let config = AllowListConfig {
            revoked: vec![A.to_uppercase()],
            ..Default::default()
        };
        let mut revoked = AllowList::from_config(&config);
        revoked.add_text("s3://l/a", &text, &sealer());
        assert!(revoked.allows(Some(A), &infected()).is_none());
    }

    #[test]
    fn a_revoke_line_needs_no_mark_and_outlives_a_list_written_back() {
        let list_url = "s3://l/a";
        let released = AllowList::line(&sealer(), list_url, A, "released by rel");
        let revoked_text = format!(
            "{released}\n{}\nrevoke not-a-digest\n",
            AllowList::revoke_line(&A.to_uppercase(), "revoked by sec\n# why: a real sample")
        );
        let mut list = AllowList::default();
        let skipped = list.add_text(list_url, &revoked_text, &sealer());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].why.starts_with("revoke: "), "{}", skipped[0]);
        assert!(list.get(A).is_none(), "the revoke line wins over the release line");
        assert!(list.entries().is_empty());
        let revocations = list.revocations();
        assert_eq!(revocations.len(), 1);
        assert_eq!(revocations[0].0, A);
        assert_eq!(revocations[0].1.source, "s3://l/a:2 (no mark)");
        assert_eq!(
            revocations[0].1.note.as_deref(),
            Some("revoked by sec   why: a real sample")
        );

        // The object written back as it was before the revocation: read
        // alone it allows A again; kept with the previous list's
        // revocations, it does not.
        let mut written_back = AllowList::default();
        written_back.add_text(list_url, &format!("{released}\n"), &sealer());
        assert!(written_back.get(A).is_some());
        written_back.keep_revocations(&list);
        assert!(written_back.allows(Some(A), &infected()).is_none());
        assert!(written_back.revocation(&A.to_uppercase()).is_some());
        assert_eq!(written_back.revocations()[0].1.source, "s3://l/a:2 (no mark)");
    }

    #[test]
    fn a_lifted_finding_never_lifts_a_later_policy_verdict() {
        let list = AllowList::from_config(&AllowListConfig {
            sha256: vec![A.into()],
            ..AllowListConfig::default()
        });
        assert!(list.may_lift(Some(A)) && !list.may_lift(None));
        let (verdict, allowed) = list.apply(Some(A), infected(), &[Verdict::Clean]);
        assert!(
            verdict.is_clean() && allowed.is_some(),
            "only findings after it: lifted"
        );
        let blocked = Verdict::Blocked {
            reason: "executable".into(),
        };
        let (verdict, allowed) = list.apply(Some(A), infected(), &[Verdict::Clean, blocked.clone()]);
        assert_eq!(verdict, blocked, "the file-type policy after the finding stands");
        assert!(allowed.is_none());
        let (verdict, _) = list.apply(Some(A), infected(), &[Verdict::error("plugin trapped")]);
        assert_eq!(verdict.result_name(), ResultName::Error);
    }

    #[test]
    fn config_entries_are_checked() {
        let config = AllowListConfig {
            sha256: vec![A.into(), "abc".into()],
            ..Default::default()
        };
        assert!(config.validate().unwrap_err().starts_with("[allow-list] sha256[1]"));
        let placed = AllowListConfig {
            object: Some("s3://staging/allow.txt".into()),
            ..Default::default()
        };
        assert!(
            placed
                .check_placement(&|b| b == "staging")
                .unwrap_err()
                .contains("its uploaders could write")
        );
        assert!(placed.check_placement(&|_| false).is_ok());
    }
}
