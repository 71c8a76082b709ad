//! The pipeline config file (TOML): plugins, buckets and their stages, host
//! limits and the clamd address.
//!
//! ```toml
//! [clamav]
//! address = "127.0.0.1:3310"
//!
//! [plugins.clamav-bridge]
//! path = "plugins/clamav_bridge.wasm"
//! sha256 = "…"                      # optional pin
//!
//! [buckets.production]              # written to, never scanned
//!
//! [buckets.staging]
//! [[buckets.staging.stages]]
//! plugin = "clamav-bridge"
//! grants = { clamav = true }
//! ```
//!
//! Every error names the file, the line and the field at fault.

use crate::grants::Grants;
use crate::pipeline::ResultName;
use crate::tags::{self, TagKeys};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A config file error: `FILE:LINE:COLUMN: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position (the file could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub host: HostLimits,
    #[serde(default)]
    pub clamav: ClamavConfig,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginDecl>,
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketConfig>,
    /// How `bucketscan run` consumes events.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The keys of the result tags written on scanned objects.
    #[serde(default)]
    pub tags: TagKeys,
    /// Where every result is published.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// Signature database updates from S3, and how old it may get.
    pub signatures: Option<SignaturesConfig>,
    /// The file this was read from; relative plugin paths resolve against
    /// its directory.
    #[serde(skip)]
    pub source: PathBuf,
    /// The text it was parsed from, so later errors (a plugin that fails to
    /// load) point at the right line even if the file changed since.
    #[serde(skip)]
    pub text: std::sync::Arc<str>,
}

/// Sandbox limits for every plugin instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostLimits {
    /// Linear memory one plugin instance may grow to, in MiB.
    #[serde(default = "defaults::memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// Core and component instances one plugin may create.
    #[serde(default = "defaults::instance_limit")]
    pub instance_limit: u32,
    /// Tables one plugin may create, and elements per table.
    #[serde(default = "defaults::table_limit")]
    pub table_limit: u32,
    #[serde(default = "defaults::table_elements_limit")]
    pub table_elements_limit: u32,
    /// Time one stage may spend running its own Wasm code (host calls such
    /// as a ClamAV scan do not count), in milliseconds.
    #[serde(default = "defaults::wasm_time_limit_ms")]
    pub wasm_time_limit_ms: u64,
    /// Wall-clock time one stage may take in all, host calls included.
    #[serde(default = "defaults::stage_timeout_ms")]
    pub stage_timeout_ms: u64,
    /// Use wasmtime's pooling allocator (falls back to on-demand allocation
    /// when the machine cannot reserve the address space).
    #[serde(default = "defaults::yes")]
    pub pooling: bool,
    /// Where compiled plugins are cached, keyed by content digest.
    /// Default: `$XDG_CACHE_HOME/bucketscan` or `~/.cache/bucketscan`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            memory_limit_mib: defaults::memory_limit_mib(),
            instance_limit: defaults::instance_limit(),
            table_limit: defaults::table_limit(),
            table_elements_limit: defaults::table_elements_limit(),
            wasm_time_limit_ms: defaults::wasm_time_limit_ms(),
            stage_timeout_ms: defaults::stage_timeout_ms(),
            pooling: true,
            cache_dir: None,
        }
    }
}

/// How to reach clamd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClamavConfig {
    /// `HOST:PORT` for TCP, or a path to clamd's local socket.
    #[serde(default = "defaults::clamd_address")]
    pub address: String,
    /// Seconds to wait for one scan.
    #[serde(default = "defaults::clamd_timeout_secs")]
    pub timeout_secs: u64,
    /// clamd's `StreamMaxLength`: larger objects are reported as a size-limit
    /// error without streaming them.
    #[serde(default = "defaults::stream_max_bytes")]
    pub stream_max_bytes: u64,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        Self {
            address: defaults::clamd_address(),
            timeout_secs: defaults::clamd_timeout_secs(),
            stream_max_bytes: defaults::stream_max_bytes(),
        }
    }
}

mod defaults {
    pub fn memory_limit_mib() -> u64 {
        128
    }
    pub fn instance_limit() -> u32 {
        64
    }
    pub fn table_limit() -> u32 {
        32
    }
    pub fn table_elements_limit() -> u32 {
        200_000
    }
    pub fn wasm_time_limit_ms() -> u64 {
        5_000
    }
    pub fn stage_timeout_ms() -> u64 {
        600_000
    }
    pub fn yes() -> bool {
        true
    }
    pub fn clamd_address() -> String {
        "127.0.0.1:3310".into()
    }
    pub fn clamd_timeout_secs() -> u64 {
        300
    }
    /// 2000 MiB: what `deploy/clamd.conf` sets as clamd's StreamMaxLength.
    pub fn stream_max_bytes() -> u64 {
        2000 * 1024 * 1024
    }
    pub fn spool_budget_bytes() -> u64 {
        8 * 1024 * 1024 * 1024
    }
    pub fn reload_timeout_secs() -> u64 {
        120
    }
    pub fn sync_interval_secs() -> u64 {
        300
    }
    pub fn max_age_secs() -> u64 {
        2 * 24 * 3600
    }
    pub fn multipart_copy_threshold_bytes() -> u64 {
        5 * 1024 * 1024 * 1024
    }
    pub fn multipart_copy_part_bytes() -> u64 {
        512 * 1024 * 1024
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn visibility_timeout_secs() -> u64 {
        120
    }
    pub fn wait_time_secs() -> u64 {
        20
    }
    pub fn retry_backoff_secs() -> u64 {
        30
    }
    pub fn spool_threshold_bytes() -> u64 {
        16 * 1024 * 1024
    }
}

/// The agent: `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    /// SQS queue URLs carrying S3 event notifications.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Objects scanned at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Visibility timeout set on received messages and extended while a
    /// scan runs, in seconds.
    #[serde(default = "defaults::visibility_timeout_secs")]
    pub visibility_timeout_secs: u64,
    /// SQS long-poll wait, in seconds (0-20).
    #[serde(default = "defaults::wait_time_secs")]
    pub wait_time_secs: u64,
    /// A message that could not be handled comes back after this many
    /// seconds times its receive count (at most 15 minutes).
    #[serde(default = "defaults::retry_backoff_secs")]
    pub retry_backoff_secs: u64,
    /// Objects larger than this are spooled to a temp file, not memory.
    #[serde(default = "defaults::spool_threshold_bytes")]
    pub spool_threshold_bytes: u64,
    /// Where spool files go (default: the system temp dir).
    pub spool_dir: Option<PathBuf>,
    /// Bytes all objects spooled at once may take on disk. An object that
    /// does not fit now waits for a retry; nothing else is affected.
    #[serde(default = "defaults::spool_budget_bytes")]
    pub spool_budget_bytes: u64,
    /// The largest object any pipeline scans (a bucket may set its own):
    /// larger ones are `unscannable (too-large)` without being downloaded.
    /// Default: `[clamav] stream-max-bytes`.
    pub max_object_bytes: Option<u64>,
    /// The key that seals result tags, so agents trust only their own
    /// (and each other's, when they share it). Without it each process
    /// uses a random key: its seals mean nothing to other agents.
    pub seal_key: Option<SecretSource>,
    /// Identifies this agent in notifications (default: host name and pid).
    pub agent_id: Option<String>,
    /// Force path-style S3 addressing (always on with AWS_ENDPOINT_URL).
    #[serde(default)]
    pub path_style: bool,
    /// Copies of objects larger than this use multipart UploadPartCopy
    /// (S3's single CopyObject stops at 5 GiB, the default).
    #[serde(default = "defaults::multipart_copy_threshold_bytes")]
    pub multipart_copy_threshold_bytes: u64,
    /// Part size of multipart copies (S3: 5 MiB to 5 GiB).
    #[serde(default = "defaults::multipart_copy_part_bytes")]
    pub multipart_copy_part_bytes: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            concurrency: defaults::concurrency(),
            visibility_timeout_secs: defaults::visibility_timeout_secs(),
            wait_time_secs: defaults::wait_time_secs(),
            retry_backoff_secs: defaults::retry_backoff_secs(),
            spool_threshold_bytes: defaults::spool_threshold_bytes(),
            spool_dir: None,
            spool_budget_bytes: defaults::spool_budget_bytes(),
            max_object_bytes: None,
            seal_key: None,
            agent_id: None,
            path_style: false,
            multipart_copy_threshold_bytes: defaults::multipart_copy_threshold_bytes(),
            multipart_copy_part_bytes: defaults::multipart_copy_part_bytes(),
        }
    }
}

