//! Copies to another bucket or key: pinned to the scanned bytes, tagged in
//! the same request, and verified (SHA-256, or size for a copy in parts).

use super::errors::{destination_error, storage_error};
use super::{S3Store, bare_etag, real_version};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective, TaggingDirective,
};
use base64::Engine as _;
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::storage::StorageError;
use bucketscan_scan::store::{Copied, CopyDest};
use std::collections::HashMap;

impl S3Store {
    /// Copies `object` to `dest`: one CopyObject with its SHA-256 up to
    /// the threshold, a multipart copy checked by size above it.
    pub(super) async fn copy_object(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError> {
        let tagging = bucketscan_core::tags::encode_pairs(&dest.tags);
        if object.size > self.multipart_threshold {
            self.copy_multipart(object, dest, &tagging).await?;
            return self.verify_size(object, dest).await;
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
            request
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(metadata_with_extra(object, dest)))
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

    /// A copy in parts has its own ETag and no SHA-256 of the whole
    /// object: its size is what can be checked.
    async fn verify_size(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError> {
        let where_ = format!("s3://{}/{}", dest.bucket, dest.key);
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
        Ok(Copied {
            etag: head.e_tag().map(bare_etag),
            version_id: real_version(head.version_id()),
            sha256: None,
        })
    }

    async fn copy_multipart(&self, object: &ObjectInfo, dest: &CopyDest, tagging: &str) -> Result<(), StorageError> {
        let where_ = format!("s3://{}/{}", dest.bucket, dest.key);
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
            .set_metadata(Some(metadata_with_extra(object, dest)))
            .tagging(tagging)
            .set_expected_bucket_owner(self.owner(&dest.bucket))
            .send()
            .await
            .map_err(|err| destination_error(&where_, "CreateMultipartUpload", err))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| StorageError::Failed("CreateMultipartUpload returned no upload id".into()))?
            .to_owned();
        // Aborted if this future is dropped before it completes (a scan
        // cancelled mid-copy): no orphaned parts are left to bill.
        let mut pending = PendingUpload {
            s3: s3.clone(),
            bucket: dest.bucket.clone(),
            key: dest.key.clone(),
            upload_id: upload_id.clone(),
            owner: self.owner(&dest.bucket),
            armed: true,
        };
        let result = async {
            let parts = self.copy_parts(object, dest, &upload_id).await?;
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
        pending.armed = false;
        if result.is_err() {
            pending.abort().await;
        }
        result
    }

    /// Every part of `object`, copied in order, each pinned to the scanned
    /// ETag.
    async fn copy_parts(
        &self,
        object: &ObjectInfo,
        dest: &CopyDest,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let s3 = self.s3(&dest.bucket);
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1;
        while start < object.size {
            let end = (start + self.part_size).min(object.size) - 1;
            let out = s3
                .upload_part_copy()
                .bucket(&dest.bucket)
                .key(&dest.key)
                .upload_id(upload_id)
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
        Ok(parts)
    }
}

/// The object's own metadata with the destination's additions.
fn metadata_with_extra(object: &ObjectInfo, dest: &CopyDest) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = object.metadata.iter().cloned().collect();
    metadata.extend(dest.extra_metadata.iter().cloned());
    metadata
}

/// A multipart upload not yet completed: aborted when dropped armed.
struct PendingUpload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    owner: Option<String>,
    armed: bool,
}

impl PendingUpload {
    fn request(&self) -> aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder {
        self.s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .set_expected_bucket_owner(self.owner.clone())
    }

    async fn abort(&self) {
        if let Err(err) = self.request().send().await {
            tracing::warn!(
                "s3://{}/{}: aborting multipart upload {}: {}",
                self.bucket,
                bucketscan_core::object::printable(&self.key),
                self.upload_id,
                crate::aws::error_text(&err)
            );
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let request = self.request();
        let what = format!("s3://{}/{}", self.bucket, bucketscan_core::object::printable(&self.key));
        tracing::warn!("{what}: copy abandoned mid-way; aborting its multipart upload");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = request.send().await {
                    tracing::warn!("{what}: aborting an abandoned multipart upload: {err}");
                }
            });
        }
    }
}
