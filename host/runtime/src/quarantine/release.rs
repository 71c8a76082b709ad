//! `bucketscan release`: a false positive goes back.
//!
//! In order, each step only after the one before succeeded:
//! 1. read the quarantined object and check its result tags are sealed by
//!    an agent for exactly these bytes (nobody else's upload into the
//!    quarantine bucket is released as if an agent had held it), and that
//!    they are the bytes the operator approved (their SHA-256: the key is
//!    the uploader's, and another upload to it lands on the same
//!    quarantine key);
//! 2. allow-list its SHA-256 (`[allow-list] object`), so a later scan of
//!    the same bytes passes — and only of the same bytes;
//! 3. copy it to where it came from (or `--to`), tagged with the profile's
//!    `allowed` value and sealed as an agent's write (its event is not
//!    scanned again), with who, when and why in its metadata; the copy's
//!    SHA-256 is checked against the bytes read in 1;
//! 4. publish the release to the result destinations;
//! 5. delete the quarantined copy (unless kept).
//!
//! A failure stops the release where it is and says which step: nothing is
//! deleted before the copy is proven and the release published.

use crate::agent::Agent;
use crate::s3_store::bare_etag;
use bucketscan_core::allow::{AllowEntry, AllowMatch};
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::report::ScanReport;
use bucketscan_core::seal::{SealOrigin, SealSubject};
use bucketscan_core::tags::{self, ResultValues, TagPlan, TagTarget};
use bucketscan_core::{Finding, ResultName, UnscannableReason, Verdict};
use bucketscan_scan::store::CopyDest;
use bucketscan_scan::{Opened, Target, now_rfc3339};
use serde::Serialize;

/// The tag the quarantine plugin adds; a released object no longer is.
const QUARANTINE_TAG: &str = "bucketscan-quarantine";
/// Metadata recording the release on the released copy.
pub const RELEASED_FROM: &str = "bucketscan-released-from";
pub const RELEASED_BY: &str = "bucketscan-released-by";
pub const RELEASED_AT: &str = "bucketscan-released-at";
pub const RELEASE_REASON: &str = "bucketscan-release-reason";

/// What to release, where to, and on whose word.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub bucket: String,
    pub key: String,
    /// Default: where its key says it came from (`SOURCE-BUCKET/KEY`).
    pub to: Option<(String, String)>,
    pub reason: String,
    /// Default: the caller's identity from STS.
    pub by: Option<String>,
    /// Keep the quarantined copy.
    pub keep: bool,
    /// The SHA-256 of the bytes the operator approved (from the alert or
    /// `quarantine list`): anything else under the key is refused.
    pub sha256: String,
}

/// What a release did.
#[derive(Debug, Clone, Serialize)]
pub struct Released {
    pub from: String,
    pub to: String,
    pub sha256: String,
    /// The result the quarantine recorded, and its finding.
    pub was: String,
    pub finding: Option<String>,
    pub by: String,
    pub at: String,
    pub reason: String,
    /// The allow-list object the digest was added to.
    pub allow_list: Option<String>,
    pub published: Option<String>,
    pub quarantined_copy_deleted: bool,
}

/// Why a release stopped, and at which step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    #[error("reading {url}: {detail}")]
    Read { url: String, detail: String },
    #[error(
        "{url} carries no result tags sealed by a bucketscan agent for these bytes (another seal key, changed \
         bytes or tags, or not quarantined by an agent): refusing to release it"
    )]
    NotSealed { url: String },
    #[error(
        "{url} holds other bytes than the ones approved (SHA-256 {actual}, approved {approved}): another upload to \
         the same key was quarantined since; look at it before releasing anything"
    )]
    NotApproved {
        url: String,
        approved: String,
        actual: String,
    },
    #[error("{url}: {detail}")]
    Destination { url: String, detail: String },
    #[error(
        "{url} holds bytes whose allow-list entry was revoked (SHA-256 {sha256}, {revoked_in}: {note}): refusing to \
         release them; a revocation is undone only by removing it where it is kept"
    )]
    Revoked {
        url: String,
        sha256: String,
        revoked_in: String,
        note: String,
    },
    #[error("allow-listing {sha256}: {detail}; nothing was released")]
    AllowList { sha256: String, detail: String },
    #[error("copying to {url}: {detail}")]
    Copy { url: String, detail: String },
    #[error(
        "{url} was released (tagged allowed) but the release could not be published: {detail}; the quarantined copy is kept"
    )]
    Publish { url: String, detail: String },
    #[error("{url} was released and published, but the quarantined copy could not be deleted: {detail}")]
    Delete { url: String, detail: String },
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{}", bucketscan_core::object::printable(key))
}

