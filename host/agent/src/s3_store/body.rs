//! Reading an opened object once: in memory up to the spool threshold,
//! otherwise into a temp file reserved in the spool budget first, hashing
//! the bytes (SHA-256) on the way.

use super::{SpoolConfig, bare_etag, real_version};
use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use bucketscan_core::object::{ObjectBody, ObjectHeaders, ObjectInfo, SpooledFile};
use bucketscan_scan::store::{Body, FetchError, PendingBody, Target};
use sha2::Digest;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

/// The body of an opened object.
pub(super) struct S3Body {
    pub(super) object: GetObjectOutput,
    pub(super) size: u64,
    pub(super) url: String,
    pub(super) spool: SpoolConfig,
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

pub(super) fn info_of(target: &Target, object: &GetObjectOutput) -> ObjectInfo {
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

pub(super) fn pairs(map: Option<&HashMap<String, String>>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs
}
