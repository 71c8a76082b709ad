//! The allow-list's S3 object (`[allow-list] object`): read at start,
//! reloaded every `refresh-secs`, appended to by `bucketscan release`
//! and by a revocation (with the revocations the results store keeps).
//!
//! A list that cannot be read leaves the last one read in place (at start:
//! the config's own entries, none with a results store), less whatever the
//! results store revokes meanwhile. An unreadable list can re-quarantine a
//! released file, never let other bytes through.

use crate::results::ResultsStore;
use crate::results::revocations::StoredRevocation;
use crate::s3_store::errors::{is_not_found, is_precondition_failed};
use aws_sdk_s3::primitives::ByteStream;
use bucketscan_core::allow::{AllowEntry, AllowList, AllowListConfig, parse_s3_url};
use bucketscan_core::seal::Sealer;

/// Why the list object could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AllowListLoadError {
    #[error("{url}: {detail}")]
    Read { url: String, detail: String },
    #[error("{url}: changed by someone else {attempts} times while appending; try again")]
    Contended { url: String, attempts: u32 },
    #[error("the results store's revocations: {0}")]
    Revocations(String),
}

/// The list object's text and ETag; empty when it does not exist yet.
async fn read(s3: &aws_sdk_s3::Client, url: &str) -> Result<(String, Option<String>), AllowListLoadError> {
    let (bucket, key) = parse_s3_url(url).map_err(|detail| AllowListLoadError::Read {
        url: url.to_owned(),
        detail,
    })?;
    let failed = |detail: String| AllowListLoadError::Read {
        url: url.to_owned(),
        detail,
    };
    let object = match s3.get_object().bucket(&bucket).key(&key).send().await {
        Ok(object) => object,
        Err(err) if is_not_found(&err) => return Ok((String::new(), None)),
        Err(err) => return Err(failed(crate::aws::error_text(&err))),
    };
    let etag = object.e_tag().map(str::to_owned);
    // A list of a million entries is ~70 MB: far past any real one.
    if object.content_length().unwrap_or(0) > 64 << 20 {
        return Err(failed("larger than 64 MiB".into()));
    }
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|err| failed(err.to_string()))?
        .into_bytes();
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| failed("not UTF-8 text".into()))?;
    Ok((text, etag))
}

/// The config's entries plus the list object's lines that carry the
/// agents' mark (the others are logged and skipped), less every digest
/// the results store (when there is one) says was revoked. A store that
/// cannot be read fails the load, like a list that cannot: a list read
/// without it could be an older copy written back.
pub async fn load(
    s3: &aws_sdk_s3::Client,
    config: &AllowListConfig,
    sealer: &Sealer,
    store: Option<&ResultsStore>,
) -> Result<AllowList, AllowListLoadError> {
    let mut list = AllowList::from_config(config);
    // The store's first: where both name a digest, its audited words are
    // the ones shown (the list's `revoke` lines carry no mark).
    if let Some(store) = store {
        for (digest, why) in store_revocations(store).await? {
            list.revoke(&digest, why);
        }
    }
    if let Some(url) = &config.object {
        let (text, _) = read(s3, url).await?;
        for skipped in list.add_text(url, &text, sealer) {
            tracing::error!("allow-list: {skipped}");
        }
    }
    Ok(list)
}

/// The revocations the results store keeps, as the allow-list takes them.
pub async fn store_revocations(store: &ResultsStore) -> Result<Vec<(String, AllowEntry)>, AllowListLoadError> {
    let revocations = store.revocations().await.map_err(AllowListLoadError::Revocations)?;
    Ok(revocations
        .into_iter()
        .map(|revoked| {
            let why = AllowEntry {
                source: "results store".into(),
                note: Some(revoked.note()),
            };
            (revoked.sha256, why)
        })
        .collect())
}

/// What a revocation wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Revoked {
    pub revocation: StoredRevocation,
    /// The list object it was appended to, if the config names one.
    pub list: Option<String>,
    /// Whether the results store recorded it.
    pub recorded: bool,
}

/// Why a revocation was not made (or only partly).
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("{0}")]
    Digest(String),
    #[error(
        "nowhere to keep a revocation: the config names neither `[allow-list] object` nor `[results]`; \
         add the digest to `[allow-list] revoked` instead"
    )]
    Nowhere,
    #[error("the results store did not record the revocation (nothing was written): {0}")]
    Store(String),
    #[error("{}not appended to the list object: {err}", if *recorded { "recorded in the results store, but " } else { "" })]
    List { recorded: bool, err: AllowListLoadError },
}

/// Revokes `revocation.sha256`: recorded in the results store first (the
/// audit trail, and what a list written back cannot undo), then appended
/// to the list object as a `revoke` line; the caller reloads its list.
pub async fn revoke(
    s3: &aws_sdk_s3::Client,
    config: &AllowListConfig,
    store: Option<&ResultsStore>,
    revocation: StoredRevocation,
) -> Result<Revoked, RevokeError> {
    bucketscan_core::allow::check_digest(&revocation.sha256).map_err(RevokeError::Digest)?;
    if config.object.is_none() && store.is_none() {
        return Err(RevokeError::Nowhere);
    }
    if let Some(store) = store {
        store.record_revocation(&revocation).await.map_err(RevokeError::Store)?;
    }
    if let Some(url) = &config.object {
        let line = AllowList::revoke_line(&revocation.sha256, &revocation.note());
        append(s3, url, &line).await.map_err(|err| RevokeError::List {
            recorded: store.is_some(),
            err,
        })?;
    }
    Ok(Revoked {
        list: config.object.clone(),
        recorded: store.is_some(),
        revocation,
    })
}

/// Appends `line` (made by [`AllowList::line`]) to the list object,
/// creating it if needed. The write is
/// conditional on the ETag read (or on absence), so two releases at once
/// cannot lose each other's entry.
pub async fn append(s3: &aws_sdk_s3::Client, url: &str, line: &str) -> Result<(), AllowListLoadError> {
    const ATTEMPTS: u32 = 5;
    let (bucket, key) = parse_s3_url(url).map_err(|detail| AllowListLoadError::Read {
        url: url.to_owned(),
        detail,
    })?;
    for _ in 0..ATTEMPTS {
        let (mut text, etag) = read(s3, url).await?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line.trim_end());
        text.push('\n');
        let mut put = s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .content_type("text/plain; charset=utf-8")
            .body(ByteStream::from(text.into_bytes()));
        put = match &etag {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(_) => return Ok(()),
            Err(err) if is_precondition_failed(&err) => continue,
            Err(err) => {
                return Err(AllowListLoadError::Read {
                    url: url.to_owned(),
                    detail: format!("PutObject: {}", crate::aws::error_text(&err)),
                });
            }
        }
    }
    Err(AllowListLoadError::Contended {
        url: url.to_owned(),
        attempts: ATTEMPTS,
    })
}
