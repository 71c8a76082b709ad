//! The `storage` capability on S3. Every action applies to the exact
//! version and ETag that was scanned: copies are conditional on the source
//! ETag (`x-amz-copy-source-if-match`), so a newer unscanned upload under the
//! same key can never be promoted; deletes name the version (and the ETag).

use crate::aws::Clients;
use crate::fetch::bare_etag;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, Tag, Tagging, TaggingDirective};
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::storage::{BoxFuture, StorageAction, StorageBackend};
use bucketscan_core::tags;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Characters kept as they are in a copy source: `/` separates the path.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// S3's single-request copy limit; larger objects use UploadPartCopy.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Objects this agent wrote recently, so their events are not scanned again
/// (a quarantine or promotion into a watched bucket must not loop).
#[derive(Debug, Default)]
pub struct OwnWrites {
    recent: Mutex<HashMap<(String, String), Instant>>,
}

const OWN_WRITE_TTL: Duration = Duration::from_secs(15 * 60);

impl OwnWrites {
    pub fn record(&self, bucket: &str, key: &str) {
        let mut recent = self.recent.lock().unwrap();
        recent.retain(|_, at| at.elapsed() < OWN_WRITE_TTL);
        recent.insert((bucket.to_owned(), key.to_owned()), Instant::now());
    }

    /// Whether the event for `bucket`/`key` is one of our own writes; each
    /// write excuses one event.
    pub fn take(&self, bucket: &str, key: &str) -> bool {
        let mut recent = self.recent.lock().unwrap();
        match recent.remove(&(bucket.to_owned(), key.to_owned())) {
            Some(at) => at.elapsed() < OWN_WRITE_TTL,
            None => false,
        }
    }
}

/// S3 storage for the agent. Each request uses the client for the bucket it
/// touches (an assumed role for cross-account buckets); a copy uses the
/// destination's, which must be allowed to read the source.
pub struct S3Storage {
    clients: Clients,
    /// Objects larger than this are copied part by part.
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub own_writes: std::sync::Arc<OwnWrites>,
}

impl S3Storage {
    pub fn new(clients: Clients, own_writes: std::sync::Arc<OwnWrites>) -> Self {
        Self {
            clients,
            multipart_threshold: MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
            own_writes,
        }
    }

    fn copy_source(object: &ObjectInfo) -> String {
        let key = utf8_percent_encode(&object.key, COPY_SOURCE);
        match &object.version_id {
            Some(version) => format!("{}/{key}?versionId={version}", object.bucket),
            None => format!("{}/{key}", object.bucket),
        }
    }

    fn if_match(object: &ObjectInfo) -> Option<String> {
        object.etag.as_ref().map(|etag| format!("\"{etag}\""))
    }

    /// The source's current tags (re-read: actions may have added some)
    /// merged with `extra`.
    async fn tags_for_copy(
        &self,
        object: &ObjectInfo,
        extra: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let s3 = self.clients.s3_for(&object.bucket);
        let current = crate::fetch::object_tags(s3, &object.bucket, &object.key, object.version_id.as_deref()).await?;
        tags::merge(&current, extra).map_err(|err| err.to_string())
    }

    async fn copy(
        &self,
        object: &ObjectInfo,
        bucket: &str,
        key: &str,
        extra: &[(String, String)],
    ) -> Result<(), String> {
        let tag_set = self.tags_for_copy(object, extra).await?;
        let tagging = encode_tagging(&tag_set);
        // Record before the write lands: its event may arrive first.
        self.own_writes.record(bucket, key);
        if object.size > self.multipart_threshold {
            self.copy_multipart(object, bucket, key, &tagging).await?;
        } else {
            self.clients
                .s3_for(bucket)
                .copy_object()
                .bucket(bucket)
                .key(key)
                .copy_source(Self::copy_source(object))
                .set_copy_source_if_match(Self::if_match(object))
                .metadata_directive(MetadataDirective::Copy)
                .tagging_directive(TaggingDirective::Replace)
                .tagging(tagging)
                .send()
                .await
                .map_err(|err| format!("CopyObject: {}", aws_sdk_s3::error::DisplayErrorContext(&err)))?;
        }
        self.verify_copy(object, bucket, key).await
    }

