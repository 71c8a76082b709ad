//! One object's storage actions, as its action stages ask for them.
//!
//! What the host adds to every action, whatever the plugin asked:
//! - plugin tags may not use the agent's result keys (a plugin cannot tag
//!   an object clean), and must leave room for the result tags;
//! - every copy carries the object's *verdict* tags, sealed as written by
//!   an agent for the copy's own bucket, key and bytes: a copy of infected
//!   bytes can never look clean, and its event is recognised as the
//!   agent's own write (no rescan, no loop);
//! - a copy must hold the bytes that were scanned: the store reports the
//!   copy's SHA-256 and a mismatch removes the copy. A clean copy from an
//!   unversioned source (pinned by ETag only, which an MD5 collision can
//!   fool) is tagged clean only after that check;
//! - deletes, and the delete half of a move, are deferred until the result
//!   was published ([`ObjectActions::release`]);
//! - result tags that landed on newer bytes are taken back
//!   ([`take_back`](crate::take_back::take_back)).

use crate::store::{Copied, CopyDest, Store};
use crate::take_back::take_back;
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::seal::{SealOrigin, SealSubject, Sealer};
use bucketscan_core::storage::{BoxFuture, StageStorage, StorageAction, StorageError};
use bucketscan_core::tags::{self, MAX_TAGS, ResultValues, TagKeys, TagTarget};
use std::sync::{Arc, Mutex};

/// User metadata on a copy that lists the object's own tags the tag limit
/// left off it (percent-encoded `k=v&k=v`).
pub const DROPPED_TAGS_METADATA: &str = "bucketscan-dropped-tags";
/// S3's limit on user metadata, keys and values together.
const MAX_METADATA: usize = 2048;
/// User metadata on a copy whose key had to be shortened: where the
/// object came from, `s3://BUCKET/KEY` with the key percent-encoded.
pub const SOURCE_METADATA: &str = "bucketscan-source";
/// Characters a key keeps as they are in [`SOURCE_METADATA`] (metadata is
/// ASCII; path separators and common punctuation stay readable).
const KEY_IN_METADATA: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// S3's longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Result tags every recorded object carries at most, besides `decoded`:
/// result, seal, date, engine, signature.
const RESULT_TAGS: usize = 5;

/// The result this object's actions carry onto copies.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub values: ResultValues,
    /// The verdict keeps the object out (see `tags::TagTarget::contain`).
    pub contain: bool,
    /// The source's tags as recorded (updated by `tag` actions).
    pub tags: Vec<(String, String)>,
    /// The object's own tags as it arrived, before the tag limit trimmed
    /// them on the source: a copy gets back what fits of these.
    pub arrived: Vec<(String, String)>,
}

/// Performs one object's storage actions through a [`Store`].
pub struct ObjectActions {
    store: Arc<dyn Store>,
    keys: TagKeys,
    sealer: Sealer,
    state: Mutex<State>,
}

struct State {
    recorded: Recorded,
    deferred: Vec<ObjectInfo>,
    /// Tags the limit cost on copies, for the report.
    dropped: Vec<(String, String)>,
    /// A refusal every retry would meet again (a clean copy's key over
    /// S3's limit): the object settles held instead of coming back.
    lasting_refusal: Option<String>,
    /// Copies made, for the report (a retro-scan finds them there).
    copies: Vec<bucketscan_core::report::CopyRef>,
}

impl ObjectActions {
    pub fn new(store: Arc<dyn Store>, keys: TagKeys, sealer: Sealer, recorded: Recorded) -> Self {
        Self {
            store,
            keys,
            sealer,
            state: Mutex::new(State {
                recorded,
                deferred: Vec::new(),
                dropped: Vec::new(),
                lasting_refusal: None,
                copies: Vec::new(),
            }),
        }
    }

    /// The deletes the actions asked for, not yet done.
    pub fn deferred(&self) -> Vec<ObjectInfo> {
        self.state.lock().unwrap().deferred.clone()
    }

    /// Own tags left off copies by the tag limit.
    pub fn dropped(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().dropped.clone()
    }

    /// The copies the actions made (none in a dry run).
    pub fn copies(&self) -> Vec<bucketscan_core::report::CopyRef> {
        self.state.lock().unwrap().copies.clone()
    }

