//! Secrets named by the config: an environment variable of the agent or a
//! file (e.g. a mounted secret). Never the config text itself, and never
//! handed to a plugin.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret from {origin}: {problem}")]
pub struct SecretError {
    /// Where the secret was looked for.
    pub origin: String,
    pub problem: String,
}

impl SecretSource {
    /// Reads the secret (at least 16 bytes); the error names where it looked.
    pub fn read(&self) -> Result<Vec<u8>, SecretError> {
        let error = |problem: String| SecretError {
            origin: self.to_string(),
            problem,
        };
        let secret = match self {
            Self::Env(name) => std::env::var(name)
                .map_err(|_| error("it is not set".into()))?
                .into_bytes(),
            Self::File(path) => std::fs::read(path).map_err(|err| error(format!("cannot read it: {err}")))?,
        };
        // A trailing newline from `echo secret > file` is not part of it.
        let trimmed = secret.trim_ascii_end();
        if trimmed.len() < 16 {
            return Err(error("it is shorter than 16 bytes".into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_missing_secrets_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        assert_eq!(SecretSource::File(file.clone()).read().unwrap(), b"0123456789abcdef");
        std::fs::write(&file, "short").unwrap();
        let err = SecretSource::File(file).read().unwrap_err().to_string();
        assert!(err.contains("shorter than 16 bytes"), "{err}");
        let err = SecretSource::Env("BUCKETSCAN_TEST_NO_SUCH_SECRET".into())
            .read()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the secret from environment variable `BUCKETSCAN_TEST_NO_SUCH_SECRET`: it is not set"
        );
    }
}
