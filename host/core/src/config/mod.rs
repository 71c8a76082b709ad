//! The config file's shared machinery: where its text comes from, errors
//! that name `FILE:LINE:COLUMN`, secrets, and the sections the core owns —
//! `[plugins]` and `[buckets]` ([`pipelines`]), `[tags]`
//! (`crate::tags::TagKeys`) and `[allow-list]` (`crate::allow`). Every
//! other section belongs to the crate that uses it (`[engine]` and
//! `[clamav]` to the engine; `[agent]`, `[notifications]` and
//! `[signatures]` to the agent; `[serve]` to the serve crate), and the
//! agent, the application that reads the whole file, composes them.

mod organization;
mod pipelines;
mod secret;
mod settings;

pub use organization::{ANY_ACCOUNT, Enrolled, OrganizationConfig, PROTECT_TAG, is_account_id};
pub use pipelines::{
    BucketConfig, LargeObjects, MAX_MEMBERS_LIMIT, PipelineScope, PipelinesConfig, PluginDecl, PrefixConfig,
    RetroScanConfig, ScopeOwner, StageConfig,
};
pub use secret::{SecretError, SecretSource};
pub use settings::SettingValue;

use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The text of a config and where it came from: errors found while or
/// after parsing it point into it, even if the file changed since.
#[derive(Debug, Clone, Default)]
pub struct ConfigText {
    /// The file, or `$VARIABLE` for a config read from the environment.
    pub source: PathBuf,
    pub text: Arc<str>,
}

impl ConfigText {
    pub fn new(source: impl Into<PathBuf>, text: &str) -> Self {
        Self {
            source: source.into(),
            text: text.into(),
        }
    }

    /// An error at `span` (or without a position).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = span.map_or((0, 0), |span| line_column(&self.text, span.start));
        ConfigError {
            file: self.source.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `FILE:LINE` of a byte span, for errors found after parsing (e.g. when
    /// a plugin fails to load).
    pub fn locate(&self, span: Range<usize>) -> String {
        let (line, _) = line_column(&self.text, span.start);
        format!("{}:{line}", self.source.display())
    }

    /// Deserializes the whole text, with located errors.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|err| self.error(err.span(), err.message()))
    }

    /// A path from the config: relative ones resolve against the config
    /// file's directory (the working directory for a config from the
    /// environment).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.source.to_string_lossy().starts_with('$') {
            path.to_owned()
        } else {
            self.source.parent().unwrap_or(Path::new(".")).join(path)
        }
    }
}

/// Where the config comes from: a file, or (in a container) an environment
/// variable holding the whole TOML text, which ECS can fill from an SSM
/// parameter or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Env(String),
}

impl ConfigSource {
    /// Reads the text.
    pub fn read(&self) -> Result<ConfigText, ConfigError> {
        match self {
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read config: {err}"),
                })?;
                Ok(ConfigText::new(path.clone(), &text))
            }
            Self::Env(name) => {
                // Errors read `$NAME:LINE:COL: …`.
                let label = PathBuf::from(format!("${name}"));
                let text = std::env::var(name).map_err(|_| ConfigError {
                    file: label.clone(),
                    line: 0,
                    column: 0,
                    message: "environment variable is not set (or not UTF-8)".into(),
                })?;
                Ok(ConfigText::new(label, &text))
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

    #[test]
    fn errors_name_file_line_and_column() {
        let text = ConfigText::new("/etc/b.toml", "a = 1\nb = \"x\"\n");
        let err = text.error(Some(8..9), "bad");
        assert_eq!(err.to_string(), "/etc/b.toml:2:3: bad");
        assert_eq!(text.error(None, "gone").to_string(), "/etc/b.toml: gone");
        assert_eq!(text.locate(6..7), "/etc/b.toml:2");
    }

    #[test]
    fn relative_paths_resolve_against_the_file_or_the_working_directory() {
        let file = ConfigText::new("/etc/bucketscan/config.toml", "");
        assert_eq!(file.resolve(Path::new("p.wasm")), Path::new("/etc/bucketscan/p.wasm"));
        assert_eq!(file.resolve(Path::new("/abs.wasm")), Path::new("/abs.wasm"));
        let env = ConfigText::new("$BUCKETSCAN_CONFIG", "");
        assert_eq!(env.resolve(Path::new("p.wasm")), Path::new("p.wasm"));
    }

    #[test]
    fn a_config_from_the_environment_names_the_variable() {
        let source = ConfigSource::Env("BUCKETSCAN_TEST_CONFIG_SOURCE".into());
        // SAFETY: this variable is used by this test only.
        unsafe { std::env::remove_var("BUCKETSCAN_TEST_CONFIG_SOURCE") };
        let err = source.read().unwrap_err().to_string();
        assert_eq!(
            err,
            "$BUCKETSCAN_TEST_CONFIG_SOURCE: environment variable is not set (or not UTF-8)"
        );
        unsafe { std::env::set_var("BUCKETSCAN_TEST_CONFIG_SOURCE", "x = 1") };
        assert_eq!(&*source.read().unwrap().text, "x = 1");
        assert_eq!(source.file(), None);
        unsafe { std::env::remove_var("BUCKETSCAN_TEST_CONFIG_SOURCE") };
    }
}
