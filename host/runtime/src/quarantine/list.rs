//! `bucketscan quarantine list`: each held object with the result, finding
//! and date its tags record, and where it came from.

use crate::agent::Agent;
use serde::Serialize;

/// One quarantined object.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub last_modified: Option<String>,
    /// The result tag's value (in the config's tag profile).
    pub result: Option<String>,
    /// The signature tag: the first finding, or the reason.
    pub finding: Option<String>,
    pub scanned: Option<String>,
    /// Where it came from, when its key says (`SOURCE-BUCKET/KEY`).
    pub source: Option<String>,
    /// The SHA-256 S3 keeps for the copy (the agent copies with a SHA-256
    /// checksum): what `release --sha256` wants. `None` when S3 has none.
    pub sha256: Option<String>,
}

/// Why the list stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("s3://{bucket}: {detail}")]
pub struct ListError {
    pub bucket: String,
    pub detail: String,
}

/// Lists `bucket` (one GetObjectTagging per object).
pub async fn list(agent: &Agent, bucket: &str) -> Result<Vec<Held>, ListError> {
    list_first(agent, bucket, usize::MAX).await
}

/// The first `limit` objects of `bucket` in key order: what a page shows
/// when an uploader may have filled the quarantine on purpose.
pub async fn list_first(agent: &Agent, bucket: &str, limit: usize) -> Result<Vec<Held>, ListError> {
    let s3 = agent.clients.s3_for(bucket);
    let keys = &agent.scanner.tag_keys;
    let failed = |detail: String| ListError {
        bucket: bucket.to_owned(),
        detail,
    };
    let mut held = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| failed(crate::aws::error_text(&err)))?;
        for object in page.contents() {
            if held.len() >= limit {
                return Ok(held);
            }
            let Some(key) = object.key() else { continue };
            let tagging = s3
                .get_object_tagging()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|err| failed(format!("{key}: {}", crate::aws::error_text(&err))))?;
            let tags: Vec<(String, String)> = tagging
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect();
            let tag = |name: &str| tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let head = s3
                .head_object()
                .bucket(bucket)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .ok();
            let sha256 = head
                .as_ref()
                .and_then(|head| head.checksum_sha256().map(str::to_owned))
                .and_then(|b64| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok())
                .filter(|digest| digest.len() == 32)
                .map(hex::encode);
            let metadata: Vec<(String, String)> = head
                .as_ref()
                .and_then(|head| head.metadata())
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let source = super::origin(agent, key, &metadata).map(|(b, k)| format!("s3://{b}/{k}"));
            held.push(Held {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: object.size().unwrap_or(0).max(0) as u64,
                last_modified: object.last_modified().map(|t| t.to_string()),
                result: tag(&keys.result),
                finding: tag(&keys.signature),
                scanned: tag(&keys.date),
                source,
                sha256,
            });
        }
    }
    Ok(held)
}
