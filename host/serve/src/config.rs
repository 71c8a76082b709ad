//! `[serve]`: the limits and API keys of `bucketscan serve`, the HTTP
//! scanning API. The agent's config keeps this section as an opaque table
//! (the agent has no use for it); this crate reads it from the same text,
//! so its errors name the file, line and field like every other section's.

use bucketscan_core::config::ConfigError;
use bucketscan_runtime::config::Config;
use serde::Deserialize;

/// `[serve]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServeConfig {
    /// The largest request body `POST /v1/scan` reads (default: `[clamav]
    /// stream-max-bytes`); a larger one is answered 413 without reading
    /// it when announced, as soon as it passes the limit otherwise.
    pub max_body_bytes: Option<u64>,
    /// Scans running at once (uploads and object scans together).
    pub concurrency: usize,
    /// Slots one key may hold or wait for at once (default: half of
    /// `concurrency`); past it the key is answered 429.
    pub per_key_concurrency: Option<usize>,
    /// The queue that object scans the server could not finish (still
    /// running at shutdown, or failed between two steps) are handed to as
    /// on-demand scan events (default: the first of `[agent] queues`, where
    /// the agents take them).
    pub handoff_queue: Option<String>,
    /// Whether `serve` itself takes the scans handed to `handoff-queue`
    /// (a stack of API tasks with no agents: each finishes the others').
    pub take_handoffs: bool,
    /// Requests that may wait for a scan slot; one more is answered 503
    /// with `Retry-After` at once. Never an unbounded queue.
    pub queue: usize,
    /// How long a request may wait for a slot before it is answered 503.
    pub queue_wait_secs: u64,
    /// Everything one request may take, body and scan included; then 504.
    pub request_timeout_secs: u64,
    /// A client that sends no body bytes for this long is answered 408
    /// (and one that sends no complete headers for this long is dropped).
    pub idle_timeout_secs: u64,
    /// The slowest a body may arrive on average (after the first
    /// `idle-timeout-secs`): a client trickling bytes to hold a scan slot
    /// is answered 408.
    pub min_body_bytes_per_sec: u64,
    /// Object-scan jobs kept (finished ones are forgotten oldest first).
    pub max_jobs: usize,
    /// The longest one job may run; then it fails with `scan_timeout`.
    pub job_timeout_secs: u64,
    /// Pipelines anyone may use without a key. Empty: no anonymous access.
    pub anonymous_pipelines: Vec<String>,
    pub keys: Vec<ApiKeyConfig>,
    /// `[serve.console]`: the console under `/console/`, behind the load
    /// balancer's sign-on. None: no console (unless a local dev user).
    pub console: Option<bucketscan_console::config::ConsoleConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: None,
            concurrency: 4,
            per_key_concurrency: None,
            handoff_queue: None,
            take_handoffs: false,
            queue: 16,
            queue_wait_secs: 30,
            request_timeout_secs: 300,
            idle_timeout_secs: 15,
            min_body_bytes_per_sec: 32 * 1024,
            max_jobs: 1000,
            job_timeout_secs: 3600,
            anonymous_pipelines: Vec::new(),
            keys: Vec::new(),
            console: None,
        }
    }
}

/// One API key: only its SHA-256 is stored (`bucketscan serve key` makes
/// a key and prints its entry).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiKeyConfig {
    /// Names the caller in logs and reports.
    pub id: String,
    /// SHA-256 (hex) of the key.
    pub sha256: String,
    /// Pipelines (`[buckets.NAME]`) it may scan uploads with; `"*"`: all.
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// Buckets whose objects it may have scanned (with their actions);
    /// `"*"`: all.
    #[serde(default)]
    pub buckets: Vec<String>,
}

impl ServeConfig {
    /// Checks the keys against the buckets the config declares; the error
    /// names the entry.
    pub fn validate(&self, declared: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("[serve] concurrency: at least 1".into());
        }
        if self.per_key_concurrency == Some(0) {
            return Err("[serve] per-key-concurrency: at least 1".into());
        }
        if let Some(console) = &self.console {
            console.validate()?;
        }
        if self.take_handoffs && self.handoff_queue.is_none() {
            return Err("[serve] take-handoffs: set handoff-queue, the queue to take them from".into());
        }
        let known = |scope: &str, name: &str, what: &str| {
            if name == "*" || declared(name) {
                Ok(())
            } else {
                Err(format!(
                    "{scope}: {what} `{name}` is not a declared bucket ([buckets.{name}])"
                ))
            }
        };
        for name in &self.anonymous_pipelines {
            known("[serve] anonymous-pipelines", name, "pipeline")?;
        }
        for (index, key) in self.keys.iter().enumerate() {
            let scope = format!("[serve] keys[{index}] (`{}`)", key.id);
            if key.id.is_empty() {
                return Err(format!("[serve] keys[{index}]: id is empty"));
            }
            if self.keys[..index].iter().any(|other| other.id == key.id) {
                return Err(format!("{scope}: id used twice"));
            }
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{scope}: sha256 `{}` is not a SHA-256 (64 hex digits); `bucketscan serve key` prints one",
                    key.sha256
                ));
            }
            if self.keys[..index]
                .iter()
                .any(|other| other.sha256.eq_ignore_ascii_case(&key.sha256))
            {
                return Err(format!("{scope}: the same key as an earlier entry"));
            }
            for name in &key.pipelines {
                known(&scope, name, "pipeline")?;
            }
            for name in &key.buckets {
                known(&scope, name, "bucket")?;
            }
        }
        Ok(())
    }
}

/// The one section this crate reads out of the whole file.
#[derive(Deserialize)]
struct ServeSection {
    #[serde(default)]
    serve: ServeConfig,
}

impl ServeConfig {
    /// `[serve]` of `config` (defaults when absent), checked against the
    /// buckets it declares.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let section: ServeSection = config.text.deserialize()?;
        section
            .serve
            .validate(&|name| config.buckets.contains_key(name))
            .map_err(|why| config.text.error(None, why))?;
        Ok(section.serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::config::ConfigText;

    fn serve_section(text: &str) -> Result<ServeConfig, ConfigError> {
        let config = Config::parse(ConfigText::new("/etc/bucketscan/config.toml", text)).expect("the agent's sections");
        ServeConfig::from_config(&config)
    }

    #[test]
    fn absent_is_the_defaults() {
        assert_eq!(serve_section("[buckets.staging]\n").unwrap(), ServeConfig::default());
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_line() {
        let err = serve_section("[buckets.staging]\n\n[serve]\nconcurency = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.toml:4"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn a_key_for_an_undeclared_bucket_is_refused() {
        let text = format!(
            "[buckets.staging]\n[serve]\n[[serve.keys]]\nid = \"ops\"\nsha256 = \"{}\"\nbuckets = [\"elsewhere\"]\n",
            "a".repeat(64)
        );
        let err = serve_section(&text).unwrap_err().to_string();
        assert!(err.contains("`elsewhere` is not a declared bucket"), "{err}");
    }
}
