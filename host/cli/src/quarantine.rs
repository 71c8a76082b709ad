//! `bucketscan quarantine list`, `bucketscan release` and `bucketscan
//! quarantine revoke`: what the quarantine holds, a false positive given
//! back, and an allow-list entry taken back.

use crate::output::Format;
use anyhow::{Context as _, bail};
use bucketscan_core::allow::parse_s3_url;
use bucketscan_runtime::agent::Agent;
use bucketscan_runtime::config::Config;
use bucketscan_runtime::quarantine::{self, list, release};
use bucketscan_runtime::results::revocations::StoredRevocation;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum QuarantineCommand {
    /// List what the quarantine buckets hold, with the result and finding of each.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// The quarantine bucket (default: every bucket the config's
        /// stages quarantine into).
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Revoke an allow-listed digest for the whole fleet: recorded in the results store
    /// and the allow-list object; bytes with it are scanned as usual again.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        /// The SHA-256 to revoke.
        #[arg(value_name = "HEX")]
        sha256: String,
        /// Why these bytes are no longer allowed.
        #[arg(long)]
        reason: String,
        /// Who revokes it (default: the caller's identity from STS).
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ReleaseArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// The quarantined object: s3://QUARANTINE-BUCKET/KEY
    object: String,
    /// Where it goes (default: where it came from, by its key).
    #[arg(long, value_name = "s3://BUCKET/KEY")]
    to: Option<String>,
    /// Why it is safe (recorded on the object, in the allow-list and the notification).
    #[arg(long)]
    reason: String,
    /// The SHA-256 of the bytes you approved (from the alert, or `quarantine
    /// list`): other bytes under the key are refused.
    #[arg(long, value_name = "HEX")]
    sha256: String,
    /// Who releases it (default: the caller's identity from STS).
    #[arg(long)]
    by: Option<String>,
    /// Keep the quarantined copy.
    #[arg(long)]
    keep: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

pub async fn command(command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    match command {
        QuarantineCommand::List { config, bucket, output } => list_command(config, bucket, output).await,
        QuarantineCommand::Revoke {
            config,
            sha256,
            reason,
            by,
        } => revoke_command(&config, &sha256, &reason, by).await,
    }
}

async fn revoke_command(
    path: &std::path::Path,
    sha256: &str,
    reason: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        bail!("--reason is empty: say why these bytes are no longer allowed");
    }
    bucketscan_core::allow::check_digest(sha256).map_err(|why| anyhow::anyhow!("the SHA-256: {why}"))?;
    let config = Config::load_file(path)?;
    let agent = Agent::from_config(config).await.context("loading the config")?;
    let by = release::identity(&agent, by).await;
    let revocation = StoredRevocation::now(sha256, &by, reason.trim(), "cli");
    let revoked = agent.revoke_allowed(revocation).await?;
    println!("revoked {}", revoked.revocation.sha256);
    println!("  by        {} at {}", revoked.revocation.by, revoked.revocation.at);
    println!("  reason    {}", revoked.revocation.reason);
    if revoked.recorded {
        println!("  recorded  in the results store: agents drop it at their next reload");
    }
    if let Some(list) = &revoked.list {
        println!("  written   to {list}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_command(path: PathBuf, bucket: Option<String>, output: Format) -> anyhow::Result<ExitCode> {
    let config = Config::load_file(&path)?;
    let buckets: Vec<String> = match bucket {
        Some(bucket) => vec![bucket],
        None => quarantine::quarantine_buckets(&config).into_iter().collect(),
    };
    if buckets.is_empty() {
        bail!(
            "{}: no stage quarantines into another bucket (a stage with `on` = infected/blocked and a storage \
             grant); name the bucket with --bucket",
            path.display()
        );
    }
    let agent = Agent::from_config(config).await.context("loading the config")?;
    let mut held = Vec::new();
    for bucket in &buckets {
        held.extend(list::list(&agent, bucket).await?);
    }
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&held)?),
        Format::Text => {
            println!(
                "{:<50} {:>10} {:<12} {:<40} scanned",
                "object", "bytes", "result", "finding"
            );
            for item in &held {
                println!(
                    "{:<50} {:>10} {:<12} {:<40} {}",
                    format!("s3://{}/{}", item.bucket, bucketscan_core::object::printable(&item.key)),
                    item.size,
                    item.result.as_deref().unwrap_or("-"),
                    item.finding.as_deref().unwrap_or("-"),
                    item.scanned.as_deref().unwrap_or("-"),
                );
            }
            println!("{} objects held in {}", held.len(), buckets.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn release_command(args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let (bucket, key) = parse_s3_url(&args.object).map_err(anyhow::Error::msg)?;
    let to = args
        .to
        .as_deref()
        .map(parse_s3_url)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if args.reason.trim().is_empty() {
        bail!("--reason is empty: say why these bytes are safe");
    }
    let config = Config::load_file(&args.config)?;
    let agent = Agent::from_config(config).await.context("loading the config")?;
    let released = release::release(
        &agent,
        release::ReleaseRequest {
            bucket,
            key,
            to,
            reason: args.reason,
            by: args.by,
            keep: args.keep,
            sha256: args.sha256,
        },
    )
    .await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&released)?),
        Format::Text => {
            println!("released {} -> {}", released.from, released.to);
            println!(
                "  was       {} ({})",
                released.was,
                released.finding.as_deref().unwrap_or("-")
            );
            println!("  sha256    {}", released.sha256);
            println!("  by        {} at {}", released.by, released.at);
            println!("  reason    {}", released.reason);
            match &released.allow_list {
                Some(list) => println!("  allowed   added to {list}: later scans of these bytes pass"),
                None => println!(
                    "  allowed   no [allow-list] object configured: a rescan would quarantine these bytes again"
                ),
            }
            if let Some(line) = &released.published {
                println!("  notified  {line}");
            }
            if released.quarantined_copy_deleted {
                println!("  the quarantined copy was deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