/// Who is acting: `by`, or the caller's ARN, or the local user.
pub async fn identity(agent: &Agent, by: Option<String>) -> String {
    if let Some(by) = by {
        return by;
    }
    match agent.clients.sts.get_caller_identity().send().await {
        Ok(me) if me.arn().is_some() => me.arn().unwrap_or_default().to_owned(),
        _ => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
    }
}

/// The verdict the quarantine's tags record.
fn recorded_verdict(result: Option<ResultName>, signature: Option<&str>, engine: Option<&str>) -> Verdict {
    let signature = signature.unwrap_or("unknown").to_owned();
    match result {
        Some(ResultName::Infected) => Verdict::Infected {
            findings: vec![Finding {
                engine: engine.unwrap_or("unknown").to_owned(),
                signature,
                location: None,
            }],
        },
        Some(ResultName::Unscannable) => {
            let reason = UnscannableReason::from_name(&signature).unwrap_or(UnscannableReason::NotScanned);
            Verdict::Unscannable {
                reason,
                detail: signature,
            }
        }
        _ => Verdict::Blocked { reason: signature },
    }
}

/// Percent-encoded (control characters and everything past ASCII),
/// capped: S3 metadata is ASCII, 2 KB in all.
fn metadata_value(text: &str, max: usize) -> String {
    let encoded = percent_encoding::utf8_percent_encode(text, percent_encoding::CONTROLS).to_string();
    bucketscan_core::text::cap(&encoded, max)
}

/// The quarantined object, read and proven an agent's: what step 1 found.
struct Held {
    info: ObjectInfo,
    sha256: String,
    /// Quarantined in place (`mode = "tag"`) rather than copied to a
    /// quarantine bucket.
    in_place: bool,
    /// The result its tags record, the finding and the engine.
    was: String,
    finding: Option<String>,
    engine: Option<String>,
}

/// Who released what, when and why: the words written on the copy, the
/// allow-list entry and the notification.
struct Provenance {
    from: String,
    to: String,
    by: String,
    at: String,
    reason: String,
}

pub async fn release(agent: &Agent, request: ReleaseRequest) -> Result<Released, ReleaseError> {
    let from = url(&request.bucket, &request.key);
    let held = read_held(agent, &request, &from).await?;
    refuse_revoked(agent, &held, &from).await?;
    let (to_bucket, to_key) = destination(agent, &request, &held, &from)?;
    let said = Provenance {
        to: url(&to_bucket, &to_key),
        by: identity(agent, request.by.clone()).await.replace(['\n', '\r'], " "),
        at: now_rfc3339(),
        reason: request.reason.replace(['\n', '\r'], " "),
        from,
    };
    let allow_list = allow_list_entry(agent, &held, &said).await?;
    let (copy, plan) = copy_back(agent, &held, &to_bucket, &to_key, &said).await?;
    let published = announce(agent, &held, &copy, plan, &said).await?;

    // Step 5, out of quarantine — unless it was released in place: the "copy"
    // then is the object, and deleting the source would delete it.
    let delete = !request.keep && !held.in_place;
    if delete {
        agent
            .scanner
            .store
            .delete(&held.info)
            .await
            .map_err(|err| ReleaseError::Delete {
                url: said.from.clone(),
                detail: err.to_string(),
            })?;
    }
    Ok(Released {
        from: said.from,
        to: said.to,
        sha256: held.sha256,
        was: held.was,
        finding: held.finding,
        by: said.by,
        at: said.at,
        reason: said.reason,
        allow_list,
        published,
        quarantined_copy_deleted: delete,
    })
}

