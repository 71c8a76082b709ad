//! Signature updates without internet: ClamAV database files are synced
//! from a private S3 bucket into clamd's database directory, only when they
//! changed, and clamd is told to RELOAD. Files keep the S3 object's
//! modification time, so the freshness rule (`max-age-secs`) measures the
//! age of the signatures, not of the download.

use bucketscan_core::config::SignaturesConfig;
use bucketscan_engine::Clamd;
use bucketscan_engine::clamd::SIGNATURE_EXTENSIONS;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The ETags of the files this agent synced, kept beside them.
const MANIFEST: &str = ".bucketscan-signatures.json";

/// Syncs once; returns the names of the files that changed.
pub async fn sync_once(s3: &aws_sdk_s3::Client, config: &SignaturesConfig) -> Result<Vec<String>, String> {
    let Some(bucket) = &config.bucket else {
        return Ok(Vec::new());
    };
    let dir = &config.database_dir;
    std::fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    let manifest_path = dir.join(MANIFEST);
    let mut manifest: BTreeMap<String, String> = std::fs::read(&manifest_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut changed = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&config.prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            format!(
                "listing s3://{bucket}/{}: {}",
                config.prefix,
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let name = key.rsplit('/').next().unwrap_or(key);
            let wanted = Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SIGNATURE_EXTENSIONS.contains(&e));
            if !wanted || name.starts_with('.') {
                continue;
            }
            let etag = object.e_tag().unwrap_or_default().to_owned();
            if manifest.get(name) == Some(&etag) && dir.join(name).exists() {
                continue;
            }
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|err| {
                    format!(
                        "downloading s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&err)
                    )
                })?
                .body
                .collect()
                .await
                .map_err(|err| format!("downloading s3://{bucket}/{key}: {err}"))?
                .into_bytes();
            // Write beside, then rename: clamd never loads half a file.
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::write(&partial, &body).map_err(|err| format!("writing {}: {err}", partial.display()))?;
            if let Some(modified) = object.last_modified().and_then(|t| SystemTime::try_from(*t).ok()) {
                let file = std::fs::File::options()
                    .write(true)
                    .open(&partial)
                    .map_err(|err| err.to_string())?;
                file.set_modified(modified).map_err(|err| err.to_string())?;
            }
            std::fs::rename(&partial, dir.join(name)).map_err(|err| format!("installing {name}: {err}"))?;
            manifest.insert(name.to_owned(), etag);
            changed.push(name.to_owned());
        }
    }
    if !changed.is_empty() {
        let json = serde_json::to_vec_pretty(&manifest).expect("a map of strings");
        std::fs::write(&manifest_path, json).map_err(|err| format!("writing {}: {err}", manifest_path.display()))?;
    }
    Ok(changed)
}

/// Syncs now and then every `sync-interval-secs`, reloading clamd after
/// each change. Runs until the task is dropped.
pub async fn keep_synced(s3: aws_sdk_s3::Client, config: SignaturesConfig, clamd: &Clamd) {
    loop {
        match sync_once(&s3, &config).await {
            Ok(changed) if changed.is_empty() => tracing::debug!("signatures up to date"),
            Ok(changed) => {
                tracing::info!(files = ?changed, "signature files updated; reloading clamd");
                if let Err(err) = clamd.reload().await {
                    tracing::error!("clamd RELOAD failed: {err}");
                }
            }
            Err(err) => tracing::error!("signature sync failed: {err}"),
        }
        tokio::time::sleep(Duration::from_secs(config.sync_interval_secs.max(1))).await;
    }
}
