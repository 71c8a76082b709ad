//! `[yara]`: YARA rule sets synced from a private bucket (or read from a
//! local directory), compiled before they are swapped in, hot-reloaded.
//!
//! ```toml
//! [yara]
//! sync-interval-secs = 60
//!
//! [yara.rule-sets.webshells]
//! bucket = "security-rules"
//! prefix = "yara/webshells/"
//! ```
//!
//! Every `*.yar`/`*.yara` file under the prefix is one file of the set,
//! its own namespace. A set whose files do not compile is refused whole,
//! named `KEY:LINE:COLUMN: error`, and the version before keeps running:
//! whoever writes the rules bucket can add detections, never remove the
//! ones running, and never run half a set. Readiness waits for every set's
//! first version; a set whose source could not be read for `max-age-secs`
//! stops scans (`unscannable (stale-signatures)` from the bridge).

use bucketscan_yara::{Library, Limits, RuleFile, RuleSet};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[yara]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct YaraConfig {
    #[serde(default)]
    pub rule_sets: BTreeMap<String, RuleSetSource>,
    /// The largest object a rule set reads whole.
    #[serde(default = "YaraConfig::default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// How long the rules may run over one object.
    #[serde(default = "YaraConfig::default_timeout_secs")]
    pub timeout_secs: u64,
    /// How often the sources are read again.
    #[serde(default = "YaraConfig::default_sync_interval_secs")]
    pub sync_interval_secs: u64,
    /// Scans stop when a set's source could not be read for this long.
    #[serde(default = "YaraConfig::default_max_age_secs")]
    pub max_age_secs: u64,
}

/// Where one rule set's files are: a bucket prefix, or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSetSource {
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    /// A local directory instead (dry runs, tests, rules baked into an
    /// image), relative to the config file.
    pub path: Option<PathBuf>,
}

/// Files one set may have, and bytes one file and the whole set may
/// take: a rules bucket cannot make the agents download without end.
const MAX_FILES: usize = 1_000;
const MAX_FILE_BYTES: u64 = 4 << 20;
const MAX_SET_BYTES: u64 = 64 << 20;

impl YaraConfig {
    fn default_max_object_bytes() -> u64 {
        64 << 20
    }
    fn default_timeout_secs() -> u64 {
        10
    }
    fn default_sync_interval_secs() -> u64 {
        60
    }
    fn default_max_age_secs() -> u64 {
        2 * 24 * 3600
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        for (name, source) in &self.rule_sets {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Some(format!("[yara.rule-sets.{name}]: a name of letters, digits, - and _"));
            }
            if source.bucket.is_some() == source.path.is_some() {
                return Some(format!(
                    "[yara.rule-sets.{name}]: give bucket (and prefix) or path, one of them"
                ));
            }
        }
        if self.timeout_secs == 0 || self.sync_interval_secs == 0 {
            return Some("[yara] timeout-secs and sync-interval-secs: at least 1".into());
        }
        None
    }

    /// An empty library of the configured sets.
    pub fn library(&self) -> Library {
        Library::new(
            self.rule_sets.keys().cloned(),
            Limits {
                max_object_bytes: self.max_object_bytes,
                timeout: Duration::from_secs(self.timeout_secs),
                max_age: Some(Duration::from_secs(self.max_age_secs)),
            },
        )
    }
}

/// Keeps a library's sets in step with their sources.
#[derive(Clone)]
pub struct RuleKeeper {
    pub config: YaraConfig,
    pub library: Arc<Library>,
    pub s3: aws_sdk_s3::Client,
    /// Where relative `path`s are.
    pub base_dir: PathBuf,
    /// Files already downloaded, by key: (ETag, text). Unchanged files are
    /// not downloaded again.
    cache: Arc<Mutex<HashMap<String, (String, String)>>>,
}

impl RuleKeeper {
    pub fn new(config: YaraConfig, library: Arc<Library>, s3: aws_sdk_s3::Client, base_dir: PathBuf) -> Self {
        Self {
            config,
            library,
            s3,
            base_dir,
            cache: Arc::default(),
        }
    }

    /// Syncs every set now, then again every interval, for ever.
    pub async fn run(self) {
        loop {
            self.sync_all().await;
            tokio::time::sleep(Duration::from_secs(self.config.sync_interval_secs)).await;
        }
    }

    /// One round over every set.
    pub async fn sync_all(&self) {
        for (name, source) in &self.config.rule_sets {
            self.sync(name, source).await;
        }
    }

    async fn sync(&self, name: &str, source: &RuleSetSource) {
        let files = match self.read(source).await {
            Ok(files) => files,
            Err(why) => {
                tracing::error!(rule_set = name, "reading the rule set: {why}");
                self.library.refuse(name, why);
                return;
            }
        };
        let running = self.library.version(name);
        let set_name = name.to_owned();
        let compiled = tokio::task::spawn_blocking(move || RuleSet::compile(&set_name, &files)).await;
        match compiled {
            Ok(Ok(set)) if running.as_deref() == Some(set.version()) => self.library.confirm(name),
            Ok(Ok(set)) => {
                tracing::info!(
                    rule_set = name,
                    version = set.version(),
                    files = set.files().len(),
                    previous = running.as_deref().unwrap_or("none"),
                    "YARA rule set compiled and swapped in"
                );
                self.library.install(set);
            }
            Ok(Err(err)) => {
                let why = format!(
                    "does not compile, refused (version {} keeps running): {err}",
                    running.as_deref().unwrap_or("none")
                );
                tracing::error!(rule_set = name, "{why}");
                self.library.refuse(name, err.to_string());
            }
            Err(join) => self.library.refuse(name, format!("the compiler failed: {join}")),
        }
    }