    /// A refusal no retry can change, if an action met one.
    pub fn lasting_refusal(&self) -> Option<String> {
        self.state.lock().unwrap().lasting_refusal.clone()
    }

    /// Runs the deferred deletes, after the result was published. A source
    /// that is gone or was replaced needs no delete (the scanned bytes are
    /// no longer there); anything else fails the object for a retry.
    pub async fn release(&self) -> Result<Vec<String>, StorageError> {
        let deferred = std::mem::take(&mut self.state.lock().unwrap().deferred);
        let mut lines = Vec::new();
        for object in deferred {
            let verb = self.verb("deleted", "would delete");
            match self.store.delete(&object).await {
                Ok(()) => lines.push(format!("{verb} {} (after the result was published)", object.url())),
                Err(StorageError::Gone(why) | StorageError::Replaced(why)) => {
                    lines.push(format!("not deleted {}: {why}", object.url()))
                }
                Err(err) => return Err(err),
            }
        }
        Ok(lines)
    }

    fn verb(&self, done: &'static str, dry: &'static str) -> &'static str {
        if self.store.dry_run() { dry } else { done }
    }

    fn check_plugin_tags(&self, action: &StorageAction) -> Result<(), StorageError> {
        let tags = action.plugin_tags();
        // The result tags need five slots (a sixth, `decoded`, only for
        // decoded objects, gives way like an own tag); a plugin asking for
        // more than the rest could never be satisfied.
        let room = MAX_TAGS - RESULT_TAGS;
        if tags.len() > room {
            return Err(StorageError::Refused(format!(
                "{} tags asked for; with the agent's {RESULT_TAGS} result tags at most {room} fit",
                tags.len(),
            )));
        }
        for (key, value) in tags {
            if self.keys.owns(key) {
                return Err(StorageError::Refused(format!(
                    "tag `{key}` is one of the agent's result tags; plugins may not set it"
                )));
            }
            tags::validate_key(key).map_err(|err| StorageError::Refused(err.to_string()))?;
            if tags::sanitize(value) != *value {
                return Err(StorageError::Refused(format!(
                    "tag value `{value}` is not allowed by S3 (at most 256 letters, digits, spaces, + - = . _ : / @)"
                )));
            }
        }
        Ok(())
    }

    async fn copy(
        &self,
        object: &ObjectInfo,
        bucket: &str,
        key: &str,
        extra: &[(String, String)],
    ) -> Result<String, StorageError> {
        let (key, shortened) = self.destination_key(bucket, key)?;
        let key = key.as_str();
        let (values, contain, own) = self.copy_tags(extra);
        let sha256 = object.sha256.as_deref();
        let expected_etag = object.etag.clone().unwrap_or_default();
        let plan = tags::plan(
            &self.keys,
            &self.sealer,
            &own,
            &values,
            written(bucket, key, &expected_etag, sha256, contain),
        );
        if plan.held.is_some() {
            return Err(StorageError::Refused(format!(
                "copy to s3://{bucket}/{key}: {} own tags and the result tags do not fit in S3's {MAX_TAGS}",
                own.len()
            )));
        }
        // A clean copy of bytes pinned only by their ETag is tagged clean
        // once its bytes are checked; anything else carries its tags from
        // the start (a copy never exists without a result on it).
        let verify_first = !contain && !object.is_versioned();
        let first_tags = if verify_first {
            self.keys.foreign(&plan.tags)
        } else {
            plan.tags.clone()
        };
        let dest = CopyDest {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            tags: first_tags,
            extra_metadata: copy_metadata(object, &plan.dropped, shortened),
        };
        let copied = self.store.copy(object, &dest).await?;
        let copy = ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: copied.version_id.clone(),
            etag: copied.etag.clone(),
            sha256: object.sha256.clone(),
            ..ObjectInfo::default()
        };
        self.check_copied_bytes(object, &copy, &copied, verify_first).await?;
        let actual_etag = copied.etag.clone().unwrap_or(expected_etag.clone());
        if verify_first || actual_etag != expected_etag {
            // Sealed for the bytes the copy really has (its ETag differs
            // when S3 encrypts with KMS or copies in parts).
            let sealed = tags::plan(
                &self.keys,
                &self.sealer,
                &own,
                &values,
                written(bucket, key, &actual_etag, sha256, contain),
            );
            self.seal_copy(&copy, &sealed.tags, &values).await?;
        }
        {
            let mut state = self.state.lock().unwrap();
            state.dropped.extend(plan.dropped.iter().cloned());
            if !self.store.dry_run() {
                state.copies.push(bucketscan_core::report::CopyRef {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    version_id: copied.version_id.clone(),
                    etag: Some(actual_etag.clone()),
                });
            }
        }
        let note = if shortened {
            " (key shortened to S3's 1024 bytes)"
        } else {
            ""
        };
        Ok(format!(
            "{} {} -> s3://{bucket}/{}{note}",
            self.verb("copied", "would copy"),
            object.url(),
            bucketscan_core::object::printable(key)
        ))
    }

    /// A destination past S3's key limit (a quarantine that prefixes the
    /// source bucket to a long key) would fail on every try and leave the
    /// object in staging: a copy that contains is shortened, with the
    /// source kept. A clean copy is never renamed behind its owner's back:
    /// refused, named.
    fn destination_key(&self, bucket: &str, key: &str) -> Result<(String, bool), StorageError> {
        let (key, shortened) = fitting_key(key);
        if shortened && !self.state.lock().unwrap().recorded.contain {
            let why = format!("copy to s3://{bucket}/…: the destination key is over S3's {MAX_KEY_BYTES} bytes");
            self.state.lock().unwrap().lasting_refusal = Some(why.clone());
            return Err(StorageError::Refused(why));
        }
        Ok((key, shortened))
    }

    /// The tags a copy carries besides the result: the plugin's `extra`
    /// first (when the limit bites, the object's own tags give way before
    /// what the plugin asked for), then the object's own as it arrived,
    /// then any a `tag` action added. With the result values and whether
    /// the copy contains.
    fn copy_tags(&self, extra: &[(String, String)]) -> (ResultValues, bool, Vec<(String, String)>) {
        let state = self.state.lock().unwrap();
        let recorded = &state.recorded;
        let mut own: Vec<(String, String)> = extra.to_vec();
        for (k, v) in self
            .keys
            .foreign(&recorded.arrived)
            .into_iter()
            .chain(self.keys.foreign(&recorded.tags))
        {
            if !own.iter().any(|(existing, _)| *existing == k) {
                own.push((k, v));
            }
        }
        (recorded.values.clone(), recorded.contain, own)
    }

    /// Writes the sealed result tags on a copy after the fact. Errors here
    /// are the copy's, not the scanned object's: a copy that vanished or
    /// was overwritten is a failed action (retried), never `gone` or
    /// `replaced`, which would tell a plugin the scanned bytes themselves
    /// need no more handling. A copy overwritten meanwhile loses the
    /// result again.
    async fn seal_copy(
        &self,
        copy: &ObjectInfo,
        sealed: &[(String, String)],
        values: &ResultValues,
    ) -> Result<(), StorageError> {
        let tagged = self.store.put_tags(copy, sealed).await.map_err(|err| match err {
            StorageError::Gone(why) | StorageError::Replaced(why) => {
                StorageError::Failed(format!("the copy {}: {why}", copy.url()))
            }
            other => other,
        })?;
        if let Some(now) = tagged {
            take_back(&*self.store, &self.keys, &self.sealer, copy, values).await?;
            return Err(StorageError::Failed(format!(
                "the copy {} was overwritten (now ETag {now}) while its tags were written",
                copy.url()
            )));
        }
        Ok(())
    }

    /// The copy must hold the scanned bytes: compared by SHA-256 when the
    /// store could tell, required when the copy is to be tagged clean on
    /// the strength of an ETag alone. A copy that fails is removed.
    async fn check_copied_bytes(
        &self,
        object: &ObjectInfo,
        copy: &ObjectInfo,
        copied: &Copied,
        required: bool,
    ) -> Result<(), StorageError> {
        // The source changed under the scan: `replaced`. Bytes that cannot
        // be checked: `refused` (a config problem, versioning is off).
        let scanned = object.sha256.as_ref().or(object.walked_sha256.as_ref());
        let problem = match (scanned, &copied.sha256) {
            (Some(scanned), Some(got)) if scanned != got => Some(StorageError::Replaced(format!(
                "{}: the copy's bytes (SHA-256 {got}) are not the bytes scanned (SHA-256 {scanned}); the source \
                 changed between the scan and the copy",
                copy.url()
            ))),
            (_, None) | (None, _) if required => Some(StorageError::Refused(format!(
                "{}: the copy's bytes could not be checked against the bytes scanned (no SHA-256), and the source \
                 is pinned by its ETag only; turn on versioning for this bucket",
                copy.url()
            ))),
            _ => None,
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        if let Err(err) = self.store.delete(copy).await {
            tracing::error!("{}: removing a copy that failed its check: {err}", copy.url());
        }
        Err(problem)
    }

    async fn tag(&self, object: &ObjectInfo, new: &[(String, String)]) -> Result<String, StorageError> {
        let (merged, values) = {
            let state = self.state.lock().unwrap();
            let mut merged = state.recorded.tags.clone();
            for (k, v) in new {
                merged.retain(|(existing, _)| existing != k);
                merged.push((k.clone(), v.clone()));
            }
            if merged.len() > MAX_TAGS {
                if !state.recorded.contain {
                    return Err(StorageError::Refused(format!(
                        "the object would have {} tags; S3 allows {MAX_TAGS}",
                        merged.len()
                    )));
                }
                // Containment: the plugin's tags and ours stay; the
                // object's own tags make room, last first.
                while merged.len() > MAX_TAGS {
                    let Some(index) = merged
                        .iter()
                        .rposition(|(k, _)| !self.keys.owns(k) && !new.iter().any(|(n, _)| n == k))
                    else {
                        break;
                    };
                    merged.remove(index);
                }
            }
            (merged, state.recorded.values.clone())
        };
        if let Some(now) = self.store.put_tags(object, &merged).await? {
            take_back(&*self.store, &self.keys, &self.sealer, object, &values).await?;
            return Err(StorageError::Replaced(format!(
                "{} was replaced (now ETag {now}) while it was tagged",
                object.url()
            )));
        }
        let line = new
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        self.state.lock().unwrap().recorded.tags = merged;
        Ok(format!("{} {} {line}", self.verb("tagged", "would tag"), object.url()))
    }

    fn defer_delete(&self, object: &ObjectInfo) {
        let mut state = self.state.lock().unwrap();
        if !state.deferred.iter().any(|o| o.url() == object.url()) {
            state.deferred.push(object.clone());
        }
    }
}

