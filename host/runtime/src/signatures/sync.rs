//! Database files synced from a private S3 bucket into clamd's database
//! directory: only what changed is downloaded (by ETag), each file written
//! beside its final name and renamed into place (clamd never loads half a
//! file), files whose key disappeared are removed, and the record of what
//! came from where is kept beside them, keyed by the full S3 key.
//!
//! Two keys that would land on the same file name (`a/daily.cvd` and
//! `b/daily.cvd`) are refused, both named: one would silently replace the
//! other. What the bucket may install at all is [`super::trust`]'s call:
//! refused files are named in [`Synced::refused`], never installed, and a
//! refused new version leaves the version installed before in place.

use super::SignaturesConfig;
use super::database::SIGNATURE_EXTENSIONS;
use super::trust::TrustPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The record of synced files, beside them.
const MANIFEST: &str = ".bucketscan-signatures.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// S3 key -> what was installed from it.
    files: BTreeMap<String, Installed>,
    /// S3 key -> the ETag whose content was refused, and why (not
    /// downloaded again until it changes).
    #[serde(default)]
    refused: BTreeMap<String, (String, String)>,
    /// File name -> the highest container version ever installed under
    /// it: a floor that outlives the file, so that deleting a database
    /// (or offering it under a second key) does not open the way to an
    /// older one.
    #[serde(default)]
    highest: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Installed {
    file: String,
    etag: String,
}

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub installed: Vec<String>,
    pub removed: Vec<String>,
    /// Files in the bucket that are not installed, and why.
    pub refused: Vec<String>,
}

impl Synced {
    pub fn changed(&self) -> bool {
        !self.installed.is_empty() || !self.removed.is_empty()
    }
}

/// Why a sync stopped: nothing is half-installed (files are renamed into
/// place), and the next round tries again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// S3 refused or failed a request.
    #[error("{doing}: {detail}")]
    S3 { doing: String, detail: String },
    /// The local database directory could not be written.
    #[error("{doing}: {detail}")]
    Local { doing: String, detail: String },
    /// Two keys under the prefix would install as one file.
    #[error(
        "s3://{bucket}/{first} and s3://{bucket}/{second} would both be installed as `{file}`; \
         keep one database file per name under the prefix"
    )]
    Collision {
        bucket: String,
        first: String,
        second: String,
        file: String,
    },
}

fn s3_failed(doing: String, detail: impl std::fmt::Display) -> SyncError {
    SyncError::S3 {
        doing,
        detail: detail.to_string(),
    }
}

fn local_failed(doing: String, detail: impl std::fmt::Display) -> SyncError {
    SyncError::Local {
        doing,
        detail: detail.to_string(),
    }
}

/// Refuses a container older (by the version in its header) than the one
/// installed under the same file name: an old, validly signed database
/// must not roll the signatures back.
fn no_downgrade(key: &str, offered: &[u8], installed: &Path, floor: Option<u64>) -> Result<(), super::trust::Refused> {
    let name = installed.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let Some(offered) = container_version(name, offered) else {
        return Ok(());
    };
    let current = std::fs::read(installed)
        .ok()
        .and_then(|bytes| container_version(name, &bytes));
    let Some(installed) = current.into_iter().chain(floor).max() else {
        return Ok(());
    };
    if offered < installed {
        return Err(super::trust::Refused::Downgrade {
            key: key.to_owned(),
            offered,
            installed,
        });
    }
    Ok(())
}

/// The version in a signed container's header (`.cvd`, `.cld`, `.cud`).
fn container_version(file: &str, bytes: &[u8]) -> Option<u64> {
    super::database::parse_header(file, bytes)
        .ok()
        .map(|build| build.version)
}