/// Step 1: the bytes, and proof an agent quarantined exactly them — the
/// ones the operator approved.
async fn read_held(agent: &Agent, request: &ReleaseRequest, from: &str) -> Result<Held, ReleaseError> {
    let keys = &agent.scanner.tag_keys;
    let sealer = &agent.scanner.sealer;
    let read_failed = |detail: String| ReleaseError::Read {
        url: from.to_owned(),
        detail,
    };
    let target = Target::new(&request.bucket, &request.key);
    let (mut info, body) = match agent.scanner.store.open(&target, u64::MAX).await {
        Ok(Opened::Ready { info, body }) => (info, body),
        Ok(Opened::TooLarge(_)) => return Err(read_failed("too large to read".into())),
        Ok(Opened::Unreadable { verdict, .. }) => return Err(read_failed(verdict.to_string())),
        Err(err) => return Err(read_failed(err.to_string())),
    };
    let sha256 = body.read().await.map_err(|err| read_failed(err.to_string()))?.sha256;
    info.sha256 = Some(sha256.clone());
    // A quarantine copy is an agent's write; an object quarantined in
    // place (`mode = "tag"`) carries the seal of its scan.
    let written = SealSubject {
        version_id: None,
        ..info.seal_subject()
    };
    let in_place = if keys.verify(sealer, written, &info.tags) == Some(SealOrigin::Written) {
        false
    } else if keys.verify(sealer, info.seal_subject(), &info.tags) == Some(SealOrigin::Scanned) {
        true
    } else {
        return Err(ReleaseError::NotSealed { url: from.to_owned() });
    };
    if !sha256.eq_ignore_ascii_case(request.sha256.trim()) {
        return Err(ReleaseError::NotApproved {
            url: from.to_owned(),
            approved: request.sha256.trim().to_owned(),
            actual: sha256,
        });
    }
    let tag = |name: &str| info.tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Ok(Held {
        was: tag(&keys.result).unwrap_or_default(),
        finding: tag(&keys.signature),
        engine: tag(&keys.engine),
        info,
        sha256,
        in_place,
    })
}

/// Where the release writes: where the object came from (or `--to`), in a
/// bucket the config declares.
fn destination(
    agent: &Agent,
    request: &ReleaseRequest,
    held: &Held,
    from: &str,
) -> Result<(String, String), ReleaseError> {
    let refused = |detail: &str| ReleaseError::Destination {
        url: from.to_owned(),
        detail: detail.to_owned(),
    };
    let (to_bucket, to_key) = if held.in_place {
        // Held where it was scanned (`mode = "tag"`): released there, and
        // nowhere else — its key is the uploader's, not a quarantine's
        // record of where it came from. Only a result that keeps objects
        // out is released.
        if !matches!(
            agent.scanner.tag_keys.profile.parse(&held.was),
            Some(ResultName::Infected | ResultName::Blocked | ResultName::Unscannable)
        ) {
            return Err(refused(&format!(
                "its result is `{}`, not one that keeps an object out: nothing to release",
                held.was
            )));
        }
        let here = (request.bucket.clone(), request.key.clone());
        if request.to.as_ref().is_some_and(|to| *to != here) {
            return Err(refused(
                "it was held in place (scanned there, not copied to a quarantine), so it is released in place \
                 only; copy it elsewhere after the release",
            ));
        }
        here
    } else {
        let origin = request
            .to
            .clone()
            .or_else(|| super::origin(agent, &request.key, &held.info.metadata));
        origin.ok_or_else(|| {
            refused(
                "its key does not start with a bucket the config declares, so where it came from is unknown; \
                 give --to s3://BUCKET/KEY",
            )
        })?
    };
    if !agent.started_with.buckets.contains_key(&to_bucket) {
        return Err(refused(&format!(
            "bucket `{to_bucket}` is not declared in the config ([buckets.{to_bucket}]): release writes only to \
             buckets it knows by name"
        )));
    }
    Ok((to_bucket, to_key))
}