/// User metadata naming the tags a copy could not keep, when it fits.
/// `key`, or when it is longer than S3 allows, a deterministic shorter
/// one: its first bytes (whole characters) and `~` and the first 32 hex
/// digits of its SHA-256, so two long keys never share a short one.
pub fn fitting_key(key: &str) -> (String, bool) {
    if key.len() <= MAX_KEY_BYTES {
        return (key.to_owned(), false);
    }
    let digest = bucketscan_core::object::sha256_hex(key.as_bytes());
    let mut keep = MAX_KEY_BYTES - 33;
    while !key.is_char_boundary(keep) {
        keep -= 1;
    }
    (format!("{}~{}", &key[..keep], &digest[..32]), true)
}

/// The source `(bucket, key)` of a copy stored under the shortened key
/// `copy_key`, from its `metadata`, when the key proves it: the metadata
/// is the uploader's too (copies carry it over), so it counts only when
/// shortening `SOURCE-BUCKET/SOURCE-KEY` gives exactly `copy_key` (the
/// quarantine's convention).
pub fn shortened_source(copy_key: &str, metadata: &[(String, String)]) -> Option<(String, String)> {
    let (_, value) = metadata.iter().find(|(k, _)| k == SOURCE_METADATA)?;
    let (bucket, encoded) = value.strip_prefix("s3://")?.split_once('/')?;
    let key = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()?
        .into_owned();
    let (fitted, shortened) = fitting_key(&format!("{bucket}/{key}"));
    (shortened && fitted == copy_key).then(|| (bucket.to_owned(), key))
}

