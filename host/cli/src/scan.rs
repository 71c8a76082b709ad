//! `bucketscan scan --config FILE s3://bucket[/prefix]`: sweep the objects
//! already in a bucket through its pipeline; with `--version-id`, scan one
//! exact version of one object (current or not), with all its actions.

use crate::output::Format;
use anyhow::{Context as _, bail};
use bucketscan_runtime::agent::{Agent, Handled};
use bucketscan_runtime::config::Config;
use bucketscan_runtime::fleet_sweep::{self, EnqueueOptions, Listing};
use bucketscan_runtime::sweep::{self, SweepItem, SweepOptions};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ScanArgs {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
    /// What to sweep: s3://bucket or s3://bucket/prefix
    target: String,
    /// Scan objects again even when tagged from the current signature database.
    #[arg(long)]
    rescan: bool,
    /// Objects scanned at once (default: [agent] concurrency).
    #[arg(long)]
    concurrency: Option<usize>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Scan exactly this version of the object s3://bucket/key (on demand:
    /// even when already tagged, even when not the current version).
    #[arg(long, value_name = "VERSION")]
    version_id: Option<String>,
    /// Scan nothing here: queue one sweep item per object for the fleet of
    /// agents (see --queue).
    #[arg(long, conflicts_with_all = ["version_id", "concurrency"])]
    enqueue: bool,
    /// The queue sweep items go to (default: the first of `[agent]
    /// sweep-queues`, else of `queues`).
    #[arg(long, requires = "enqueue", value_name = "URL")]
    queue: Option<String>,
    /// Sweep items queued per second at most.
    #[arg(long, requires = "enqueue", default_value_t = 100)]
    rate: u32,
    /// Resume a sweep: list the keys after this one (the `last_key` a
    /// stopped or finished sweep printed).
    #[arg(long, requires = "enqueue", value_name = "KEY", conflicts_with = "inventory")]
    start_after: Option<String>,
    /// List the objects from an S3 Inventory report of the bucket (its
    /// manifest.json, CSV or Parquet) instead of ListObjectsV2.
    #[arg(long, requires = "enqueue", value_name = "s3://BUCKET/…/manifest.json")]
    inventory: Option<String>,
    /// Resume an inventory sweep at FILE:ROW (the `resume_at` a stopped
    /// or finished sweep printed).
    #[arg(long, requires = "inventory", value_name = "FILE:ROW")]
    resume_at: Option<fleet_sweep::Position>,
    /// Names the sweep in its items and the agents' logs (default: made
    /// from the time).
    #[arg(long, requires = "enqueue", value_name = "ID")]
    sweep_id: Option<String>,
}