/// `[signatures]`: ClamAV databases synced from a private S3 bucket into
/// clamd's database directory, and the freshness rule for scans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignaturesConfig {
    /// clamd's `DatabaseDirectory` (shared with clamd).
    pub database_dir: PathBuf,
    /// The bucket holding the database files; without it nothing is synced
    /// and only the freshness rule applies.
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    /// How often to look for new files, in seconds.
    #[serde(default = "defaults::sync_interval_secs")]
    pub sync_interval_secs: u64,
    /// Scans are `unscannable (stale-signatures)` when the newest database
    /// clamd has loaded was built longer ago than this, in seconds
    /// (default two days). The build time comes from the databases
    /// themselves (the header of `.cvd`, `.cld` and `.cud` files), never
    /// from file times.
    #[serde(default = "defaults::max_age_secs")]
    pub max_age_secs: u64,
    /// How long clamd may take to load a synced database before the agent
    /// counts the reload as failed, in seconds.
    #[serde(default = "defaults::reload_timeout_secs")]
    pub reload_timeout_secs: u64,
}

/// `[notifications]`: an SNS topic for every result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotificationsConfig {
    pub topic_arn: Option<String>,
}

/// A plugin declaration: `[plugins.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginDecl {
    /// The component file, relative to the config file's directory.
    pub path: Spanned<PathBuf>,
    /// Optional sha256 of the file (hex); a different file is refused.
    pub sha256: Option<Spanned<String>>,
}