/// Where `object` came from, for a copy under a shortened key, when it
/// fits in what the metadata has left.
fn source_metadata(object: &ObjectInfo, added: &[(String, String)]) -> Option<(String, String)> {
    let source = format!(
        "s3://{}/{}",
        object.bucket,
        percent_encoding::utf8_percent_encode(&object.key, KEY_IN_METADATA)
    );
    let used: usize = object
        .metadata
        .iter()
        .chain(added)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    (used + SOURCE_METADATA.len() + source.len() <= MAX_METADATA).then(|| (SOURCE_METADATA.to_owned(), source))
}

/// What the copy's metadata adds: the tags that did not fit, and where a
/// shortened copy came from.
fn copy_metadata(object: &ObjectInfo, dropped: &[(String, String)], shortened: bool) -> Vec<(String, String)> {
    let mut extra_metadata = dropped_metadata(object, dropped);
    if shortened {
        extra_metadata.extend(source_metadata(object, &extra_metadata));
    }
    extra_metadata
}

fn dropped_metadata(object: &ObjectInfo, dropped: &[(String, String)]) -> Vec<(String, String)> {
    if dropped.is_empty() {
        return Vec::new();
    }
    let used: usize = object.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    let room = MAX_METADATA.saturating_sub(used + DROPPED_TAGS_METADATA.len());
    let mut kept = dropped.to_vec();
    // Whole pairs only; the notification always has the full list.
    while !kept.is_empty() && tags::encode_pairs(&kept).len() > room {
        kept.pop();
    }
    if kept.is_empty() {
        Vec::new()
    } else {
        vec![(DROPPED_TAGS_METADATA.to_owned(), tags::encode_pairs(&kept))]
    }
}

