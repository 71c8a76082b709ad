//! `bucketscan clamd …`: what the clamd container of the task runs, so the
//! image needs no shell and no netcat.
//!
//! - `sidecar`: clamd cannot start without a database, and databases arrive
//!   through the agent's sync from S3 into the shared volume. Waits for the
//!   first one, creates clamd's own temp directory, then becomes clamd —
//!   with an empty environment: clamd parses what uploaders send, and a
//!   parser bug must not hand them the task's credentials (ECS gives every
//!   container the credentials endpoint's URI), a seal key or the config.
//! - `ping`: the clamd container's health check (`PING` → `PONG`).

use anyhow::{Context as _, bail};
use bucketscan_engine::Clamd;
use bucketscan_engine::config::ClamavConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum ClamdCommand {
    /// Wait for a signature database, then exec clamd with `--config`.
    Sidecar {
        #[arg(long, default_value = "/etc/bucketscan/clamd.conf")]
        config: PathBuf,
        #[arg(long, default_value = "/usr/sbin/clamd")]
        clamd: PathBuf,
        /// Give up after this long without a database (0: wait forever).
        #[arg(long, default_value_t = 0)]
        timeout_secs: u64,
    },
    /// Exit 0 when clamd at `--addr` answers PING.
    Ping {
        #[arg(long, default_value = "127.0.0.1:3310")]
        addr: String,
    },
}

/// Database files clamd loads (what the agent's sync installs).
const DATABASE_EXTENSIONS: &[&str] = &["cvd", "cld", "cud", "hdb", "hsb", "ndb", "ldb", "cdb", "ign2", "fp"];

pub async fn run(command: ClamdCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClamdCommand::Sidecar {
            config,
            clamd,
            timeout_secs,
        } => sidecar(&config, &clamd, Duration::from_secs(timeout_secs)).await,
        ClamdCommand::Ping { addr } => {
            let client = Clamd::new(&ClamavConfig {
                address: addr.clone(),
                timeout_secs: 3,
                ..ClamavConfig::default()
            });
            match client.ping().await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(err) => {
                    eprintln!("clamd at {addr}: {err}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// A directive's value in a clamd.conf (`Name value`, `#` comments).
fn directive(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(char::is_whitespace)?;
            (key == name).then(|| value.trim().to_owned())
        })
}

fn has_database(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            !name.starts_with('.')
                && Path::new(&name)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| DATABASE_EXTENSIONS.contains(&e))
        })
    })
}

async fn sidecar(config: &Path, clamd: &Path, timeout: Duration) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let Some(database_dir) = directive(&text, "DatabaseDirectory") else {
        bail!("{}: no DatabaseDirectory", config.display());
    };
    let database_dir = PathBuf::from(database_dir);
    eprintln!(
        "clamd sidecar: waiting for a signature database in {}",
        database_dir.display()
    );
    let started = std::time::Instant::now();
    while !has_database(&database_dir) {
        if !timeout.is_zero() && started.elapsed() > timeout {
            bail!(
                "no signature database appeared in {} within {timeout:?}",
                database_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // clamd's own scratch space, apart from the agent's spool on the
    // shared volume.
    if let Some(temp) = directive(&text, "TemporaryDirectory") {
        std::fs::create_dir_all(&temp).with_context(|| format!("creating clamd's TemporaryDirectory {temp}"))?;
    }
    eprintln!("clamd sidecar: starting {} with an empty environment", clamd.display());
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(clamd)
        .arg(format!("--config-file={}", config.display()))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .exec();
    bail!("exec {}: {err}", clamd.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_like_clamd_reads_them() {
        let text = "# comment\nDatabaseDirectory /var/lib/x\nTCPSocket 3310\n#TemporaryDirectory /nope\nTemporaryDirectory   /tmp/clamd\n";
        assert_eq!(directive(text, "DatabaseDirectory").as_deref(), Some("/var/lib/x"));
        assert_eq!(directive(text, "TemporaryDirectory").as_deref(), Some("/tmp/clamd"));
        assert_eq!(directive(text, "LogFile"), None);
    }
}
