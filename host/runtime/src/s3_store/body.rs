//! Reading an opened object once, through the spool (memory up to the
//! threshold, else a temp file reserved in the spool budget first),
//! hashing the bytes (SHA-256) on the way.

use super::{bare_etag, real_version};
use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use bucketscan_core::object::{ObjectHeaders, ObjectInfo};
use bucketscan_scan::spool::{SpoolConfig, SpoolError, SpoolWriter};
use bucketscan_scan::store::{Body, FetchError, PendingBody, Target};
use std::collections::HashMap;

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
        let mut writer = SpoolWriter::new(&spool, Some(size), size);
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|err| unavailable(format!("reading the body: {err}")))?
        {
            writer.append(&chunk).map_err(|err| match err {
                SpoolError::NoRoom(why) => FetchError::OverBudget(format!("{url}: {why}")),
                SpoolError::TooLarge { .. } => {
                    unavailable(format!("the body is longer than the {size} bytes announced"))
                }
                SpoolError::Io(why) => unavailable(why),
            })?;
        }
        if writer.written() != size {
            return Err(unavailable(format!("received {} bytes of {size}", writer.written())));
        }
        let spooled = writer.finish().map_err(|err| unavailable(err.to_string()))?;
        Ok(Body {
            bytes: spooled.body,
            sha256: spooled.sha256,
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
        walked_sha256: None,
        member: None,
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
