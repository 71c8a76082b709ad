//! `[plugins]` and `[buckets]`: which plugins exist, and which pipeline of
//! them scans each bucket (and key prefix).
//!
//! ```toml
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

use super::organization::{ANY_ACCOUNT, Enrolled, OrganizationConfig, is_account_id};
use super::{ConfigError, ConfigText, SecretSource, SettingValue};
use crate::grants::Grants;
use crate::verdict::ResultName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

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
    /// Objects over `max-object-bytes`: walked member by member when they
    /// are containers the host reads (`[buckets.NAME.large-objects]`).
    #[serde(default)]
    pub large_objects: LargeObjects,
    /// Not a bucket: a pipeline for `POST /v1/scan` uploads only. No S3
    /// request ever names it (the name may be somebody else's bucket).
    #[serde(default)]
    pub api_only: bool,
    /// Container formats an engine may call clean here without opening
    /// them (e.g. `["rar"]` where clamd has no unrar). What is inside such
    /// a file is then not examined at all: a RAR holding malware is
    /// promoted. Empty (the default): such files are `unscannable
    /// (unsupported-container)`.
    #[serde(default, deserialize_with = "crate::formats::format_names")]
    pub let_through: Vec<crate::formats::Format>,
    /// Rescans when the signatures change: objects of this bucket found
    /// clean within the window are scanned again, where they live now,
    /// once per new database version for the whole fleet.
    pub retro_scan: Option<RetroScanConfig>,
    /// The pipeline for keys no `prefixes` entry matches.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Pipelines for key prefixes; the longest matching prefix wins.
    #[serde(default)]
    pub prefixes: Vec<PrefixConfig>,
}

impl BucketConfig {
    /// Whether any pipeline scans this bucket's objects.
    pub fn is_scanned(&self) -> bool {
        !self.stages.is_empty() || !self.prefixes.is_empty()
    }
}

/// `[buckets.NAME.large-objects]`: what happens to an object too large
/// for the engine whole. A zip, tar, or tar in gzip/bzip2/xz/zstd is
/// walked and each member scanned on its own (the verdict's coverage is
/// then `members`). Anything else, or everything with `walk = false`, is
/// checked against the whole-file hash signatures (coverage `hashes`): a
/// match is `infected`, else `unscannable (too-large)` — or `clean` when
/// the bucket opted in with `hashes-suffice`. The limits are GuardDuty's
/// published ones; past any of them the object is `unscannable
/// (limits-exceeded)`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LargeObjects {
    pub walk: bool,
    /// Members in all, nested ones included (at most 1,000,000).
    pub max_members: u64,
    /// Bytes decompressed, in all layers.
    pub max_expanded_bytes: u64,
    /// Containers nested inside each other.
    pub max_depth: u32,
    /// An object that is neither walked nor matched by a hash signature
    /// is `clean` on that check alone (coverage `hashes`) instead of
    /// `unscannable (too-large)`: its bytes were hashed, never scanned.
    /// Off by default; for buckets of media or disk images whose owners
    /// accept exactly that.
    pub hashes_suffice: bool,
}

impl Default for LargeObjects {
    fn default() -> Self {
        Self {
            walk: true,
            max_members: 10_000,
            max_expanded_bytes: 100 << 30,
            max_depth: 8,
            hashes_suffice: false,
        }
    }
}

/// `retro-scan = { within-days = 7, newest-first = true }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RetroScanConfig {
    /// How far back clean results are looked at again, in days.
    pub within_days: u32,
    /// Enqueue the newest results first (the likeliest to be served now).
    pub newest_first: bool,
}

impl Default for RetroScanConfig {
    fn default() -> Self {
        Self {
            within_days: 7,
            newest_first: true,
        }
    }
}

/// The most members one walk may be allowed (a zip directory that size
/// is about 100 MB in memory).
pub const MAX_MEMBERS_LIMIT: u64 = 1_000_000;

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
    /// The plugin's own settings.
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