impl StageStorage for ObjectActions {
    fn perform<'a>(
        &'a self,
        object: &'a ObjectInfo,
        action: StorageAction,
    ) -> BoxFuture<'a, Result<String, StorageError>> {
        Box::pin(async move {
            self.check_plugin_tags(&action)?;
            match action {
                StorageAction::Copy {
                    bucket,
                    key,
                    extra_tags,
                } => self.copy(object, &bucket, &key, &extra_tags).await,
                StorageAction::Move {
                    bucket,
                    key,
                    extra_tags,
                } => {
                    let copied = self.copy(object, &bucket, &key, &extra_tags).await?;
                    self.defer_delete(object);
                    Ok(format!("{copied}; the source is deleted once the result is published"))
                }
                StorageAction::Delete => {
                    self.defer_delete(object);
                    Ok(format!(
                        "{} {} once the result is published",
                        self.verb("deleting", "would delete"),
                        object.url()
                    ))
                }
                StorageAction::Tag { tags } => self.tag(object, &tags).await,
            }
        })
    }
}

/// Whose a copy's seal says it is: an agent's write of these bytes.
fn written<'a>(bucket: &'a str, key: &'a str, etag: &'a str, sha256: Option<&'a str>, contain: bool) -> TagTarget<'a> {
    TagTarget {
        subject: SealSubject {
            bucket,
            key,
            etag,
            version_id: None,
            sha256,
        },
        origin: SealOrigin::Written,
        contain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_shortened_deterministically_and_prove_their_source() {
        let long = format!("staging/{}", "a/".repeat(520));
        let (short, shortened) = fitting_key(&long);
        assert!(shortened && short.len() <= MAX_KEY_BYTES, "{}", short.len());
        assert_eq!(fitting_key(&long).0, short, "the same key every time");
        let other = format!("staging/{}b", "a/".repeat(520));
        assert_ne!(fitting_key(&other).0, short, "another key, another short key");
        assert_eq!(fitting_key("staging/x.txt"), ("staging/x.txt".to_owned(), false));
        // Multi-byte characters are never cut in half.
        let wide = "é".repeat(600);
        assert!(fitting_key(&wide).0.len() <= MAX_KEY_BYTES);

        let object = ObjectInfo {
            bucket: "staging".into(),
            key: "a/".repeat(520),
            ..ObjectInfo::default()
        };
        let metadata: Vec<(String, String)> = source_metadata(&object, &[]).into_iter().collect();
        assert_eq!(
            shortened_source(&short, &metadata),
            Some(("staging".to_owned(), "a/".repeat(520)))
        );
        // The uploader's own metadata cannot point a release elsewhere.
        let forged = vec![(SOURCE_METADATA.to_owned(), "s3://production/index.html".to_owned())];
        assert_eq!(shortened_source(&short, &forged), None);
        assert_eq!(shortened_source("production/index.html", &forged), None);
    }
}
