//! The scan path's store on S3. Every request is pinned to the scanned
//! bytes: the version ID when there is one; otherwise the ETag, as a
//! condition where S3 offers one (GetObject, CopyObject and DeleteObject
//! `If-Match`) and as a check afterwards where it does not
//! (PutObjectTagging). Requests to a bucket whose owner the config names
//! carry `ExpectedBucketOwner`.
//!
//! Objects are read once: in memory up to the spool threshold, otherwise
//! streamed to a temp file whose size is reserved in the spool budget
//! first, so large objects in flight can never fill the disk.

mod body;
mod copy;
pub(crate) mod errors;

use body::{S3Body, info_of, pairs};
use errors::{fetch_error, is_not_found, storage_error, unreadable};

use crate::aws::Clients;
use async_trait::async_trait;
use aws_sdk_s3::types::{Tag, Tagging};
use bucketscan_core::config::Enrolled;
use bucketscan_core::object::{ObjectHeaders, ObjectInfo};
use bucketscan_core::storage::StorageError;
use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_scan::spool::SpoolConfig;
use bucketscan_scan::store::{Copied, CopyDest, Current, FetchError, Opened, Store, Target};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::HashMap;

/// Characters kept as they are in a copy source: `/` separates the path.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// S3's single-request copy limit; larger objects use UploadPartCopy.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// The S3 store.
pub struct S3Store {
    clients: Clients,
    spool: SpoolConfig,
    /// Bucket -> the account that must own it.
    owners: HashMap<String, String>,
    /// Member-account buckets: owned by the account they came from.
    enrolled: Enrolled,
    /// Copies of objects larger than this go part by part.
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl S3Store {
    pub fn new(clients: Clients, spool: SpoolConfig, owners: HashMap<String, String>) -> Self {
        Self {
            clients,
            spool,
            owners,
            enrolled: Enrolled::default(),
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        }
    }

    /// Lets the store answer for member accounts' enrolled buckets.
    pub fn with_enrolled(mut self, enrolled: Enrolled) -> Self {
        self.enrolled = enrolled;
        self
    }

    fn s3(&self, bucket: &str) -> aws_sdk_s3::Client {
        self.clients.s3_for(bucket)
    }

    fn owner(&self, bucket: &str) -> Option<String> {
        self.owners
            .get(bucket)
            .cloned()
            .or_else(|| self.enrolled.account_of(bucket))
    }

    fn copy_source(object: &ObjectInfo) -> String {
        let key = utf8_percent_encode(&object.key, COPY_SOURCE);
        match &object.version_id {
            Some(version) => format!("{}/{key}?versionId={version}", object.bucket),
            None => format!("{}/{key}", object.bucket),
        }
    }

    /// The `If-Match` that pins an unversioned object to its ETag.
    fn pin_etag(object: &ObjectInfo) -> Option<String> {
        match (&object.version_id, &object.etag) {
            (None, Some(etag)) => Some(quoted(etag)),
            _ => None,
        }
    }

    async fn head(&self, target: &Target) -> Result<ObjectInfo, FetchError> {
        let head = self
            .s3(&target.bucket)
            .head_object()
            .bucket(&target.bucket)
            .key(&target.key)
            .set_version_id(target.version_id.clone())
            .set_if_match(pin_target(target))
            .set_expected_bucket_owner(self.owner(&target.bucket))
            .send()
            .await
            .map_err(|err| fetch_error(target, "HeadObject", err))?;
        Ok(ObjectInfo {
            bucket: target.bucket.clone(),
            key: target.key.clone(),
            version_id: real_version(head.version_id()).or(target.version_id.clone()),
            size: head.content_length().unwrap_or_default().max(0) as u64,
            etag: head.e_tag().map(bare_etag),
            content_type: head.content_type().map(str::to_owned),
            metadata: pairs(head.metadata()),
            tags: Vec::new(),
            sha256: None,
            walked_sha256: None,
            member: None,
            headers: ObjectHeaders {
                content_encoding: head.content_encoding().map(str::to_owned),
                content_disposition: head.content_disposition().map(str::to_owned),
                content_language: head.content_language().map(str::to_owned),
                cache_control: head.cache_control().map(str::to_owned),
            },
        })
    }

    async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let out = self
            .s3(bucket)
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .set_expected_bucket_owner(self.owner(bucket))
            .send()
            .await
            .map_err(|err| storage_error(&format!("s3://{bucket}/{key}"), "GetObjectTagging", err))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }
}