    async fn copy_multipart(&self, object: &ObjectInfo, bucket: &str, key: &str, tagging: &str) -> Result<(), String> {
        let metadata: HashMap<String, String> = object.metadata.iter().cloned().collect();
        let s3 = self.clients.s3_for(bucket);
        let upload = s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(object.content_type.clone())
            .set_metadata(Some(metadata))
            .tagging(tagging)
            .send()
            .await
            .map_err(|err| {
                format!(
                    "CreateMultipartUpload: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                )
            })?;
        let upload_id = upload
            .upload_id()
            .ok_or("CreateMultipartUpload returned no upload id")?
            .to_owned();
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            let mut number = 1;
            while start < object.size {
                let end = (start + self.part_size).min(object.size) - 1;
                let out = s3
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(Self::copy_source(object))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .set_copy_source_if_match(Self::if_match(object))
                    .send()
                    .await
                    .map_err(|err| {
                        format!(
                            "UploadPartCopy part {number}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&err)
                        )
                    })?;
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
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|err| {
                    format!(
                        "CompleteMultipartUpload: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&err)
                    )
                })?;
            Ok::<_, String>(())
        }
        .await;
        if result.is_err() {
            let _ = s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// A copy counts only when the destination holds as many bytes as the
    /// scanned version.
    async fn verify_copy(&self, object: &ObjectInfo, bucket: &str, key: &str) -> Result<(), String> {
        let head = self
            .clients
            .s3_for(bucket)
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| {
                format!(
                    "verifying s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                )
            })?;
        let size = head.content_length().unwrap_or(-1);
        if size != object.size as i64 {
            return Err(format!(
                "copy to s3://{bucket}/{key} has {size} bytes, the scanned object {}",
                object.size
            ));
        }
        if object.size <= self.multipart_threshold {
            let etag = head.e_tag().map(bare_etag);
            if etag.is_some()
                && object.etag.is_some()
                && etag != object.etag
                && !object.etag.as_deref().unwrap_or("").contains('-')
            {
                return Err(format!(
                    "copy to s3://{bucket}/{key} has ETag {etag:?}, the scanned object {:?}",
                    object.etag
                ));
            }
        }
        Ok(())
    }

    async fn delete(&self, object: &ObjectInfo) -> Result<(), String> {
        self.clients
            .s3_for(&object.bucket)
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await
            .map_err(|err| format!("DeleteObject: {}", aws_sdk_s3::error::DisplayErrorContext(&err)))?;
        Ok(())
    }

    async fn tag(&self, object: &ObjectInfo, new: &[(String, String)]) -> Result<(), String> {
        let merged = self.tags_for_copy(object, new).await?;
        put_tags(self.clients.s3_for(&object.bucket), object, &merged).await
    }
}

/// Replaces the object version's tags with `tag_set`.
pub async fn put_tags(
    s3: &aws_sdk_s3::Client,
    object: &ObjectInfo,
    tag_set: &[(String, String)],
) -> Result<(), String> {
    let tag_set = tag_set
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|err| err.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let tagging = Tagging::builder()
        .set_tag_set(Some(tag_set))
        .build()
        .map_err(|err| err.to_string())?;
    s3.put_object_tagging()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .tagging(tagging)
        .send()
        .await
        .map_err(|err| format!("PutObjectTagging: {}", aws_sdk_s3::error::DisplayErrorContext(&err)))?;
    Ok(())
}

/// `k1=v1&k2=v2`, URL-encoded, as the `x-amz-tagging` header wants.
fn encode_tagging(tag_set: &[(String, String)]) -> String {
    tag_set
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

impl StorageBackend for S3Storage {
    fn perform<'a>(&'a self, object: &'a ObjectInfo, action: StorageAction) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
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
                    self.copy(object, &bucket, &key, &extra_tags).await?;
                    self.delete(object).await
                }
                StorageAction::Delete => self.delete(object).await,
                StorageAction::Tag { tags } => self.tag(object, &tags).await,
            }
        })
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
            S3Storage::copy_source(&object),
            "staging/a%20dir/r%C3%A9sum%C3%A9%2B1.pdf?versionId=v1"
        );
    }

    #[test]
    fn own_writes_excuse_one_event() {
        let own = OwnWrites::default();
        own.record("q", "staging/x");
        assert!(own.take("q", "staging/x"));
        assert!(!own.take("q", "staging/x"));
    }
}
