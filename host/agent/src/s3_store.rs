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

use crate::aws::Clients;
use crate::budget::SpoolBudget;
use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective, Tag, Tagging, TaggingDirective,
};
use base64::Engine as _;
use bucketscan_core::object::{ObjectBody, ObjectHeaders, ObjectInfo, SpooledFile};
use bucketscan_core::storage::StorageError;
use bucketscan_scan::store::{Body, Copied, CopyDest, Current, FetchError, Opened, PendingBody, Store, Target};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Digest;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Characters kept as they are in a copy source: `/` separates the path.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// S3's single-request copy limit; larger objects use UploadPartCopy.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Where and from what size objects are spooled to disk.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub threshold_bytes: u64,
    pub dir: PathBuf,
    pub budget: Arc<SpoolBudget>,
}

/// The S3 store.
pub struct S3Store {
    clients: Clients,
    spool: SpoolConfig,
    /// Bucket -> the account that must own it.
    owners: HashMap<String, String>,
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
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
        }
    }

    fn s3(&self, bucket: &str) -> &aws_sdk_s3::Client {
        self.clients.s3_for(bucket)
    }

    fn owner(&self, bucket: &str) -> Option<String> {
        self.owners.get(bucket).cloned()
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

    async fn copy_multipart(&self, object: &ObjectInfo, dest: &CopyDest, tagging: &str) -> Result<(), StorageError> {
        let where_ = format!("s3://{}/{}", dest.bucket, dest.key);
        let mut metadata: HashMap<String, String> = object.metadata.iter().cloned().collect();
        metadata.extend(dest.extra_metadata.iter().cloned());
        let s3 = self.s3(&dest.bucket);
        let upload = s3
            .create_multipart_upload()
            .bucket(&dest.bucket)
            .key(&dest.key)
            .set_content_type(object.content_type.clone())
            .set_content_encoding(object.headers.content_encoding.clone())
            .set_content_disposition(object.headers.content_disposition.clone())
            .set_content_language(object.headers.content_language.clone())
            .set_cache_control(object.headers.cache_control.clone())
            .set_metadata(Some(metadata))
            .tagging(tagging)
            .set_expected_bucket_owner(self.owner(&dest.bucket))
            .send()
            .await
            .map_err(|err| destination_error(&where_, "CreateMultipartUpload", err))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| StorageError::Failed("CreateMultipartUpload returned no upload id".into()))?
            .to_owned();
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            let mut number = 1;
            while start < object.size {
                let end = (start + self.part_size).min(object.size) - 1;
                let out = s3
                    .upload_part_copy()
                    .bucket(&dest.bucket)
                    .key(&dest.key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(Self::copy_source(object))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .set_copy_source_if_match(Self::pin_etag(object))
                    .set_expected_bucket_owner(self.owner(&dest.bucket))
                    .set_expected_source_bucket_owner(self.owner(&object.bucket))
                    .send()
                    .await
                    .map_err(|err| storage_error(&object.url(), &format!("UploadPartCopy part {number}"), err))?;
                let etag = out
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .unwrap_or_default()
                    .to_owned();
                parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
                start = end + 1;
                number += 1;
            }
            s3.complete_multipart_upload()
                .bucket(&dest.bucket)
                .key(&dest.key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .set_expected_bucket_owner(self.owner(&dest.bucket))
                .send()
                .await
                .map_err(|err| destination_error(&where_, "CompleteMultipartUpload", err))?;
            Ok::<_, StorageError>(())
        }
        .await;
        if result.is_err() {
            let _ = s3
                .abort_multipart_upload()
                .bucket(&dest.bucket)
                .key(&dest.key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
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
            .await
            .map_err(|err| fetch_error(target, "GetObject", err))?;
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
        match self.current(&object.bucket, &object.key).await? {
            Some(current) if Some(current.etag.as_str()) != object.etag.as_deref() => Ok(Some(current.etag)),
            Some(_) => Ok(None),
            None => Err(StorageError::Gone(format!(
                "{} was deleted while it was tagged",
                object.url()
            ))),
        }
    }

    async fn current(&self, bucket: &str, key: &str) -> Result<Option<Current>, StorageError> {
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
            Err(err) => return Err(storage_error(&format!("s3://{bucket}/{key}"), "HeadObject", err)),
        };
        let version_id = real_version(head.version_id());
        let etag = head.e_tag().map(bare_etag).unwrap_or_default();
        let tags = self.tags(bucket, key, version_id.as_deref()).await?;
        Ok(Some(Current { etag, version_id, tags }))
    }

    async fn copy(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError> {
        let tagging = bucketscan_core::tags::encode_pairs(&dest.tags);
        let where_ = format!("s3://{}/{}", dest.bucket, dest.key);
        if object.size > self.multipart_threshold {
            self.copy_multipart(object, dest, &tagging).await?;
            // Parts have their own ETags: check the copy's size.
            let head = self
                .s3(&dest.bucket)
                .head_object()
                .bucket(&dest.bucket)
                .key(&dest.key)
                .set_expected_bucket_owner(self.owner(&dest.bucket))
                .send()
                .await
                .map_err(|err| destination_error(&where_, "HeadObject (verifying the copy)", err))?;
            let size = head.content_length().unwrap_or(-1);
            if size != object.size as i64 {
                return Err(StorageError::Failed(format!(
                    "copy to {where_} has {size} bytes, the scanned object {}",
                    object.size
                )));
            }
            return Ok(Copied {
                etag: head.e_tag().map(bare_etag),
                version_id: real_version(head.version_id()),
                // A copy in parts has no SHA-256 of the whole object.
                sha256: None,
            });
        }
        let mut request = self
            .s3(&dest.bucket)
            .copy_object()
            .bucket(&dest.bucket)
            .key(&dest.key)
            .copy_source(Self::copy_source(object))
            .set_copy_source_if_match(Self::pin_etag(object))
            .tagging_directive(TaggingDirective::Replace)
            .tagging(tagging)
            // S3 computes the copy's SHA-256: the scan path checks it is
            // the scanned bytes' (an ETag alone can be collided).
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_expected_bucket_owner(self.owner(&dest.bucket))
            .set_expected_source_bucket_owner(self.owner(&object.bucket));
        request = if dest.extra_metadata.is_empty() {
            request.metadata_directive(MetadataDirective::Copy)
        } else {
            // Adding metadata means replacing it: carry every header over.
            let mut metadata: HashMap<String, String> = object.metadata.iter().cloned().collect();
            metadata.extend(dest.extra_metadata.iter().cloned());
            request
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(metadata))
                .set_content_type(object.content_type.clone())
                .set_content_encoding(object.headers.content_encoding.clone())
                .set_content_disposition(object.headers.content_disposition.clone())
                .set_content_language(object.headers.content_language.clone())
                .set_cache_control(object.headers.cache_control.clone())
        };
        let out = request
            .send()
            .await
            .map_err(|err| storage_error(&object.url(), "CopyObject", err))?;
        let result = out.copy_object_result();
        Ok(Copied {
            etag: result.and_then(|r| r.e_tag()).map(bare_etag),
            version_id: real_version(out.version_id()),
            sha256: result
                .and_then(|r| r.checksum_sha256())
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .map(hex::encode),
        })
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

/// The body of an opened object.
struct S3Body {
    object: GetObjectOutput,
    size: u64,
    url: String,
    spool: SpoolConfig,
}

#[async_trait]
impl PendingBody for S3Body {
    async fn read(self: Box<Self>) -> Result<Body, FetchError> {
        let S3Body {
            mut object,
            size,
            url,
            spool,
        } = *self;
        let unavailable = |what: String| FetchError::Unavailable(format!("{url}: {what}"));
        let mut hasher = sha2::Sha256::new();
        if size <= spool.threshold_bytes {
            let mut bytes = Vec::with_capacity(size as usize);
            while let Some(chunk) = object
                .body
                .try_next()
                .await
                .map_err(|err| unavailable(format!("reading the body: {err}")))?
            {
                if bytes.len() + chunk.len() > size as usize {
                    return Err(unavailable(format!(
                        "the body is longer than the {size} bytes announced"
                    )));
                }
                hasher.update(&chunk);
                bytes.extend_from_slice(&chunk);
            }
            if bytes.len() as u64 != size {
                return Err(unavailable(format!("received {} bytes of {size}", bytes.len())));
            }
            return Ok(Body {
                bytes: ObjectBody::from_bytes(bytes),
                sha256: hex::encode(hasher.finalize()),
            });
        }
        // Reserve the bytes before writing any of them.
        let reservation = spool
            .budget
            .try_reserve(size)
            .map_err(|why| FetchError::OverBudget(format!("{url}: {why}")))?;
        std::fs::create_dir_all(&spool.dir)
            .map_err(|err| unavailable(format!("spool dir {}: {err}", spool.dir.display())))?;
        let file = tempfile::Builder::new()
            .prefix("bucketscan-")
            .tempfile_in(&spool.dir)
            .map_err(|err| unavailable(format!("spool file in {}: {err}", spool.dir.display())))?;
        let (mut file, path) = file.keep().map_err(|err| unavailable(format!("spool file: {err}")))?;
        // From here on the file is removed (and its reservation released)
        // when `spooled` drops, also on error.
        let spooled = SpooledFile::temporary(path)
            .map_err(|err| unavailable(format!("spool file: {err}")))?
            .with_guard(reservation);
        let mut written = 0u64;
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|err| unavailable(format!("reading the body: {err}")))?
        {
            written += chunk.len() as u64;
            if written > size {
                return Err(unavailable(format!(
                    "the body is longer than the {size} bytes announced"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|err| unavailable(format!("writing the spool file: {err}")))?;
        }
        file.flush()
            .map_err(|err| unavailable(format!("writing the spool file: {err}")))?;
        if written != size {
            return Err(unavailable(format!("received {written} bytes of {size}")));
        }
        Ok(Body {
            bytes: ObjectBody::File(Arc::new(spooled)),
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

fn info_of(target: &Target, object: &GetObjectOutput) -> ObjectInfo {
    ObjectInfo {
        bucket: target.bucket.clone(),
        key: target.key.clone(),
        version_id: real_version(object.version_id()).or(target.version_id.clone()),
        size: object.content_length().unwrap_or_default().max(0) as u64,
        etag: object.e_tag().map(bare_etag),
        content_type: object.content_type().map(str::to_owned),
        metadata: pairs(object.metadata()),
        tags: Vec::new(),
        sha256: None,
        headers: ObjectHeaders {
            content_encoding: object.content_encoding().map(str::to_owned),
            content_disposition: object.content_disposition().map(str::to_owned),
            content_language: object.content_language().map(str::to_owned),
            cache_control: object.cache_control().map(str::to_owned),
        },
    }
}

fn pairs(map: Option<&HashMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs
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

fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(|response| response.status_u16())
}

fn is_not_found<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    // A missing bucket is a config or permissions problem, and a missing
    // multipart upload is the destination's: never "the object is gone". A
    // quarantine into a bucket that does not exist must fail, not pass as
    // nothing left to contain.
    if matches!(code, Some("NoSuchBucket" | "NoSuchUpload")) {
        return false;
    }
    matches!(code, Some("NoSuchKey" | "NotFound" | "NoSuchVersion")) || status(err) == Some(404)
}

fn is_precondition_failed<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    code == Some("PreconditionFailed") || status(err) == Some(412)
}

fn is_unavailable<E: ProvideErrorMetadata, R: HasStatus>(err: &SdkError<E, R>) -> bool {
    let code = match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || matches!(
        code,
        Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout")
    ) || status(err).is_some_and(|s| s >= 500 || s == 429)
}

fn storage_error<E, R>(what: &str, operation: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    let message = format!("{what}: {operation}: {}", aws_sdk_s3::error::DisplayErrorContext(&err));
    if is_precondition_failed(&err) {
        StorageError::Replaced(format!(
            "{what} no longer holds the scanned bytes ({operation} precondition failed)"
        ))
    } else if is_not_found(&err) {
        StorageError::Gone(format!("{what} no longer exists"))
    } else if is_unavailable(&err) {
        StorageError::Unavailable(message)
    } else {
        StorageError::Failed(message)
    }
}

/// An error of a request on a copy's destination: there, "not found" is
/// a failure (the copy vanished, its upload was aborted), never the
/// scanned object being gone.
fn destination_error<E, R>(what: &str, operation: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    match storage_error(what, operation, err) {
        StorageError::Gone(why) => StorageError::Failed(format!("{why} (the destination of a copy)")),
        other => other,
    }
}

fn fetch_error<E, R>(target: &Target, operation: &str, err: SdkError<E, R>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HasStatus + std::fmt::Debug,
{
    FetchError::from_storage(storage_error(&target.url(), operation, err))
}

/// The HTTP status of a raw SDK response.
pub trait HasStatus {
    fn status_u16(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
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