/// Bytes whose entry was revoked stay held: releasing them would tag them
/// allowed on the word of an entry no agent honours any longer. With a
/// results store, its revocations are read now (another task may have
/// revoked since this one last reloaded), and a store that cannot be read
/// refuses the release.
async fn refuse_revoked(agent: &Agent, held: &Held, from: &str) -> Result<(), ReleaseError> {
    let mut revocations = Vec::new();
    if let Some(store) = &agent.results {
        revocations = crate::allow_list::store_revocations(store)
            .await
            .map_err(|err| ReleaseError::Read {
                url: from.to_owned(),
                detail: format!("{err}: refusing to release bytes that may be revoked"),
            })?;
    }
    let known = agent.scanner.allow_list.load().revocation(&held.sha256).cloned();
    let stored = revocations.into_iter().find(|(digest, _)| *digest == held.sha256);
    match stored.map(|(_, why)| why).or(known) {
        Some(why) => Err(ReleaseError::Revoked {
            url: from.to_owned(),
            sha256: held.sha256.clone(),
            revoked_in: why.source,
            note: why.note.unwrap_or_default(),
        }),
        None => Ok(()),
    }
}

/// Step 2, allow-listed first: an entry without a copy is harmless, a
/// copy without its entry would be quarantined again by the next rescan.
/// Returns the allow-list object written to, if the config names one.
async fn allow_list_entry(agent: &Agent, held: &Held, said: &Provenance) -> Result<Option<String>, ReleaseError> {
    let Some(list) = agent.started_with.allow_list.object.clone() else {
        return Ok(None);
    };
    let note = format!("released {} by {} at {}: {}", said.from, said.by, said.at, said.reason);
    let line = bucketscan_core::allow::AllowList::line(&agent.scanner.sealer, &list, &held.sha256, &note);
    crate::allow_list::append(&agent.clients.s3, &list, &line)
        .await
        .map_err(|err| ReleaseError::AllowList {
            sha256: held.sha256.clone(),
            detail: err.to_string(),
        })?;
    Ok(Some(list))
}

/// Step 3, the copy: its own tags back, the allowed result sealed on it,
/// who, when and why in its metadata; proven to hold the bytes read.
async fn copy_back(
    agent: &Agent,
    held: &Held,
    to_bucket: &str,
    to_key: &str,
    said: &Provenance,
) -> Result<(ObjectInfo, TagPlan), ReleaseError> {
    let store = &agent.scanner.store;
    let sealing = Sealing {
        agent,
        held,
        to_bucket,
        to_key,
        own: agent
            .scanner
            .tag_keys
            .foreign(&held.info.tags)
            .into_iter()
            .filter(|(k, _)| k != QUARANTINE_TAG)
            .collect(),
        values: released_values(agent, held, said),
    };
    let source_etag = held.info.etag.clone().unwrap_or_default();
    let plan = sealing.plan(&source_etag);
    let copy_failed = |detail: String| ReleaseError::Copy {
        url: said.to.clone(),
        detail,
    };
    let dest = CopyDest {
        bucket: to_bucket.to_owned(),
        key: to_key.to_owned(),
        tags: plan.tags.clone(),
        extra_metadata: provenance_metadata(said),
    };
    let copied = store
        .copy(&held.info, &dest)
        .await
        .map_err(|err| copy_failed(err.to_string()))?;
    let copy = ObjectInfo {
        bucket: dest.bucket,
        key: dest.key,
        version_id: copied.version_id.clone(),
        etag: copied.etag.clone(),
        size: held.info.size,
        sha256: Some(held.sha256.clone()),
        ..ObjectInfo::default()
    };
    if let Some(actual) = &copied.sha256
        && *actual != held.sha256
    {
        let _ = store.delete(&copy).await;
        return Err(copy_failed(format!(
            "the copy holds other bytes (SHA-256 {actual}, read {}); the copy was removed",
            held.sha256
        )));
    }
    let actual_etag = copied.etag.as_deref().map(bare_etag).unwrap_or(source_etag.clone());
    if actual_etag == source_etag {
        return Ok((copy, plan));
    }
    // S3 gave the copy another ETag (KMS, parts): seal for that one.
    let plan = sealing.plan(&actual_etag);
    store
        .put_tags(&copy, &plan.tags)
        .await
        .map_err(|err| copy_failed(format!("re-sealing the copy's tags: {err}")))?;
    Ok((copy, plan))
}

