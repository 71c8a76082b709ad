//! The config file as the agent reads it: the sections of every crate,
//! composed. Each section's type lives with the crate that uses it —
//! `[engine]` and `[clamav]` in the engine, `[plugins]`/`[buckets]`,
//! `[tags]` and `[allow-list]` in the core, `[serve]` in the serve crate
//! (kept here as a table: that crate builds on this one), `[agent]` and `[notifications]` here,
//! `[signatures]` in `signatures` — and each default is written once, in
//! its type's `Default`. Every error names `FILE:LINE:COLUMN`.

use crate::signatures::SignaturesConfig;
use bucketscan_core::allow::AllowListConfig;
use bucketscan_core::config::{
    BucketConfig, ConfigError, ConfigSource, ConfigText, Enrolled, OrganizationConfig, PipelinesConfig, PluginDecl,
    SecretSource,
};
use bucketscan_core::tags::{self, TagKeys};
use bucketscan_engine::config::{ClamavConfig, EngineConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[engine]`; `[host]`, its old name, is still read (with a warning).
    #[serde(default, alias = "host")]
    pub engine: EngineConfig,
    #[serde(default)]
    pub clamav: ClamavConfig,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginDecl>,
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketConfig>,
    /// Member accounts whose tagged buckets are scanned (`[organization]`).
    pub organization: Option<OrganizationConfig>,
    #[serde(default)]
    pub accounts: BTreeMap<String, BucketConfig>,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub tags: TagKeys,
    #[serde(default)]
    pub notifications: NotificationsConfig,
    pub signatures: Option<SignaturesConfig>,
    /// Where every result is recorded (DynamoDB); none without it.
    pub results: Option<crate::results::ResultsConfig>,
    /// YARA rule sets stages may be granted.
    pub yara: Option<crate::yara_rules::YaraConfig>,
    #[serde(default)]
    pub allow_list: AllowListConfig,
    /// `[serve]`, for `bucketscan serve`: read and checked by the serve
    /// crate (`ServeConfig::from_config`), ignored by `run`.
    #[serde(default)]
    pub serve: toml::Table,
    /// The text this was parsed from.
    #[serde(skip)]
    pub text: ConfigText,
    /// What in the text still works but should change (old names).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The member-account buckets this process has taken in: one set for
    /// the process, handed from the running config to a reloaded one.
    #[serde(skip)]
    pub enrolled: Enrolled,
}

/// The first 12 hex digits of the SHA-256 of a config's text: two agents
/// showing the same digest run the same config.
pub fn digest(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..12].to_owned()
}

/// How much longer than a long poll's wait a request may take before its
/// first byte (a poll answers only at the end of its wait).
const LONG_POLL_MARGIN_SECS: u64 = 10;

/// `[agent]`: how `bucketscan run` consumes events and handles objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AgentConfig {
    /// SQS queue URLs carrying S3 event notifications.
    pub queues: Vec<String>,
    /// Queues of sweep items (`bucketscan scan --enqueue --queue URL`),
    /// taken from only when the event queues leave a slot free: uploads
    /// come first.
    pub sweep_queues: Vec<String>,
    /// Sweep items scanned at once at most (default 1). A slot kept free
    /// stops uploads from waiting in line; this bounds the CPU a sweep
    /// takes from them (`benches/fleet.rs`: an upload's time to its verdict
    /// 1.57x idle with 1, 5.75x with 3 of 4 slots). A backlog scales the
    /// service out instead.
    pub sweep_slots: Option<usize>,
    /// Objects scanned at once.
    pub concurrency: usize,
    /// Visibility timeout set on received messages and extended while a
    /// scan runs, in seconds.
    pub visibility_timeout_secs: u64,
    /// SQS long-poll wait, in seconds (0-20).
    pub wait_time_secs: u64,
    /// A message that could not be handled comes back after this many
    /// seconds times its receive count (at most 15 minutes).
    pub retry_backoff_secs: u64,
    /// Objects larger than this are spooled to a temp file, not memory.
    pub spool_threshold_bytes: u64,
    /// Where spool files go (default: the system temp dir).
    pub spool_dir: Option<PathBuf>,
    /// Bytes all objects spooled at once may take on disk. An object that
    /// does not fit now waits for a retry; nothing else is affected.
    pub spool_budget_bytes: u64,
    /// The largest object any pipeline scans (a bucket may set its own):
    /// larger ones are `unscannable (too-large)` without being downloaded.
    /// Default: `[clamav] stream-max-bytes`.
    pub max_object_bytes: Option<u64>,
    /// The key that seals result tags, so agents trust only their own (and
    /// each other's, when they share it). Without it each process uses a
    /// random key: its seals mean nothing to other agents.
    pub seal_key: Option<SecretSource>,
    /// Identifies this agent in notifications (default: host name and pid).
    pub agent_id: Option<String>,
    /// Force path-style S3 addressing (always on with AWS_ENDPOINT_URL).
    pub path_style: bool,
    /// Copies of objects larger than this use multipart UploadPartCopy
    /// (S3's single CopyObject stops at 5 GiB, the default).
    pub multipart_copy_threshold_bytes: u64,
    /// Part size of multipart copies (S3: 5 MiB to 5 GiB).
    pub multipart_copy_part_bytes: u64,
    /// The longest one object may take from its event to its last action
    /// (a hung S3 request, a stalled body); past it the object's message
    /// returns to the queue for another try.
    pub object_timeout_secs: u64,
    /// How long any AWS request may wait for the first byte of its answer
    /// before it is retried: a request S3 or SNS holds without answering
    /// would otherwise hold its object until `object-timeout-secs`.
    pub first_byte_timeout_secs: u64,
}

impl AgentConfig {
    /// Sweep items scanned at once at most.
    pub fn sweep_slots(&self) -> usize {
        self.sweep_slots.unwrap_or(1).clamp(1, self.concurrency.max(1))
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            sweep_queues: Vec::new(),
            sweep_slots: None,
            concurrency: 4,
            visibility_timeout_secs: 120,
            wait_time_secs: 20,
            retry_backoff_secs: 30,
            spool_threshold_bytes: 16 * 1024 * 1024,
            spool_dir: None,
            spool_budget_bytes: 8 * 1024 * 1024 * 1024,
            max_object_bytes: None,
            seal_key: None,
            agent_id: None,
            path_style: false,
            multipart_copy_threshold_bytes: 5 * 1024 * 1024 * 1024,
            multipart_copy_part_bytes: 512 * 1024 * 1024,
            object_timeout_secs: 3600,
            first_byte_timeout_secs: 60,
        }
    }
}

/// `[notifications]`: where every result is published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotificationsConfig {
    /// An SNS topic (the report as JSON, attributes `bucket`,
    /// `scan-result`, `outcome`).
    pub topic_arn: Option<String>,
    /// An EventBridge bus (name or ARN) that receives GuardDuty-shaped
    /// "GuardDuty Malware Protection Object Scan Result" events.
    pub event_bus: Option<String>,
    /// The events' `source` (EventBridge keeps `aws.*` for AWS).
    pub event_source: Option<String>,
}

impl NotificationsConfig {
    pub const DEFAULT_EVENT_SOURCE: &str = "bucketscan";
}

impl Config {
    /// Reads and validates the config from `source`.
    pub fn load(source: &ConfigSource) -> Result<Self, ConfigError> {
        Self::parse(source.read()?)
    }

    /// Reads and validates a config file.
    pub fn load_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load(&ConfigSource::File(path.to_owned()))
    }

    /// Parses and validates `text`.
    pub fn parse(text: ConfigText) -> Result<Self, ConfigError> {
        let mut config: Config = text.deserialize()?;
        config.warnings = Self::old_names(&text);
        config.text = text;
        config.tags = config.tags.with_profile_defaults();
        config.validate()?;
        config.warnings.extend(config.retro_scan_warnings());
        config.warnings.extend(config.yara_limit_warnings());
        Ok(config)
    }

    /// Sections under a name that was changed: still read, worth a warning.
    fn old_names(text: &ConfigText) -> Vec<String> {
        let Ok(table) = text.text.parse::<toml::Table>() else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        if let Some(span) = table.contains_key("host").then(|| text.text.find("[host]")).flatten() {
            warnings.push(format!(
                "{}: [host] is now called [engine]; the old name still works and will be refused in a later version",
                text.locate(span..span + "[host]".len())
            ));
        }
        warnings
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let error = |message: String| self.text.error(None, message);
        let tag_keys = self.tags.all();
        for (index, key) in tag_keys.iter().enumerate() {
            tags::validate_key(key).map_err(|why| error(format!("[tags]: {why}")))?;
            if tag_keys[..index].contains(key) {
                return Err(error(format!("[tags]: `{key}` is used for two result tags")));
            }
        }
        self.allow_list.validate().map_err(error)?;
        self.allow_list
            .check_placement(&|bucket| self.buckets.get(bucket).is_some_and(|b| b.is_scanned()))
            .map_err(error)?;
        if self.allow_list.object.is_some() && self.agent.seal_key.is_none() {
            return Err(error(
                "[allow-list] object: its lines are marked with the agents' seal key, and [agent] seal-key is not \
                 set (without it every process has its own key and no mark would verify)"
                    .into(),
            ));
        }
        if let Some(source) = &self.notifications.event_source
            && (source.is_empty() || source.starts_with("aws."))
        {
            return Err(error(format!(
                "[notifications] event-source `{source}`: EventBridge refuses empty and `aws.` sources from anyone but AWS"
            )));
        }
        if !(5 << 20..=5 << 30).contains(&self.agent.multipart_copy_part_bytes) {
            return Err(error(
                "[agent] multipart-copy-part-bytes: S3 parts are 5 MiB to 5 GiB".into(),
            ));
        }
        if self.agent.object_timeout_secs == 0 {
            return Err(error("[agent] object-timeout-secs: at least 1".into()));
        }
        if self.agent.wait_time_secs > 20 {
            return Err(error("[agent] wait-time-secs: SQS allows at most 20".into()));
        }
        if self.agent.first_byte_timeout_secs < self.agent.wait_time_secs + LONG_POLL_MARGIN_SECS {
            return Err(error(format!(
                "[agent] first-byte-timeout-secs ({}) must be at least wait-time-secs ({}) + {LONG_POLL_MARGIN_SECS}: \
                 a long poll answers only at its end, and one cut short leaves its messages invisible",
                self.agent.first_byte_timeout_secs, self.agent.wait_time_secs
            )));
        }
        if let Some(results) = &self.results
            && results.batch_wait_ms > crate::results::ResultsConfig::MAX_BATCH_WAIT_MS
        {
            return Err(error(format!(
                "[results] batch-wait-ms = {}: at most {} (every object's alert and deletes wait this long)",
                results.batch_wait_ms,
                crate::results::ResultsConfig::MAX_BATCH_WAIT_MS
            )));
        }
        self.validate_retro_scans().map_err(error)?;
        self.validate_yara().map_err(error)?;
        let pipelines = self.pipelines();
        pipelines.validate()?;
        for bucket in self.buckets.keys() {
            let limit = pipelines.max_object_bytes(bucket);
            if limit > self.agent.spool_threshold_bytes && limit > self.agent.spool_budget_bytes {
                return Err(error(format!(
                    "bucket `{bucket}`: objects up to {limit} bytes may be scanned but [agent] spool-budget-bytes is {}; \
                     an object that size could never be fetched. Raise the budget or lower max-object-bytes",
                    self.agent.spool_budget_bytes
                )));
            }
        }
        Ok(())
    }

    /// `[yara]` is whole, and every `yara` grant names one of its sets.
    fn validate_yara(&self) -> Result<(), String> {
        if let Some(problem) = self.yara.as_ref().and_then(|yara| yara.problem()) {
            return Err(problem);
        }
        let pipelines = self.pipelines();
        for (scope, stages) in pipelines.pipelines() {
            for (index, stage) in stages.iter().enumerate() {
                for set in &stage.grants.get_ref().yara {
                    let declared = self.yara.as_ref().is_some_and(|y| y.rule_sets.contains_key(set));
                    if !declared {
                        return Err(format!(
                            "{scope}, stage {} (`{}`): grants.yara names rule set `{set}`, which is not declared; \
                             add [yara.rule-sets.{set}]",
                            index + 1,
                            stage.plugin.get_ref()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A retro-scan reads the results store, is started by the signature
    /// keeper, and queues on a sweep queue: each must be configured.
    fn validate_retro_scans(&self) -> Result<(), String> {
        for (bucket, config) in &self.buckets {
            let Some(retro) = &config.retro_scan else { continue };
            let missing = if self.results.is_none() {
                Some("[results] (the clean results it rescans are read from there)")
            } else if self.signatures.is_none() {
                Some("[signatures] (a new database version is what starts it)")
            } else if self.agent.sweep_queues.is_empty() {
                Some("[agent] sweep-queues (its items wait there behind live uploads)")
            } else if self.agent.seal_key.is_none() {
                Some("[agent] seal-key (its items are marked with it: nobody else may queue one)")
            } else {
                None
            };
            if let Some(missing) = missing {
                return Err(format!("bucket `{bucket}`: retro-scan needs {missing}"));
            }
            if !(1..=366).contains(&retro.within_days) {
                return Err(format!(
                    "bucket `{bucket}`: retro-scan within-days = {}: 1 to 366",
                    retro.within_days
                ));
            }
        }
        Ok(())
    }

    /// A pipeline running YARA whose size limit is above `[yara]
    /// max-object-bytes`: objects in between are read whole by clamd but
    /// not by the rules (the bridge's `over-limit` decides). At the YARA
    /// limit, larger containers are walked member by member instead, and
    /// each member meets both engines.
    fn yara_limit_warnings(&self) -> Vec<String> {
        let Some(yara) = &self.yara else { return Vec::new() };
        let pipelines = self.pipelines();
        let mut warned = Vec::new();
        for (scope, stages) in pipelines.pipelines() {
            let Some(bucket) = scope.bucket() else { continue };
            let limit = pipelines.max_object_bytes(bucket);
            let runs_yara = stages.iter().any(|stage| !stage.grants.get_ref().yara.is_empty());
            if runs_yara
                && limit > yara.max_object_bytes
                && !warned.iter().any(|w: &String| w.contains(&format!("`{bucket}`")))
            {
                warned.push(format!(
                    "bucket `{bucket}`: objects up to {limit} bytes are scanned, but YARA reads {} at most ([yara] \
                     max-object-bytes); set the bucket's max-object-bytes to it and larger containers are walked \
                     member by member through both engines",
                    yara.max_object_bytes
                ));
            }
        }
        warned
    }

    /// Retro-scan windows longer than the results are kept: what expired
    /// is not looked at again.
    fn retro_scan_warnings(&self) -> Vec<String> {
        let Some(keep_days) = self.results.as_ref().map(|r| r.keep_days).filter(|days| *days > 0) else {
            return Vec::new();
        };
        self.buckets
            .iter()
            .filter_map(|(bucket, config)| Some((bucket, config.retro_scan.as_ref()?.within_days)))
            .filter(|(_, within)| *within > keep_days)
            .map(|(bucket, within)| {
                format!(
                    "bucket `{bucket}`: retro-scan within-days = {within} reaches past [results] keep-days = \
                     {keep_days}; results older than that are gone and not scanned again"
                )
            })
            .collect()
    }

    /// `[plugins]` and `[buckets]`, for the engine to load.
    pub fn pipelines(&self) -> PipelinesConfig {
        PipelinesConfig {
            plugins: self.plugins.clone(),
            buckets: self.buckets.clone(),
            accounts: self.accounts.clone(),
            organization: self.organization.clone(),
            enrolled: self.enrolled.clone(),
            text: self.text.clone(),
            default_max_object_bytes: self.agent.max_object_bytes.unwrap_or(self.clamav.stream_max_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::config::{LargeObjects, SettingValue};
    use std::path::Path;

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
        Config::parse(ConfigText::new("/etc/bucketscan/config.toml", text))
    }

    #[test]
    fn the_old_section_name_host_is_read_with_a_warning_naming_its_line() {
        let config = parse(&format!("[host]\ncache-dir = \"/var/cache/b\"\n{GOOD}")).unwrap();
        assert_eq!(
            config.engine.cache_dir.as_deref(),
            Some(std::path::Path::new("/var/cache/b"))
        );
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(
            config.warnings[0].starts_with("/etc/bucketscan/config.toml:1: [host] is now called [engine]"),
            "{:?}",
            config.warnings
        );
        let both = parse(&format!("[host]\n[engine]\n{GOOD}")).unwrap_err().to_string();
        assert!(both.contains("engine"), "{both}");
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.engine, EngineConfig::default());
        assert!(config.warnings.is_empty());
        assert_eq!(config.agent, AgentConfig::default());
        let pipelines = config.pipelines();
        assert_eq!(pipelines.pipelines().count(), 2);
        let stage = &config.buckets["staging"].stages[0];
        assert_eq!(
            stage.settings(),
            vec![
                ("block-mismatch".to_string(), SettingValue::Boolean(true)),
                (
                    "deny".to_string(),
                    SettingValue::List(vec!["executable".into(), "script".into()])
                )
            ]
        );
        let decl = &config.plugins["clamav-bridge"];
        assert_eq!(
            pipelines.plugin_path(decl),
            Path::new("/etc/bucketscan/clamav_bridge.wasm")
        );
        assert_eq!(
            pipelines.max_object_bytes("staging"),
            ClamavConfig::default().stream_max_bytes
        );
    }

    #[test]
    fn large_objects_are_walked_by_default_and_their_limits_are_checked() {
        let pipelines = parse(GOOD).unwrap().pipelines();
        assert_eq!(pipelines.large_objects("staging"), LargeObjects::default());
        assert!(LargeObjects::default().walk);
        let text = format!(
            "{GOOD}\n[buckets.staging.large-objects]\nwalk = false\nmax-members = 50000\nmax-expanded-bytes = 1000\n"
        );
        let large = parse(&text).unwrap().pipelines().large_objects("staging");
        assert!(!large.walk);
        assert_eq!((large.max_members, large.max_expanded_bytes), (50_000, 1000));
        let too_many = format!("{GOOD}\n[buckets.staging.large-objects]\nmax-members = 2000000\n");
        let err = parse(&too_many).unwrap_err().to_string();
        assert!(err.contains("bucket `staging`: large-objects.max-members"), "{err}");
        let unknown = format!("{GOOD}\n[buckets.staging.large-objects]\nmax-files = 5\n");
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("max-files"), "{err}");
    }

    #[test]
    fn the_longest_prefix_selects_the_pipeline() {
        let pipelines = parse(GOOD).unwrap().pipelines();
        let (scope, stages) = pipelines.pipeline_for("staging", "reports/q3.pdf").unwrap();
        assert_eq!(scope.prefix, Some("reports/"));
        assert_eq!(stages.len(), 1);
        let (scope, stages) = pipelines.pipeline_for("staging", "other/x").unwrap();
        assert_eq!(scope.prefix, None);
        assert_eq!(stages.len(), 2);
        assert!(pipelines.pipeline_for("production", "x").is_none());
        assert!(pipelines.pipeline_for("unknown", "x").is_none());
    }

    const ORGANIZATION: &str = r#"
[organization]
role-name = "bucketscan-scanner"
external-id = "shared-secret"

[accounts."111122223333"]
[[accounts."111122223333".stages]]
plugin = "clamav-bridge"
grants = { clamav = true }

[accounts."*"]
max-object-bytes = 1000
[[accounts."*".stages]]
plugin = "filetype-filter"
"#;

    #[test]
    fn an_enrolled_bucket_takes_its_accounts_pipeline_and_owner() {
        let config = parse(&format!("{GOOD}{ORGANIZATION}")).unwrap();
        let pipelines = config.pipelines();
        assert!(
            pipelines.pipeline_for("member-uploads", "x").is_none(),
            "not enrolled yet"
        );
        config.enrolled.enroll("member-uploads", "111122223333");
        config.enrolled.enroll("other-uploads", "444455556666");
        let (scope, stages) = pipelines.pipeline_for("member-uploads", "x").unwrap();
        assert_eq!(scope.to_string(), "account `111122223333`");
        assert_eq!(stages[0].plugin.get_ref(), "clamav-bridge");
        assert_eq!(
            pipelines.expected_owner("member-uploads").as_deref(),
            Some("111122223333")
        );
        let (scope, _) = pipelines.pipeline_for("other-uploads", "x").unwrap();
        assert_eq!(scope.to_string(), "accounts `*`");
        assert_eq!(pipelines.max_object_bytes("other-uploads"), 1000);
        assert_eq!(
            pipelines.expected_owner("other-uploads").as_deref(),
            Some("444455556666")
        );
        // A declared bucket keeps its own pipeline, whoever enrolls it.
        config.enrolled.enroll("staging", "111122223333");
        assert_eq!(
            pipelines.pipeline_for("staging", "x").unwrap().0.to_string(),
            "bucket `staging`"
        );
        assert_eq!(pipelines.expected_owner("staging"), None);
        assert_eq!(
            config.organization.unwrap().role_arn("111122223333"),
            "arn:aws:iam::111122223333:role/bucketscan-scanner"
        );
    }

    #[test]
    fn accounts_are_refused_with_what_is_wrong() {
        let cases = [
            (
                ORGANIZATION.replace(
                    "[organization]\nrole-name = \"bucketscan-scanner\"\nexternal-id = \"shared-secret\"\n",
                    "",
                ),
                "[accounts] needs [organization]",
            ),
            (
                ORGANIZATION.replace("\"111122223333\"", "\"1111\""),
                "[accounts.\"1111\"]: expected a 12-digit",
            ),
            (
                ORGANIZATION.replace("max-object-bytes = 1000", "expected-owner = \"111122223333\""),
                "[accounts.\"*\"] expected-owner",
            ),
            (
                ORGANIZATION.replace("max-object-bytes = 1000", "role-arn = \"arn:aws:iam::1:role/x\""),
                "[accounts.\"*\"] role-arn",
            ),
            (
                ORGANIZATION.replace("bucketscan-scanner", "no/slashes"),
                "role-name `no/slashes`",
            ),
            (format!("{ORGANIZATION}\n[accounts.\"222233334444\"]\n"), "no stages"),
        ];
        for (text, expected) in cases {
            let err = parse(&format!("{GOOD}{text}")).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
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
    fn a_bad_sha256_pin_or_owner_is_refused() {
        let text = GOOD.replace(
            "path = \"clamav_bridge.wasm\"",
            "path = \"clamav_bridge.wasm\"\nsha256 = \"abc\"",
        );
        assert_eq!(parse(&text).unwrap_err().line, 7);
        let text = GOOD.replace(
            "[buckets.production]\n",
            "[buckets.production]\nexpected-owner = \"12\"\n",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("12-digit"), "{err}");
    }

    #[test]
    fn an_object_limit_the_spool_budget_cannot_hold_is_refused() {
        let text = format!(
            "[agent]\nspool-threshold-bytes = 65536\nspool-budget-bytes = 1048576\nmax-object-bytes = 2097152\n{GOOD}"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("could never be fetched"), "{err}");
    }

    #[test]
    fn a_first_byte_timeout_a_long_poll_would_trip_is_refused() {
        let err = parse(&format!(
            "[agent]\nwait-time-secs = 20\nfirst-byte-timeout-secs = 29\n{GOOD}"
        ))
        .unwrap_err();
        assert!(
            err.message
                .contains("first-byte-timeout-secs (29) must be at least wait-time-secs (20) + 10"),
            "{err}"
        );
        assert!(
            parse(&format!(
                "[agent]\nwait-time-secs = 20\nfirst-byte-timeout-secs = 30\n{GOOD}"
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_config_from_an_environment_variable_names_it_in_errors() {
        let source = ConfigSource::Env("BUCKETSCAN_TEST_CONFIG_ENV".into());
        // SAFETY: this variable is used by this test only.
        unsafe { std::env::set_var("BUCKETSCAN_TEST_CONFIG_ENV", "[agent]\nconcurrency = \"two\"\n") };
        let err = Config::load(&source).unwrap_err().to_string();
        assert!(err.starts_with("$BUCKETSCAN_TEST_CONFIG_ENV:2:15:"), "{err}");
        unsafe { std::env::set_var("BUCKETSCAN_TEST_CONFIG_ENV", GOOD) };
        let config = Config::load(&source).unwrap();
        let pipelines = config.pipelines();
        let decl = pipelines.plugins.values().next().unwrap();
        assert!(
            pipelines.plugin_path(decl).is_relative(),
            "relative to the working directory"
        );
        unsafe { std::env::remove_var("BUCKETSCAN_TEST_CONFIG_ENV") };
    }

    #[test]
    fn a_retro_scan_names_each_section_it_needs_and_its_window() {
        let retro = "[buckets.staging.retro-scan]\nwithin-days = 3\n";
        let results = "[results]\ntable = \"results\"\n";
        let signatures = "[signatures]\ndatabase-dir = \"/var/lib/clamav\"\n";
        let queue = "[agent]\nsweep-queues = [\"http://127.0.0.1/q\"]\nseal-key = { env = \"K\" }\n";
        let error = |parts: &[&str]| parse(&format!("{GOOD}{}", parts.concat())).unwrap_err().to_string();
        assert!(error(&[retro]).contains("bucket `staging`: retro-scan needs [results]"));
        assert!(error(&[retro, results]).contains("retro-scan needs [signatures]"));
        assert!(error(&[retro, results, signatures]).contains("retro-scan needs [agent] sweep-queues"));
        let unsealed = "[agent]\nsweep-queues = [\"http://127.0.0.1/q\"]\n";
        assert!(error(&[retro, results, signatures, unsealed]).contains("retro-scan needs [agent] seal-key"));
        let short_keep = parse(&format!(
            "{GOOD}{retro}[results]\ntable = \"t\"\nkeep-days = 2\n{signatures}{queue}"
        ))
        .unwrap();
        assert!(
            short_keep
                .warnings
                .iter()
                .any(|w| w.contains("within-days = 3 reaches past [results] keep-days = 2")),
            "{:?}",
            short_keep.warnings
        );
        let config = parse(&format!("{GOOD}{retro}{results}{signatures}{queue}")).unwrap();
        let parsed = config.buckets["staging"].retro_scan.clone().unwrap();
        assert_eq!((parsed.within_days, parsed.newest_first), (3, true));
        let too_long = "[buckets.staging.retro-scan]\nwithin-days = 400\n";
        assert!(
            error(&[too_long, results, signatures, queue]).contains("within-days = 400: 1 to 366"),
            "{}",
            error(&[too_long, results, signatures, queue])
        );
    }

    #[test]
    fn sweeps_get_one_slot_unless_told_and_never_more_than_there_are() {
        let agent = |concurrency, sweep_slots| AgentConfig {
            concurrency,
            sweep_slots,
            ..AgentConfig::default()
        };
        assert_eq!(agent(4, None).sweep_slots(), 1);
        assert_eq!(agent(1, None).sweep_slots(), 1);
        assert_eq!(agent(4, Some(3)).sweep_slots(), 3);
        assert_eq!(agent(4, Some(10)).sweep_slots(), 4);
    }
}