#[async_trait]
impl Store for S3Store {
    async fn open(&self, target: &Target, limit: u64) -> Result<Opened, FetchError> {
        // Over the limit by the event's own size: a HEAD for the metadata,
        // never a GET.
        if target.size.is_some_and(|size| size > limit) {
            let mut info = self.head(target).await?;
            info.tags = self
                .tags(&info.bucket, &info.key, info.version_id.as_deref())
                .await
                .map_err(FetchError::from_storage)?;
            return Ok(Opened::TooLarge(info));
        }
        let object = self
            .s3(&target.bucket)
            .get_object()
            .bucket(&target.bucket)
            .key(&target.key)
            .set_version_id(target.version_id.clone())
            .set_if_match(pin_target(target))
            .set_expected_bucket_owner(self.owner(&target.bucket))
            .send()
            .await;
        let object = match object {
            Ok(object) => object,
            Err(err) => match unreadable(&err) {
                Some(reason) => {
                    let detail = format!("{}: GetObject: {}", target.url(), crate::aws::error_text(&err));
                    return self.open_unreadable(target, reason, detail).await;
                }
                None => return Err(fetch_error(target, "GetObject", err)),
            },
        };
        let mut info = info_of(target, &object);
        if object.tag_count().unwrap_or(0) > 0 {
            info.tags = self
                .tags(&info.bucket, &info.key, info.version_id.as_deref())
                .await
                .map_err(FetchError::from_storage)?;
        }
        if info.size > limit {
            // The response's size says what the event did not: drop the
            // body unread.
            return Ok(Opened::TooLarge(info));
        }
        let body = S3Body {
            object,
            size: info.size,
            url: info.url(),
            spool: self.spool.clone(),
        };
        Ok(Opened::Ready {
            info,
            body: Box::new(body),
        })
    }