/// A bucket: `[buckets.NAME]`. A bucket without stages is only a target
/// that stages may be granted to write to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BucketConfig {
    /// A role to assume for this bucket (cross-account scanning): the
    /// central agent reads, tags and writes the bucket with its credentials.
    pub role_arn: Option<String>,
    /// The external ID the role's trust policy requires.
    pub external_id: Option<String>,
    /// The account that must own the bucket (12 digits): every request to
    /// it carries `ExpectedBucketOwner`, so a bucket re-created under
    /// another account is never read from or written to.
    pub expected_owner: Option<Spanned<String>>,
    /// The largest object this bucket's pipelines scan (default: `[agent]
    /// max-object-bytes`).
    pub max_object_bytes: Option<u64>,
    /// The pipeline for keys no `prefixes` entry matches.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Pipelines for key prefixes; the longest matching prefix wins.
    #[serde(default)]
    pub prefixes: Vec<PrefixConfig>,
}

/// `[[buckets.NAME.prefixes]]`: a pipeline for keys under one prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrefixConfig {
    pub prefix: Spanned<String>,
    pub stages: Vec<StageConfig>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageConfig {
    /// A name declared under `[plugins]`.
    pub plugin: Spanned<String>,
    /// The plugin's own settings, handed to it as strings.
    #[serde(default = "unspanned")]
    pub settings: Spanned<BTreeMap<String, toml::Value>>,
    /// Capabilities this stage may use.
    #[serde(default = "unspanned")]
    pub grants: Spanned<Grants>,
    /// For actions: the verdicts the stage runs on (all when absent).
    #[serde(default = "unspanned")]
    pub on: Spanned<Vec<ResultName>>,
    /// The key the host signs this stage's outbound HTTP requests with.
    pub signing_secret: Option<Spanned<SecretSource>>,
}

/// Where a secret comes from: an environment variable of the agent or a
/// file (e.g. a mounted secret). Never the config file itself, and never
/// handed to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret; the error names where it looked.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        let secret = match self {
            Self::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set"))?
                .into_bytes(),
            Self::File(path) => {
                std::fs::read(path).map_err(|err| format!("cannot read `{}`: {err}", path.display()))?
            }
        };
        // A trailing newline from `echo secret > file` is not part of it.
        let trimmed = secret.trim_ascii_end();
        if trimmed.len() < 16 {
            return Err(format!("the secret from {self} is shorter than 16 bytes"));
        }
        Ok(trimmed.to_vec())
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "environment variable `{name}`"),
            Self::File(path) => write!(f, "file `{}`", path.display()),
        }
    }
}

impl StageConfig {
    /// The plugin's settings as the contract hands them over: strings, TOML
    /// arrays joined with commas. Validated by [`Config::parse`].
    pub fn settings(&self) -> Vec<(String, String)> {
        self.settings
            .get_ref()
            .iter()
            .map(|(key, value)| (key.clone(), setting_string(value).unwrap_or_default()))
            .collect()
    }
}

/// The default of an optional spanned field: no position in the file.
fn unspanned<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