impl StageConfig {
    /// The plugin's settings, typed. Validated by
    /// [`PipelinesConfig::validate`].
    pub fn settings(&self) -> Vec<(String, SettingValue)> {
        self.settings
            .get_ref()
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), SettingValue::from_toml(value).ok()?)))
            .collect()
    }
}

/// The default of an optional spanned field: no position in the file.
fn unspanned<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

/// Where a pipeline applies: a bucket and, optionally, a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineScope<'a> {
    pub owner: ScopeOwner<'a>,
    pub prefix: Option<&'a str>,
}

/// Whose pipeline it is: a declared bucket's, or a member account's (for
/// each of its enrolled buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOwner<'a> {
    Bucket(&'a str),
    Account(&'a str),
}

impl PipelineScope<'_> {
    /// A key naming the pipeline (accounts and buckets never collide,
    /// though a bucket may be named with 12 digits).
    pub fn key(&self) -> (String, Option<String>) {
        let owner = match self.owner {
            ScopeOwner::Bucket(bucket) => bucket.to_owned(),
            ScopeOwner::Account(account) => format!("account:{account}"),
        };
        (owner, self.prefix.map(str::to_owned))
    }

    /// The bucket, when the pipeline is a declared bucket's.
    pub fn bucket(&self) -> Option<&str> {
        match self.owner {
            ScopeOwner::Bucket(bucket) => Some(bucket),
            ScopeOwner::Account(_) => None,
        }
    }
}

impl fmt::Display for PipelineScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            ScopeOwner::Bucket(bucket) => write!(f, "bucket `{bucket}`")?,
            ScopeOwner::Account(ANY_ACCOUNT) => write!(f, "accounts `*`")?,
            ScopeOwner::Account(account) => write!(f, "account `{account}`")?,
        }
        match self.prefix {
            Some(prefix) => write!(f, " prefix `{prefix}`"),
            None => Ok(()),
        }
    }
}

/// `[plugins]` and `[buckets]`, with the text they came from and the size
/// limit a bucket has when it sets none.
#[derive(Debug, Clone, Default)]
pub struct PipelinesConfig {
    pub plugins: BTreeMap<String, PluginDecl>,
    pub buckets: BTreeMap<String, BucketConfig>,
    /// Pipelines for member accounts' tagged buckets (`[accounts]`).
    pub accounts: BTreeMap<String, BucketConfig>,
    pub organization: Option<OrganizationConfig>,
    /// The member-account buckets taken in so far.
    pub enrolled: Enrolled,
    pub text: ConfigText,
    pub default_max_object_bytes: u64,
}