    async fn read_range(&self, object: &ObjectInfo, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let wanted = len.min(object.size.saturating_sub(offset));
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset + wanted - 1);
        let part = self
            .s3(&object.bucket)
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(&range)
            .set_version_id(object.version_id.clone())
            .set_if_match(Self::pin_etag(object))
            .set_expected_bucket_owner(self.owner(&object.bucket))
            .send()
            .await
            .map_err(|err| FetchError::from_storage(storage_error(&object.url(), "GetObject (range)", err)))?;
        let bytes = part
            .body
            .collect()
            .await
            .map_err(|err| FetchError::Unavailable(format!("{}: reading {range}: {err}", object.url())))?
            .to_vec();
        if bytes.len() as u64 != wanted {
            return Err(FetchError::Unavailable(format!(
                "{}: {range} returned {} bytes",
                object.url(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn put_tags(&self, object: &ObjectInfo, tags: &[(String, String)]) -> Result<Option<String>, StorageError> {
        if tags.is_empty() {
            // No tags left: delete them (an empty PutObjectTagging is not
            // understood everywhere).
            self.s3(&object.bucket)
                .delete_object_tagging()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_version_id(object.version_id.clone())
                .set_expected_bucket_owner(self.owner(&object.bucket))
                .send()
                .await
                .map_err(|err| storage_error(&object.url(), "DeleteObjectTagging", err))?;
        } else {
            let tag_set = tags
                .iter()
                .map(|(k, v)| {
                    Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|err| StorageError::Refused(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let tagging = Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .map_err(|err| StorageError::Refused(err.to_string()))?;
            self.s3(&object.bucket)
                .put_object_tagging()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_version_id(object.version_id.clone())
                .tagging(tagging)
                .set_expected_bucket_owner(self.owner(&object.bucket))
                .send()
                .await
                .map_err(|err| storage_error(&object.url(), "PutObjectTagging", err))?;
        }
        if object.is_versioned() {
            return Ok(None);
        }
        // PutObjectTagging takes no condition: look whether the key still
        // holds the bytes the tags are about.
        // (Its ETag is all this needs: no GetObjectTagging.)
        match self.current_etag(&object.bucket, &object.key).await? {
            Some(etag) if Some(etag.as_str()) != object.etag.as_deref() => Ok(Some(etag)),
            Some(_) => Ok(None),
            None => Err(StorageError::Gone(format!(
                "{} was deleted while it was tagged",
                object.url()
            ))),
        }
    }

    async fn current(&self, bucket: &str, key: &str) -> Result<Option<Current>, StorageError> {
        let Some((etag, version_id)) = self.head_current(bucket, key).await? else {
            return Ok(None);
        };
        let tags = self.tags(bucket, key, version_id.as_deref()).await?;
        Ok(Some(Current { etag, version_id, tags }))
    }
    async fn copy(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError> {
        self.copy_object(object, dest).await
    }

    async fn delete(&self, object: &ObjectInfo) -> Result<(), StorageError> {
        // A version is exact; without one, only while the key still holds
        // the scanned ETag (conditional deletes apply to the current
        // version only, which is what an unversioned key has).
        self.s3(&object.bucket)
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(Self::pin_etag(object))
            .set_expected_bucket_owner(self.owner(&object.bucket))
            .send()
            .await
            .map_err(|err| storage_error(&object.url(), "DeleteObject", err))?;
        Ok(())
    }
}

/// S3 calls the version of an object in an unversioned (or suspended)
/// bucket `null`: it can be overwritten in place, so it pins nothing.
fn real_version(version: Option<&str>) -> Option<String> {
    version.filter(|v| !v.is_empty() && *v != "null").map(str::to_owned)
}

/// The `If-Match` for a target: its ETag, when the event named one and no
/// version pins it already.
fn pin_target(target: &Target) -> Option<String> {
    match (&target.version_id, &target.etag) {
        (None, Some(etag)) => Some(quoted(etag)),
        _ => None,
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

/// Removes the quotes S3 puts around ETags.
pub fn bare_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

impl S3Store {
    /// An object S3 will not hand over: what can be known without its
    /// bytes (a HEAD, or what the event said when even that is refused,
    /// as for SSE-C), its tags, and the verdict.
    async fn open_unreadable(
        &self,
        target: &Target,
        reason: UnscannableReason,
        detail: String,
    ) -> Result<Opened, FetchError> {
        let mut info = match self.head(target).await {
            Ok(info) => info,
            Err(FetchError::Unavailable(_)) => ObjectInfo {
                bucket: target.bucket.clone(),
                key: target.key.clone(),
                version_id: target.version_id.clone(),
                etag: target.etag.clone(),
                size: target.size.unwrap_or_default(),
                ..ObjectInfo::default()
            },
            Err(other) => return Err(other),
        };
        if info.etag.is_none() {
            info.etag = self
                .listed_etag(&target.bucket, &target.key)
                .await
                .map_err(FetchError::from_storage)?;
        }
        info.tags = match self.tags(&info.bucket, &info.key, info.version_id.as_deref()).await {
            Ok(tags) => tags,
            // Some S3 implementations refuse even the tags of an archived
            // object: the result tags then replace whatever it had (the
            // write replaces the whole set, forged results included).
            Err(err) if reason == UnscannableReason::Archived => {
                tracing::warn!(
                    "{}: its tags cannot be read ({err}); writing the result alone",
                    info.url()
                );
                Vec::new()
            }
            Err(err) => return Err(FetchError::from_storage(err)),
        };
        let verdict = Verdict::Unscannable {
            reason,
            detail: bucketscan_core::text::cap(&detail, 1024),
        };
        Ok(Opened::Unreadable { info, verdict })
    }

    /// The ETag the key's current object is listed with: what a listing
    /// shows of an object whose HEAD is refused (SSE-C without the key).
    async fn listed_etag(&self, bucket: &str, key: &str) -> Result<Option<String>, StorageError> {
        let listed = self
            .s3(bucket)
            .list_objects_v2()
            .bucket(bucket)
            .prefix(key)
            .max_keys(1)
            .set_expected_bucket_owner(self.owner(bucket))
            .send()
            .await
            .map_err(|err| storage_error(&format!("s3://{bucket}/{key}"), "ListObjectsV2", err))?;
        Ok(listed
            .contents()
            .iter()
            .find(|object| object.key() == Some(key))
            .and_then(|object| object.e_tag())
            .map(bare_etag))
    }

    /// What the key holds now, by HEAD alone: its ETag and version.
    async fn head_current(&self, bucket: &str, key: &str) -> Result<Option<(String, Option<String>)>, StorageError> {
        let head = self
            .s3(bucket)
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_expected_bucket_owner(self.owner(bucket))
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(err) if is_not_found(&err) => return Ok(None),
            // An SSE-C object refuses a HEAD without its key; its listing
            // still shows the ETag.
            Err(err) if errors::status(&err) == Some(400) => {
                return Ok(self.listed_etag(bucket, key).await?.map(|etag| (etag, None)));
            }
            Err(err) => return Err(storage_error(&format!("s3://{bucket}/{key}"), "HeadObject", err)),
        };
        Ok(Some((
            head.e_tag().map(bare_etag).unwrap_or_default(),
            real_version(head.version_id()),
        )))
    }

    /// The ETag the key holds now (one HEAD), `None` when it is gone.
    async fn current_etag(&self, bucket: &str, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self.head_current(bucket, key).await?.map(|(etag, _)| etag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_encode_keys_and_pin_versions() {
        let object = ObjectInfo {
            bucket: "staging".into(),
            key: "a dir/résumé+1.pdf".into(),
            version_id: Some("v1".into()),
            ..ObjectInfo::default()
        };
        assert_eq!(
            S3Store::copy_source(&object),
            "staging/a%20dir/r%C3%A9sum%C3%A9%2B1.pdf?versionId=v1"
        );
    }

    #[test]
    fn only_unversioned_objects_are_pinned_by_etag() {
        let mut object = ObjectInfo {
            etag: Some("abc".into()),
            ..ObjectInfo::default()
        };
        assert_eq!(S3Store::pin_etag(&object).as_deref(), Some("\"abc\""));
        object.version_id = Some("v1".into());
        assert_eq!(S3Store::pin_etag(&object), None, "the version is exact");
        assert_eq!(real_version(Some("null")), None);
    }
}