/// What the released copy's tags are made of, before its ETag is known.
struct Sealing<'a> {
    agent: &'a Agent,
    held: &'a Held,
    to_bucket: &'a str,
    to_key: &'a str,
    /// The object's own tags (not ours, not the quarantine mark).
    own: Vec<(String, String)>,
    values: ResultValues,
}

impl Sealing<'_> {
    /// The tags for the copy whose ETag is `etag`, sealed for it.
    fn plan(&self, etag: &str) -> TagPlan {
        let subject = SealSubject {
            bucket: self.to_bucket,
            key: self.to_key,
            etag,
            version_id: None,
            sha256: Some(&self.held.sha256),
        };
        let target = TagTarget {
            subject,
            origin: SealOrigin::Written,
            contain: true,
        };
        let scanner = &self.agent.scanner;
        tags::plan(&scanner.tag_keys, &scanner.sealer, &self.own, &self.values, target)
    }
}

/// The allowed result, saying what was released.
fn released_values(agent: &Agent, held: &Held, said: &Provenance) -> ResultValues {
    ResultValues {
        result: agent.scanner.tag_keys.profile.allowed_value().to_owned(),
        date: tags::sanitize(&said.at),
        engine: held.engine.clone(),
        signature: Some(tags::sanitize(&format!(
            "released {}",
            held.finding.as_deref().unwrap_or(held.was.as_str())
        ))),
        decoded: None,
        coverage: None,
    }
}

/// Who released the object, from where, when and why, as the copy's
/// metadata.
fn provenance_metadata(said: &Provenance) -> Vec<(String, String)> {
    vec![
        (RELEASED_FROM.to_owned(), metadata_value(&said.from, 512)),
        (RELEASED_BY.to_owned(), metadata_value(&said.by, 256)),
        (RELEASED_AT.to_owned(), said.at.clone()),
        (RELEASE_REASON.to_owned(), metadata_value(&said.reason, 512)),
    ]
}

/// Step 4, announced: the released object, clean by an operator's word.
/// Returns the publisher's receipt, if results are published.
async fn announce(
    agent: &Agent,
    held: &Held,
    copy: &ObjectInfo,
    plan: TagPlan,
    said: &Provenance,
) -> Result<Option<String>, ReleaseError> {
    let Some(publisher) = &agent.scanner.publisher else {
        return Ok(None);
    };
    let keys = &agent.scanner.tag_keys;
    let verdict = recorded_verdict(
        keys.profile.parse(&held.was),
        held.finding.as_deref(),
        held.engine.as_deref(),
    );
    let mut report = ScanReport::new(copy, Verdict::Clean);
    report.allowed = Some(AllowMatch {
        sha256: held.sha256.clone(),
        verdict,
        entry: AllowEntry {
            source: format!("released by {} at {}", said.by, said.at),
            note: Some(said.reason.clone()),
        },
    });
    report.tags = Some(plan);
    report.host_actions = vec![format!(
        "released from {} to {} by {}: {}",
        said.from, said.to, said.by, said.reason
    )];
    let receipt = publisher.publish(&report).await.map_err(|err| ReleaseError::Publish {
        url: said.to.clone(),
        detail: err.to_string(),
    })?;
    Ok(Some(receipt))
}