fn setting_string(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(items) => {
            let parts: Result<Vec<String>, _> = items
                .iter()
                .map(|item| match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        Err("arrays in settings may hold only strings, numbers and booleans")
                    }
                    scalar => setting_string(scalar),
                })
                .collect();
            Ok(parts?.join(","))
        }
        toml::Value::Table(_) => Err("settings values may not be tables"),
    }
}

/// Where a pipeline applies: a bucket and, optionally, a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineScope<'a> {
    pub bucket: &'a str,
    pub prefix: Option<&'a str>,
}

impl fmt::Display for PipelineScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(prefix) => write!(f, "bucket `{}` prefix `{prefix}`", self.bucket),
            None => write!(f, "bucket `{}`", self.bucket),
        }
    }
}

/// Where the agent's config comes from: a file, or (in a container) an
/// environment variable holding the whole TOML text, which ECS can fill
/// from an SSM parameter or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Env(String),
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Self::File(path) => Config::load(path),
            Self::Env(name) => {
                // Errors read `$NAME:LINE:COL: …`; relative plugin paths
                // resolve against the working directory.
                let label = PathBuf::from(format!("${name}"));
                let text = std::env::var(name).map_err(|_| ConfigError {
                    file: label.clone(),
                    line: 0,
                    column: 0,
                    message: "environment variable is not set (or not UTF-8)".into(),
                })?;
                Config::parse(&text, &label)
            }
        }
    }

    /// The file to watch for changes, if the config is a file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Env(_) => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(name) => write!(f, "${name}"),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read config: {err}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let located = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((0, 0), |span| line_column(text, span.start));
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let mut config: Config = toml::from_str(text).map_err(|err| located(err.span(), err.message().to_owned()))?;
        config.source = path.to_owned();
        config.text = text.into();

        let tag_keys = config.tags.all();
        for (index, key) in tag_keys.iter().enumerate() {
            tags::validate_key(key).map_err(|why| located(None, format!("[tags]: {why}")))?;
            if tag_keys[..index].contains(key) {
                return Err(located(None, format!("[tags]: `{key}` is used for two result tags")));
            }
        }
        if !(5 << 20..=5 << 30).contains(&config.agent.multipart_copy_part_bytes) {
            return Err(located(
                None,
                "[agent] multipart-copy-part-bytes: S3 parts are 5 MiB to 5 GiB".into(),
            ));
        }
        if config.agent.wait_time_secs > 20 {
            return Err(located(None, "[agent] wait-time-secs: SQS allows at most 20".into()));
        }
        for (name, decl) in &config.plugins {
            if let Some(sha) = &decl.sha256 {
                let valid = sha.get_ref().len() == 64 && sha.get_ref().chars().all(|c| c.is_ascii_hexdigit());
                if !valid {
                    return Err(located(
                        Some(sha.span()),
                        format!("plugins.{name}.sha256: expected 64 hex digits"),
                    ));
                }
            }
        }
        for (bucket, bucket_config) in &config.buckets {
            if let Some(owner) = &bucket_config.expected_owner {
                let valid = owner.get_ref().len() == 12 && owner.get_ref().chars().all(|c| c.is_ascii_digit());
                if !valid {
                    return Err(located(
                        Some(owner.span()),
                        format!("bucket `{bucket}`: expected-owner must be a 12-digit AWS account ID"),
                    ));
                }
            }
            let limit = config.max_object_bytes(bucket);
            if limit > config.agent.spool_threshold_bytes && limit > config.agent.spool_budget_bytes {
                return Err(located(
                    None,
                    format!(
                        "bucket `{bucket}`: objects up to {limit} bytes may be scanned but [agent] spool-budget-bytes is \
                         {}; an object that size could never be fetched. Raise the budget or lower max-object-bytes",
                        config.agent.spool_budget_bytes
                    ),
                ));
            }
            for (index, prefix) in bucket_config.prefixes.iter().enumerate() {
                let earlier = &bucket_config.prefixes[..index];
                if earlier.iter().any(|p| p.prefix.get_ref() == prefix.prefix.get_ref()) {
                    return Err(located(
                        Some(prefix.prefix.span()),
                        format!(
                            "bucket `{bucket}`: prefix `{}` is declared twice",
                            prefix.prefix.get_ref()
                        ),
                    ));
                }
            }
        }
        for (scope, stages) in config.pipelines() {
            for (index, stage) in stages.iter().enumerate() {
                let at = format!("{scope}, stage {} (`{}`)", index + 1, stage.plugin.get_ref());
                if !config.plugins.contains_key(stage.plugin.get_ref()) {
                    let declared: Vec<&str> = config.plugins.keys().map(String::as_str).collect();
                    return Err(located(
                        Some(stage.plugin.span()),
                        format!(
                            "{at}: plugin `{}` is not declared under [plugins] (declared: {})",
                            stage.plugin.get_ref(),
                            if declared.is_empty() {
                                "none".into()
                            } else {
                                declared.join(", ")
                            }
                        ),
                    ));
                }
                for bucket in &stage.grants.get_ref().storage {
                    if !config.buckets.contains_key(bucket) {
                        return Err(located(
                            Some(stage.grants.span()),
                            format!(
                                "{at}: grants.storage names bucket `{bucket}`, which is not declared; add [buckets.{bucket}]"
                            ),
                        ));
                    }
                }
                for (key, value) in stage.settings.get_ref() {
                    setting_string(value)
                        .map_err(|why| located(Some(stage.settings.span()), format!("{at}: settings.{key}: {why}")))?;
                }
            }
        }
        Ok(config)
    }

    /// Every pipeline in the file with where it applies.
    pub fn pipelines(&self) -> impl Iterator<Item = (PipelineScope<'_>, &[StageConfig])> {
        self.buckets.iter().flat_map(|(bucket, config)| {
            let whole =
                (!config.stages.is_empty()).then(|| (PipelineScope { bucket, prefix: None }, config.stages.as_slice()));
            whole.into_iter().chain(config.prefixes.iter().map(move |prefix| {
                (
                    PipelineScope {
                        bucket,
                        prefix: Some(prefix.prefix.get_ref().as_str()),
                    },
                    prefix.stages.as_slice(),
                )
            }))
        })
    }

    /// The pipeline for one object: the longest matching prefix of its
    /// bucket, else the bucket's own stages. `None` when the bucket is not
    /// scanned.
    pub fn pipeline_for(&self, bucket: &str, key: &str) -> Option<(PipelineScope<'_>, &[StageConfig])> {
        let (name, config) = self.buckets.get_key_value(bucket)?;
        let by_prefix = config
            .prefixes
            .iter()
            .filter(|p| key.starts_with(p.prefix.get_ref().as_str()))
            .max_by_key(|p| p.prefix.get_ref().len());
        match by_prefix {
            Some(p) => Some((
                PipelineScope {
                    bucket: name,
                    prefix: Some(p.prefix.get_ref()),
                },
                &p.stages,
            )),
            None if !config.stages.is_empty() => Some((
                PipelineScope {
                    bucket: name,
                    prefix: None,
                },
                &config.stages,
            )),
            None => None,
        }
    }

    /// The largest object `bucket`'s pipelines scan: the bucket's own
    /// limit, else `[agent] max-object-bytes`, else clamd's stream limit.
    pub fn max_object_bytes(&self, bucket: &str) -> u64 {
        self.buckets
            .get(bucket)
            .and_then(|b| b.max_object_bytes)
            .or(self.agent.max_object_bytes)
            .unwrap_or(self.clamav.stream_max_bytes)
    }

    /// The account `bucket` must belong to, when the config says.
    pub fn expected_owner(&self, bucket: &str) -> Option<&str> {
        self.buckets
            .get(bucket)?
            .expected_owner
            .as_ref()
            .map(|owner| owner.get_ref().as_str())
    }

    /// A declared plugin's component path, resolved against the config
    /// file's directory.
    pub fn plugin_path(&self, decl: &PluginDecl) -> PathBuf {
        let path = decl.path.get_ref();
        if path.is_absolute() {
            path.clone()
        } else {
            self.source.parent().unwrap_or(Path::new(".")).join(path)
        }
    }

    /// `FILE:LINE` of a byte span, for errors found after parsing (e.g. when
    /// a plugin fails to load).
    pub fn locate(&self, span: Range<usize>) -> String {
        let (line, _) = line_column(&self.text, span.start);
        format!("{}:{line}", self.source.display())
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[clamav]
address = "127.0.0.1:3310"

[plugins.clamav-bridge]
path = "clamav_bridge.wasm"

[plugins.filetype-filter]
path = "/abs/filetype_filter.wasm"

[buckets.production]

[buckets.staging]
[[buckets.staging.stages]]
plugin = "filetype-filter"
settings = { deny = ["executable", "script"], block-mismatch = true }

[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }

[[buckets.staging.prefixes]]
prefix = "reports/"
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = { clamav = true, storage = ["production"] }
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/bucketscan/config.toml"))
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.host, HostLimits::default());
        assert_eq!(config.pipelines().count(), 2);
        let stage = &config.buckets["staging"].stages[0];
        assert_eq!(
            stage.settings(),
            vec![
                ("block-mismatch".to_string(), "true".to_string()),
                ("deny".to_string(), "executable,script".to_string())
            ]
        );
        let decl = &config.plugins["clamav-bridge"];
        assert_eq!(
            config.plugin_path(decl),
            Path::new("/etc/bucketscan/clamav_bridge.wasm")
        );
    }

    #[test]
    fn the_longest_prefix_selects_the_pipeline() {
        let config = parse(GOOD).unwrap();
        let (scope, stages) = config.pipeline_for("staging", "reports/q3.pdf").unwrap();
        assert_eq!(scope.prefix, Some("reports/"));
        assert_eq!(stages.len(), 1);
        let (scope, stages) = config.pipeline_for("staging", "other/x").unwrap();
        assert_eq!(scope.prefix, None);
        assert_eq!(stages.len(), 2);
        assert!(config.pipeline_for("production", "x").is_none());
        assert!(config.pipeline_for("unknown", "x").is_none());
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let text = GOOD.replace(
            "grants = { clamav = true }\n\n[[buckets.staging.prefixes]]",
            "grants = { clamav = true }\nretries = 3\n\n[[buckets.staging.prefixes]]",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 21, "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("/etc/bucketscan/config.toml:21:"), "{shown}");
        assert!(shown.contains("unknown field `retries`"), "{shown}");
    }

    #[test]
    fn a_missing_plugin_is_named_with_its_line() {
        let text = GOOD.replace("plugin = \"filetype-filter\"", "plugin = \"file-type\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 15, "{err}");
        assert!(err.message.contains("plugin `file-type` is not declared"), "{err}");
        assert!(err.message.contains("bucket `staging`, stage 1"), "{err}");
    }

    #[test]
    fn a_grant_to_an_undeclared_bucket_is_refused() {
        let text = GOOD.replace("storage = [\"production\"]", "storage = [\"prod\"]");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 26, "{err}");
        assert!(err.message.contains("bucket `prod`, which is not declared"), "{err}");
        assert!(err.message.contains("prefix `reports/`"), "{err}");
    }

    #[test]
    fn type_errors_name_the_line() {
        let text = GOOD.replace(
            "grants = { clamav = true }\n\n[[",
            "grants = { clamav = \"yes\" }\n\n[[",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 20, "{err}");
        assert!(err.message.contains("bool"), "{err}");
    }

    #[test]
    fn bad_result_names_in_on_are_refused() {
        let text = GOOD.replace(
            "grants = { clamav = true }\n\n[[",
            "on = [\"dirty\"]\ngrants = { clamav = true }\n\n[[",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 20, "{err}");
        assert!(err.message.contains("dirty"), "{err}");
    }

    #[test]
    fn nested_tables_in_settings_are_refused() {
        let text = GOOD.replace("block-mismatch = true }", "block-mismatch = { a = 1 } }");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("settings.block-mismatch"), "{err}");
    }

    #[test]
    fn a_bad_sha256_pin_is_refused() {
        let text = GOOD.replace(
            "path = \"clamav_bridge.wasm\"",
            "path = \"clamav_bridge.wasm\"\nsha256 = \"abc\"",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 7, "{err}");
    }

    #[test]
    fn config_from_an_environment_variable_names_the_variable_in_errors() {
        let source = ConfigSource::Env("BUCKETSCAN_TEST_CONFIG_ENV".into());
        // SAFETY: this variable is used by this test only.
        unsafe { std::env::set_var("BUCKETSCAN_TEST_CONFIG_ENV", "[agent]\nconcurrency = \"two\"\n") };
        let err = source.load().unwrap_err().to_string();
        assert!(err.starts_with("$BUCKETSCAN_TEST_CONFIG_ENV:2:15:"), "{err}");
        unsafe { std::env::set_var("BUCKETSCAN_TEST_CONFIG_ENV", GOOD) };
        let config = source.load().unwrap();
        assert_eq!(source.file(), None);
        let decl = config.plugins.values().next().unwrap();
        assert!(
            config.plugin_path(decl).is_relative(),
            "relative to the working directory"
        );
        unsafe { std::env::remove_var("BUCKETSCAN_TEST_CONFIG_ENV") };
        assert!(
            source
                .load()
                .unwrap_err()
                .to_string()
                .contains("environment variable is not set")
        );
    }
}
