//! `--config FILE | --config-env VAR`, for the commands a task runs.

use bucketscan_core::config::ConfigSource;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The config file (watched: changes are hot-reloaded).
    #[arg(long, short, required_unless_present = "config_env", conflicts_with = "config_env")]
    config: Option<PathBuf>,
    /// Read the whole config from this environment variable instead (on
    /// ECS, filled from an SSM parameter or a secret).
    #[arg(long, value_name = "VAR")]
    config_env: Option<String>,
}

impl ConfigArgs {
    pub fn source(&self) -> anyhow::Result<ConfigSource> {
        match (&self.config, &self.config_env) {
            (Some(path), _) => Ok(ConfigSource::File(path.clone())),
            (None, Some(var)) => Ok(ConfigSource::Env(var.clone())),
            (None, None) => anyhow::bail!("give --config FILE or --config-env VAR"),
        }
    }
}