impl PipelinesConfig {
    /// Checks what serde cannot: pins, declared plugins and buckets,
    /// settings, prefixes, owners. Every error names where it is.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| self.text.error(Some(span), message);
        for (name, decl) in &self.plugins {
            if let Some(sha) = &decl.sha256 {
                let valid = sha.get_ref().len() == 64 && sha.get_ref().chars().all(|c| c.is_ascii_hexdigit());
                if !valid {
                    return Err(at(sha.span(), format!("plugins.{name}.sha256: expected 64 hex digits")));
                }
            }
        }
        self.validate_accounts()
            .map_err(|message| self.text.error(None, message))?;
        for (bucket, config) in self.buckets.iter().chain(&self.accounts) {
            if let Some(owner) = &config.expected_owner {
                let valid = owner.get_ref().len() == 12 && owner.get_ref().chars().all(|c| c.is_ascii_digit());
                if !valid {
                    return Err(at(
                        owner.span(),
                        format!("bucket `{bucket}`: expected-owner must be a 12-digit AWS account ID"),
                    ));
                }
            }
            let large = &config.large_objects;
            if !(1..=MAX_MEMBERS_LIMIT).contains(&large.max_members) || !(1..=17).contains(&large.max_depth) {
                return Err(self.text.error(
                    None,
                    format!(
                        "bucket `{bucket}`: large-objects.max-members must be 1 to {MAX_MEMBERS_LIMIT} and \
                         large-objects.max-depth 1 to 17 (got {} and {})",
                        large.max_members, large.max_depth
                    ),
                ));
            }
            for (index, prefix) in config.prefixes.iter().enumerate() {
                if config.prefixes[..index]
                    .iter()
                    .any(|p| p.prefix.get_ref() == prefix.prefix.get_ref())
                {
                    return Err(at(
                        prefix.prefix.span(),
                        format!(
                            "bucket `{bucket}`: prefix `{}` is declared twice",
                            prefix.prefix.get_ref()
                        ),
                    ));
                }
            }
        }
        for (scope, stages) in self.pipelines() {
            for (index, stage) in stages.iter().enumerate() {
                let here = format!("{scope}, stage {} (`{}`)", index + 1, stage.plugin.get_ref());
                if !self.plugins.contains_key(stage.plugin.get_ref()) {
                    let declared: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
                    return Err(at(
                        stage.plugin.span(),
                        format!(
                            "{here}: plugin `{}` is not declared under [plugins] (declared: {})",
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
                    if !self.buckets.contains_key(bucket) {
                        return Err(at(
                            stage.grants.span(),
                            format!(
                                "{here}: grants.storage names bucket `{bucket}`, which is not declared; add [buckets.{bucket}]"
                            ),
                        ));
                    }
                }
                for (key, value) in stage.settings.get_ref() {
                    SettingValue::from_toml(value)
                        .map_err(|why| at(stage.settings.span(), format!("{here}: settings.{key}: {why}")))?;
                }
            }
        }
        Ok(())
    }

    /// Every pipeline with where it applies.
    pub fn pipelines(&self) -> impl Iterator<Item = (PipelineScope<'_>, &[StageConfig])> {
        let buckets = self
            .buckets
            .iter()
            .map(|(name, config)| (ScopeOwner::Bucket(name), config));
        let accounts = self
            .accounts
            .iter()
            .map(|(id, config)| (ScopeOwner::Account(id), config));
        buckets.chain(accounts).flat_map(|(owner, config)| {
            let whole = (!config.stages.is_empty())
                .then_some((PipelineScope { owner, prefix: None }, config.stages.as_slice()));
            whole.into_iter().chain(config.prefixes.iter().map(move |prefix| {
                (
                    PipelineScope {
                        owner,
                        prefix: Some(prefix.prefix.get_ref().as_str()),
                    },
                    prefix.stages.as_slice(),
                )
            }))
        })
    }

    /// What scans `bucket` and who owns that config: its own entry under
    /// `[buckets]`, else — when it was enrolled from a member account —
    /// that account's entry (or `[accounts."*"]`).
    pub fn bucket_config(&self, bucket: &str) -> Option<(ScopeOwner<'_>, &BucketConfig)> {
        if let Some((name, config)) = self.buckets.get_key_value(bucket) {
            return Some((ScopeOwner::Bucket(name), config));
        }
        let account = self.enrolled.account_of(bucket)?;
        let (id, config) = self
            .accounts
            .get_key_value(&account)
            .or_else(|| self.accounts.get_key_value(ANY_ACCOUNT))?;
        Some((ScopeOwner::Account(id), config))
    }

    /// The config for `account`'s tagged buckets, when it has one.
    pub fn account_config(&self, account: &str) -> Option<&BucketConfig> {
        self.accounts.get(account).or_else(|| self.accounts.get(ANY_ACCOUNT))
    }

    /// The pipeline for one object: the longest matching prefix of its
    /// bucket, else the bucket's own stages. `None` when the bucket is not
    /// scanned.
    pub fn pipeline_for(&self, bucket: &str, key: &str) -> Option<(PipelineScope<'_>, &[StageConfig])> {
        let (owner, config) = self.bucket_config(bucket)?;
        let by_prefix = config
            .prefixes
            .iter()
            .filter(|p| key.starts_with(p.prefix.get_ref().as_str()))
            .max_by_key(|p| p.prefix.get_ref().len());
        match by_prefix {
            Some(p) => Some((
                PipelineScope {
                    owner,
                    prefix: Some(p.prefix.get_ref()),
                },
                &p.stages,
            )),
            None if !config.stages.is_empty() => Some((PipelineScope { owner, prefix: None }, &config.stages)),
            None => None,
        }
    }

    /// The largest object `bucket`'s pipelines scan.
    pub fn max_object_bytes(&self, bucket: &str) -> u64 {
        self.bucket_config(bucket)
            .and_then(|(_, b)| b.max_object_bytes)
            .unwrap_or(self.default_max_object_bytes)
    }

    /// The smallest size limit of any bucket (or the default): objects
    /// over it may reach the host's whole-file hash check.
    pub fn smallest_max_object_bytes(&self) -> u64 {
        self.buckets
            .values()
            .chain(self.accounts.values())
            .map(|config| config.max_object_bytes.unwrap_or(self.default_max_object_bytes))
            .fold(self.default_max_object_bytes, u64::min)
    }

    /// What `bucket` does with objects over its size limit.
    pub fn large_objects(&self, bucket: &str) -> LargeObjects {
        self.bucket_config(bucket)
            .map(|(_, b)| b.large_objects.clone())
            .unwrap_or_default()
    }

    /// The formats `bucket` lets through unopened.
    pub fn let_through(&self, bucket: &str) -> &[crate::formats::Format] {
        self.bucket_config(bucket)
            .map(|(_, b)| b.let_through.as_slice())
            .unwrap_or_default()
    }

    /// The account `bucket` must belong to, when the config says: an
    /// enrolled bucket belongs to the account it was enrolled from.
    pub fn expected_owner(&self, bucket: &str) -> Option<String> {
        match self.buckets.get(bucket) {
            Some(config) => config.expected_owner.as_ref().map(|owner| owner.get_ref().clone()),
            None => self.enrolled.account_of(bucket),
        }
    }

    /// `[accounts]` needs `[organization]` (the role to assume), and its
    /// keys are account IDs or `*`. What belongs to one bucket (its owner,
    /// a role of its own, retro-scans, the API) has no meaning there.
    fn validate_accounts(&self) -> Result<(), String> {
        if !self.accounts.is_empty() && self.organization.is_none() {
            return Err("[accounts] needs [organization] role-name: the role the agents assume in each account".into());
        }
        for (account, config) in &self.accounts {
            if account != ANY_ACCOUNT && !is_account_id(account) {
                return Err(format!(
                    "[accounts.\"{account}\"]: expected a 12-digit AWS account ID or \"*\""
                ));
            }
            let refused = [
                ("role-arn", config.role_arn.is_some()),
                ("external-id", config.external_id.is_some()),
                ("expected-owner", config.expected_owner.is_some()),
                ("api-only", config.api_only),
                ("retro-scan", config.retro_scan.is_some()),
            ];
            if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "[accounts.\"{account}\"] {field}: not for an account's tagged buckets (the owner is the account and \
                     the role [organization]'s; declare the bucket under [buckets] for this)"
                ));
            }
            if !config.is_scanned() {
                return Err(format!(
                    "[accounts.\"{account}\"]: no stages: nothing would scan its buckets"
                ));
            }
        }
        if let Some(organization) = &self.organization {
            let valid_name = !organization.role_name.is_empty()
                && organization.role_name.len() <= 64
                && organization
                    .role_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
            if !valid_name {
                return Err(format!(
                    "[organization] role-name `{}`: an IAM role name (1 to 64 of A-Z a-z 0-9 +=,.@_-)",
                    organization.role_name
                ));
            }
            if organization.tag_check_secs == 0 {
                return Err("[organization] tag-check-secs: at least 1".into());
            }
        }
        Ok(())
    }

    /// A declared plugin's component path, resolved against the config
    /// file's directory.
    pub fn plugin_path(&self, decl: &PluginDecl) -> PathBuf {
        self.text.resolve(decl.path.get_ref())
    }

    /// `FILE:LINE` of a span in the text.
    pub fn locate(&self, span: std::ops::Range<usize>) -> String {
        self.text.locate(span)
    }
}