/// Syncs once. Without a bucket in the config nothing is synced.
pub async fn sync_once(s3: &aws_sdk_s3::Client, config: &SignaturesConfig) -> Result<Synced, SyncError> {
    let Some(bucket) = &config.bucket else {
        return Ok(Synced::default());
    };
    let dir = &config.database_dir;
    std::fs::create_dir_all(dir).map_err(|err| local_failed(format!("creating {}", dir.display()), err))?;
    let manifest_path = dir.join(MANIFEST);
    let mut manifest: Manifest = std::fs::read(&manifest_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();

    let policy = config.trust_policy();
    let mut synced = Synced::default();
    let listed = list_wanted(s3, bucket, config, &policy, &mut synced).await?;
    check_one_key_per_file(bucket, &listed)?;
    let mut refused_changed = false;
    for (key, (file, etag)) in &listed {
        let installed = Installed {
            file: file.clone(),
            etag: etag.clone(),
        };
        let at = Download { s3, bucket, key, dir };
        refused_changed |= install(at, installed, &policy, &mut manifest, &mut synced).await?;
    }
    // Refusals of keys that are gone are forgotten with them.
    let before = manifest.refused.len();
    manifest.refused.retain(|key, _| listed.contains_key(key));
    refused_changed |= manifest.refused.len() != before;
    remove_gone(dir, &listed, &mut manifest, &mut synced)?;
    if synced.changed() || refused_changed {
        let json = serde_json::to_vec_pretty(&manifest).expect("a map of strings");
        std::fs::write(&manifest_path, json)
            .map_err(|err| local_failed(format!("writing {}", manifest_path.display()), err))?;
    }
    Ok(synced)
}

/// What is listed under the prefix and wanted: key -> (file name, ETag).
/// Keys refused by name are never downloaded (an earlier install of one,
/// from before the config said otherwise, goes like a deleted key).
async fn list_wanted(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    config: &SignaturesConfig,
    policy: &TrustPolicy,
    synced: &mut Synced,
) -> Result<BTreeMap<String, (String, String)>, SyncError> {
    let mut listed: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&config.prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            s3_failed(
                format!("listing s3://{bucket}/{}", config.prefix),
                crate::aws::error_text(&err),
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
            if let Err(refused) = policy.admit_name(key) {
                synced.refused.push(refused.to_string());
                continue;
            }
            listed.insert(
                key.to_owned(),
                (name.to_owned(), object.e_tag().unwrap_or_default().to_owned()),
            );
        }
    }
    Ok(listed)
}

/// Two keys that would install as one file name: refused by name, since
/// whichever came last would silently win.
fn check_one_key_per_file(bucket: &str, listed: &BTreeMap<String, (String, String)>) -> Result<(), SyncError> {
    let mut by_file: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, (file, _)) in listed {
        if let Some(other) = by_file.insert(file, key) {
            return Err(SyncError::Collision {
                bucket: bucket.to_owned(),
                first: other.to_owned(),
                second: key.clone(),
                file: file.clone(),
            });
        }
    }

    Ok(())
}

/// Where one signature file comes from and goes to.
struct Download<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
    dir: &'a Path,
}

/// Installs one listed key unless it is installed already or was refused
/// as it is: downloaded, checked against the trust policy and the version
/// floor, written beside and renamed into place. Returns whether the
/// record of refusals changed.
async fn install(
    at: Download<'_>,
    current: Installed,
    policy: &TrustPolicy,
    manifest: &mut Manifest,
    synced: &mut Synced,
) -> Result<bool, SyncError> {
    let Download { s3, bucket, key, dir } = at;
    let (file, etag) = (&current.file, &current.etag);
    if manifest.files.get(key) == Some(&current) && dir.join(file).exists() {
        return Ok(false);
    }
    if let Some((refused_etag, why)) = manifest.refused.get(key)
        && refused_etag == etag
    {
        synced.refused.push(why.clone());
        return Ok(false);
    }
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| s3_failed(format!("downloading s3://{bucket}/{key}"), crate::aws::error_text(&err)))?
        .body
        .collect()
        .await
        .map_err(|err| s3_failed(format!("downloading s3://{bucket}/{key}"), err))?
        .into_bytes();
    let refusal = policy
        .admit_content(key, &body)
        .and_then(|()| no_downgrade(key, &body, &dir.join(file), manifest.highest.get(file).copied()));
    if let Err(refused) = refusal {
        synced.refused.push(refused.to_string());
        manifest
            .refused
            .insert(key.to_owned(), (etag.clone(), refused.to_string()));
        return Ok(true);
    }
    let refused_changed = manifest.refused.remove(key).is_some();
    // Write beside, then rename: clamd never loads half a file.
    let partial = dir.join(format!(".{file}.partial"));
    std::fs::write(&partial, &body).map_err(|err| local_failed(format!("writing {}", partial.display()), err))?;
    std::fs::rename(&partial, dir.join(file)).map_err(|err| local_failed(format!("installing {file}"), err))?;
    if let Some(version) = container_version(file, &body) {
        let floor = manifest.highest.entry(file.clone()).or_default();
        *floor = (*floor).max(version);
    }
    manifest.files.insert(key.to_owned(), current);
    synced.installed.push(key.to_owned());
    Ok(refused_changed)
}

/// Keys that are gone take their files with them (unless another key
/// still installs the same file).
fn remove_gone(
    dir: &Path,
    listed: &BTreeMap<String, (String, String)>,
    manifest: &mut Manifest,
    synced: &mut Synced,
) -> Result<(), SyncError> {
    let gone: Vec<String> = manifest
        .files
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        let installed = manifest.files.remove(&key).expect("listed above");
        let still_used = manifest.files.values().any(|i| i.file == installed.file);
        if !still_used {
            match std::fs::remove_file(dir.join(&installed.file)) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(local_failed(format!("removing {}", installed.file), err)),
            }
        }
        synced.removed.push(key);
    }
    Ok(())
}
