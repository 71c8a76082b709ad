//! `bucketscan quarantine list` and `bucketscan release`: what the
//! quarantine holds, and a false positive given back.

use crate::output::Format;
use anyhow::{Context as _, bail};
use bucketscan_core::allow::parse_s3_url;
use bucketscan_runtime::agent::Agent;
use bucketscan_runtime::config::Config;
use bucketscan_runtime::quarantine::{self, list, release};
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

pub async fn list_command(command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let QuarantineCommand::List { config, bucket, output } = command;
    let path = config;
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