fn parse_target(target: &str) -> anyhow::Result<(String, Option<String>)> {
    let Some(rest) = target.strip_prefix("s3://") else {
        bail!("`{target}` is not an s3://bucket[/prefix] URL");
    };
    let (bucket, prefix) = match rest.split_once('/') {
        Some((bucket, prefix)) if !prefix.is_empty() => (bucket, Some(prefix.to_owned())),
        Some((bucket, _)) => (bucket, None),
        None => (rest, None),
    };
    if bucket.is_empty() {
        bail!("`{target}` names no bucket");
    }
    Ok((bucket.to_owned(), prefix))
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let (bucket, prefix) = parse_target(&args.target)?;
    let source = args.config.source()?;
    let config = Config::load(&source)?;
    if !config.buckets.contains_key(&bucket) {
        bail!(
            "{}: bucket `{bucket}` is not declared; add [buckets.{bucket}] with its stages",
            source
        );
    }
    if let Some(version) = &args.version_id {
        let Some(key) = prefix else {
            bail!("--version-id needs one object: s3://{bucket}/KEY");
        };
        return scan_version(config, &bucket, &key, version, args.output).await;
    }
    if args.enqueue {
        return enqueue(config, &args, bucket, prefix).await;
    }
    let options = SweepOptions {
        bucket,
        prefix,
        rescan: args.rescan,
        concurrency: args.concurrency.unwrap_or(config.agent.concurrency),
    };
    let agent = Arc::new(agent_with_signatures(config).await?);
    // A sweep may run for hours: releases and revocations made meanwhile
    // reach it as they reach the agents.
    agent.spawn_allow_list_refresh();
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (mut count, mut bytes) = (0u64, 0u64);
    let items = sweep::sweep(agent, &options, |item: &SweepItem| {
        count += 1;
        bytes += item.size;
        let rate = bytes as f64 / started.elapsed().as_secs_f64().max(1e-3) / 1e6;
        if terminal {
            eprint!(
                "\r{count} objects, {:.1} MB, {rate:.1} MB/s  {:<40}",
                bytes as f64 / 1e6,
                bucketscan_core::text::cap_start(&item.key, 40)
            );
            let _ = std::io::stderr().flush();
        } else if args.output == Format::Text {
            eprintln!("{count} {} {} ({} bytes)", item.outcome, item.key, item.size);
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    if terminal {
        eprintln!();
    }
    let mut summary: BTreeMap<&str, u64> = BTreeMap::new();
    for item in &items {
        *summary.entry(item.outcome.as_str()).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    match args.output {
        Format::Json => {
            let value = serde_json::json!({
                "bucket": options.bucket,
                "prefix": options.prefix,
                "objects": items,
                "summary": summary,
                "bytes": bytes,
                "seconds": elapsed,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            println!("{:<12} {:>8}", "outcome", "objects");
            for (outcome, n) in &summary {
                println!("{outcome:<12} {n:>8}");
            }
            println!(
                "{count} objects, {:.1} MB in {elapsed:.1} s ({:.1} objects/s)",
                bytes as f64 / 1e6,
                count as f64 / elapsed.max(1e-3)
            );
        }
    }
    let failed = items.iter().any(|i| i.outcome == "failed");
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Queues the listing as sweep items for the agents; prints what it
/// queued (and, when it stops early, where to resume).
async fn enqueue(config: Config, args: &ScanArgs, bucket: String, prefix: Option<String>) -> anyhow::Result<ExitCode> {
    let default_queue = config.agent.sweep_queues.first().or(config.agent.queues.first());
    let Some(queue_url) = args.queue.clone().or_else(|| default_queue.cloned()) else {
        bail!(
            "{}: --enqueue needs a queue: [agent] sweep-queues or queues, or --queue URL",
            args.config.source()?
        );
    };
    if let Some(id) = args
        .sweep_id
        .as_deref()
        .filter(|id| !bucketscan_runtime::events::valid_sweep_id(id))
    {
        bail!("--sweep-id `{id}`: 1 to 128 letters, digits, `.`, `_`, `:` or `-`");
    }
    let options = EnqueueOptions {
        sweep_id: args
            .sweep_id
            .clone()
            .unwrap_or_else(|| format!("sweep-{}", now_compact())),
        bucket,
        prefix,
        listing: match &args.inventory {
            Some(manifest) => Listing::Inventory {
                manifest: manifest.clone(),
                resume_at: args.resume_at,
            },
            None => Listing::Bucket {
                start_after: args.start_after.clone(),
            },
        },
        queue_url,
        rate: args.rate,
        rescan: args.rescan,
    };
    let clients = bucketscan_runtime::aws::Clients::for_buckets(
        &config.buckets,
        config.agent.path_style,
        std::time::Duration::from_secs(config.agent.first_byte_timeout_secs),
    )
    .await;
    let quiet = args.output == Format::Json;
    // The inventory's bucket is read for its listing, not the swept one.
    let listed_from = match &args.inventory {
        Some(manifest) => {
            bucketscan_core::allow::parse_s3_url(manifest)
                .map_err(anyhow::Error::msg)?
                .0
        }
        None => options.bucket.clone(),
    };
    // What is queued so far: a sweep stopped by a signal says where it
    // got to (batches are counted once sent), and resumes from there.
    let mut latest = fleet_sweep::Enqueued {
        sweep_id: options.sweep_id.clone(),
        ..Default::default()
    };
    let mut stopped = crate::run_agent::stop_on_signal()?;
    // With [results], the sweep's record: `bucketscan sweep status ID`.
    let store = config.results.clone().map(|results| {
        bucketscan_runtime::results::ResultsStore::new(clients.dynamodb.clone(), results, "scan --enqueue".into())
    });
    let mut journal = match &store {
        Some(store) => match fleet_sweep::Journal::open(store, &options).await {
            Ok(journal) => {
                journal.check_resume(&options).map_err(anyhow::Error::msg)?;
                Some(journal)
            }
            Err(err) => {
                // The sweep matters more than its progress report.
                tracing::warn!(
                    "{}: no sweep record (`sweep status` will not know it): {err}",
                    options.sweep_id
                );
                None
            }
        },
        None => None,
    };
    let listing_s3 = clients.s3_for(&listed_from);
    let work = fleet_sweep::enqueue(&listing_s3, &clients.sqs, &options, journal.as_mut(), |done| {
        latest = done.clone();
        if !quiet && done.queued % 1000 < 10 {
            eprintln!(
                "{}: queued {} (last {:?})",
                done.sweep_id,
                done.queued,
                done.last_key.as_deref().unwrap_or("")
            );
        }
    });
    let finished = tokio::select! {
        finished = work => Some(finished),
        _ = stopped.wait_for(|stop| *stop) => None,
    };
    let (done, code) = match finished {
        Some(Ok(done)) => (done, ExitCode::SUCCESS),
        Some(Err(err)) => {
            eprintln!("{err}");
            (err.done, ExitCode::from(2))
        }
        None => {
            if let Some(journal) = journal.as_mut() {
                journal.save(&latest, fleet_sweep::STOPPED, true).await;
            }
            eprintln!(
                "{}: stopped by a signal after {} items; resume with {}",
                latest.sweep_id,
                latest.queued,
                latest.resume_hint()
            );
            (latest, ExitCode::from(130))
        }
    };
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&done)?),
        Format::Text => println!(
            "sweep {}: queued {} objects ({:.1} MB) to {}; to go on from here: {}",
            done.sweep_id,
            done.queued,
            done.bytes as f64 / 1e6,
            options.queue_url,
            done.resume_hint()
        ),
    }
    Ok(code)
}

/// Now as `YYYYMMDDTHHMMSSZ`.
fn now_compact() -> String {
    bucketscan_scan::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect::<String>()
        + "Z"
}

/// The agent a config describes, its `[signatures]` (when set) synced and
/// proven loaded and its `[yara]` rule sets compiled: a scan with databases clamd may not run would make every
/// object `unscannable (stale-signatures)`; that is refused up front.
async fn agent_with_signatures(config: Config) -> anyhow::Result<Agent> {
    let agent = Agent::from_config(config).await.context("loading the config")?;
    if let Some(keeper) = agent.signature_keeper() {
        keeper
            .prove()
            .await
            .map_err(|why| anyhow::anyhow!("[signatures]: not proven loaded: {why}"))?;
    }
    // The same for YARA: every rule set compiled, or the scan is refused.
    agent.load_rules_once().await;
    let problems = agent.services.yara.problems();
    if !problems.is_empty() {
        anyhow::bail!("[yara]: {}", problems.join("; "));
    }
    Ok(agent)
}

/// One exact version, through its bucket's pipeline with every action.
async fn scan_version(
    config: Config,
    bucket: &str,
    key: &str,
    version: &str,
    output: Format,
) -> anyhow::Result<ExitCode> {
    let agent = agent_with_signatures(config).await?;
    let (report, code) = match agent.scan_on_demand(bucket, key, Some(version)).await {
        Handled::Scanned(report) => {
            let code = if report.verdict.is_clean() { 0 } else { 1 };
            (Some(report), code)
        }
        Handled::Skipped(why) => {
            eprintln!("not scanned: {why}");
            (None, 2)
        }
        Handled::Retry { why, report } => {
            // What the pass did before it stopped (an action that failed,
            // the alert it published) is worth seeing.
            eprintln!("not finished: {why}");
            (report, 2)
        }
    };
    if let Some(report) = report {
        match output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => crate::output::print_report(&report),
        }
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("s3://b").unwrap(), ("b".into(), None));
        assert_eq!(parse_target("s3://b/").unwrap(), ("b".into(), None));
        assert_eq!(parse_target("s3://b/p/q").unwrap(), ("b".into(), Some("p/q".into())));
        assert!(parse_target("b/p").is_err());
    }
}