    async fn read(&self, source: &RuleSetSource) -> Result<Vec<RuleFile>, String> {
        match (&source.bucket, &source.path) {
            (Some(bucket), _) => self.read_bucket(bucket, &source.prefix).await,
            (None, Some(path)) => read_dir(&self.base_dir.join(path)),
            (None, None) => Err("no source".into()),
        }
    }

    /// Every rules file under the prefix, each downloaded only when its
    /// ETag changed.
    async fn read_bucket(&self, bucket: &str, prefix: &str) -> Result<Vec<RuleFile>, String> {
        let mut listed = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|err| format!("listing s3://{bucket}/{prefix}: {}", crate::aws::error_text(&err)))?;
            for object in page.contents() {
                let (Some(key), Some(etag)) = (object.key(), object.e_tag()) else {
                    continue;
                };
                if is_rules_file(key) {
                    listed.push((
                        key.to_owned(),
                        etag.to_owned(),
                        object.size().unwrap_or(0).max(0) as u64,
                    ));
                }
            }
        }
        check_sizes(listed.iter().map(|(key, _, size)| (key.as_str(), *size)))?;
        let mut files = Vec::with_capacity(listed.len());
        for (key, etag, _) in listed {
            let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
            let source = match cached {
                Some((cached_etag, text)) if cached_etag == etag => text,
                _ => {
                    let text = self.download(bucket, &key).await?;
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    cache.insert(key.clone(), (etag, text.clone()));
                    text
                }
            };
            let name = key.strip_prefix(prefix).unwrap_or(&key).to_owned();
            files.push(RuleFile { name, source });
        }
        Ok(files)
    }

    async fn download(&self, bucket: &str, key: &str) -> Result<String, String> {
        let object = self.s3.get_object().bucket(bucket).key(key).send().await;
        let object = object.map_err(|err| format!("reading s3://{bucket}/{key}: {}", crate::aws::error_text(&err)))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|err| format!("reading s3://{bucket}/{key}: {err}"))?
            .into_bytes();
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("s3://{bucket}/{key}: over {MAX_FILE_BYTES} bytes"));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("s3://{bucket}/{key}: not UTF-8 text"))
    }
}

fn is_rules_file(name: &str) -> bool {
    name.ends_with(".yar") || name.ends_with(".yara")
}

fn check_sizes<'a>(files: impl Iterator<Item = (&'a str, u64)>) -> Result<(), String> {
    let (mut count, mut total) = (0usize, 0u64);
    for (name, size) in files {
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "{name}: {size} bytes, over {MAX_FILE_BYTES} for one rules file"
            ));
        }
        count += 1;
        total += size;
    }
    if count > MAX_FILES || total > MAX_SET_BYTES {
        return Err(format!(
            "{count} files of {total} bytes: a rule set may have {MAX_FILES} files and {MAX_SET_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The rules files of a directory (not its subdirectories).
fn read_dir(dir: &std::path::Path) -> Result<Vec<RuleFile>, String> {
    let entries = std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|err| format!("{}: {err}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !path.is_file() || !is_rules_file(&name) {
            continue;
        }
        let size = path.metadata().map(|m| m.len()).unwrap_or(0);
        check_sizes(std::iter::once((name.as_str(), size)))?;
        let source = std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        files.push(RuleFile { name, source });
    }
    check_sizes(files.iter().map(|f| (f.name.as_str(), f.source.len() as u64)))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_one_of_bucket_or_path_and_names_are_plain() {
        let parse = |text: &str| toml::from_str::<YaraConfig>(text).unwrap().problem();
        assert_eq!(parse("[rule-sets.a]\nbucket = \"b\"\nprefix = \"y/\"\n"), None);
        assert_eq!(parse("[rule-sets.a]\npath = \"rules\"\n"), None);
        assert!(
            parse("[rule-sets.a]\nbucket = \"b\"\npath = \"r\"\n")
                .unwrap()
                .contains("one of them")
        );
        assert!(parse("[rule-sets.a]\n").unwrap().contains("one of them"));
        assert!(
            parse("[rule-sets.\"a b\"]\npath = \"r\"\n")
                .unwrap()
                .contains("letters, digits")
        );
    }

    #[test]
    fn a_directory_gives_its_rules_files_and_sizes_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yar"), "rule a { condition: true }").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not rules").unwrap();
        let files = read_dir(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "a.yar");
        let big = check_sizes([("big.yar", MAX_FILE_BYTES + 1)].into_iter()).unwrap_err();
        assert!(big.starts_with("big.yar: "), "{big}");
        let many = check_sizes((0..=MAX_FILES).map(|_| ("x.yar", 1))).unwrap_err();
        assert!(many.contains("1001 files"), "{many}");
    }
}
