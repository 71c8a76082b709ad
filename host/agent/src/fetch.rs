//! Fetching one object version, once: metadata, tags and bytes. Small
//! objects stay in memory; larger ones are streamed to a temp file (removed
//! when the scan is done), so memory stays bounded for multi-GB objects.

use aws_sdk_s3::error::SdkError;
use bucketscan_core::events::ObjectEvent;
use bucketscan_core::object::{ObjectBody, ObjectInfo, SpooledFile};
use bucketscan_engine::ScanObject;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Where and from what size objects are spooled to disk.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub threshold_bytes: u64,
    pub dir: PathBuf,
}

/// Why an object could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The object (or that version) no longer exists: nothing to scan.
    #[error("s3://{bucket}/{key} no longer exists")]
    Gone { bucket: String, key: String },
    /// The key now holds a different object than the event reported; the
    /// newer upload has its own event.
    #[error("s3://{bucket}/{key} changed since the event (event ETag {event}, now {now})")]
    Changed {
        bucket: String,
        key: String,
        event: String,
        now: String,
    },
    /// Worth retrying: S3 errors, throttling, a broken transfer.
    #[error("fetching s3://{bucket}/{key}: {message}")]
    Transient {
        bucket: String,
        key: String,
        message: String,
    },
}

/// Removes the quotes S3 puts around ETags.
pub fn bare_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn is_not_found<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => {
            matches!(
                service.err().code(),
                Some("NoSuchKey" | "NotFound" | "NoSuchVersion" | "404")
            )
        }
        _ => false,
    }
}

/// Fetches the object version `event` names.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    event: &ObjectEvent,
    spool: &SpoolConfig,
) -> Result<ScanObject, FetchError> {
    let (bucket, key) = (event.bucket.clone(), event.key.clone());
    let transient = |message: String| FetchError::Transient {
        bucket: bucket.clone(),
        key: key.clone(),
        message,
    };
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .set_version_id(event.version_id.clone())
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(err) if is_not_found(&err) || raw_status(&err) == Some(404) => {
            return Err(FetchError::Gone { bucket, key });
        }
        Err(err) => {
            return Err(transient(format!(
                "HeadObject: {}",
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )));
        }
    };
    let etag = head.e_tag().map(bare_etag);
    if let (Some(expected), Some(now), None) = (event.etag.as_deref(), etag.as_deref(), event.version_id.as_deref()) {
        if bare_etag(expected) != now {
            return Err(FetchError::Changed {
                bucket,
                key,
                event: expected.to_owned(),
                now: now.to_owned(),
            });
        }
    }
    let version_id = head.version_id().map(str::to_owned).or(event.version_id.clone());
    let size = head.content_length().unwrap_or_default().max(0) as u64;

    let tags = object_tags(s3, &bucket, &key, version_id.as_deref())
        .await
        .map_err(transient)?;

    // Pin the exact version and bytes the head described.
    let mut object = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .set_version_id(version_id.clone())
        .set_if_match(etag.as_ref().map(|e| format!("\"{e}\"")))
        .send()
        .await
        .map_err(|err| transient(format!("GetObject: {}", aws_sdk_s3::error::DisplayErrorContext(&err))))?;

    let body = if size <= spool.threshold_bytes {
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|err| transient(format!("reading the body: {err}")))?
            .into_bytes();
        ObjectBody::from_bytes(bytes.to_vec())
    } else {
        std::fs::create_dir_all(&spool.dir)
            .map_err(|err| transient(format!("spool dir {}: {err}", spool.dir.display())))?;
        let file = tempfile::Builder::new()
            .prefix("bucketscan-")
            .tempfile_in(&spool.dir)
            .map_err(|err| transient(format!("spool file in {}: {err}", spool.dir.display())))?;
        let (mut file, path) = file.keep().map_err(|err| transient(format!("spool file: {err}")))?;
        // From here on the file is removed when `spooled` drops, also on error.
        let spooled = SpooledFile::temporary(path).map_err(|err| transient(format!("spool file: {err}")))?;
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|err| transient(format!("reading the body: {err}")))?
        {
            file.write_all(&chunk)
                .map_err(|err| transient(format!("writing the spool file: {err}")))?;
        }
        file.flush()
            .map_err(|err| transient(format!("writing the spool file: {err}")))?;
        ObjectBody::File(Arc::new(spooled))
    };
    let received = body.len().map_err(|err| transient(err.to_string()))?;
    if received != size {
        return Err(transient(format!("received {received} bytes of {size}")));
    }
    Ok(ScanObject {
        info: Arc::new(ObjectInfo {
            bucket,
            key,
            version_id,
            size,
            etag,
            content_type: head.content_type().map(str::to_owned),
            metadata: head
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            tags,
        }),
        body,
    })
}

/// The tags of one object version (the current version when `None`).
pub async fn object_tags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let out = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .send()
        .await
        .map_err(|err| format!("GetObjectTagging: {}", aws_sdk_s3::error::DisplayErrorContext(&err)))?;
    Ok(out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect())
}

fn raw_status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(|response| response.status_u16())
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
