//! `bucketscan sweep status ID`: how far a sweep of the fleet has got,
//! from the results table (what was queued, scanned by result, skipped,
//! the rate and what is left).

use crate::output::Format;
use anyhow::bail;
use bucketscan_runtime::config::Config;
use bucketscan_runtime::results::ResultsStore;
use bucketscan_runtime::results::sweeps::SweepProgress;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum SweepCommand {
    /// A sweep's progress: queued, scanned by result, skipped, rate, time left.
    Status {
        #[command(flatten)]
        config: crate::config_args::ConfigArgs,
        /// The sweep id `scan --enqueue` printed.
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
}

pub async fn run(command: SweepCommand) -> anyhow::Result<ExitCode> {
    let SweepCommand::Status { config, id, output } = command;
    let source = config.source()?;
    let config = Config::load(&source)?;
    let Some(results) = config.results.clone() else {
        bail!("{source}: a sweep's progress is kept in the results table, and [results] names none");
    };
    let clients = bucketscan_runtime::aws::Clients::for_buckets(
        &config.buckets,
        config.agent.path_style,
        std::time::Duration::from_secs(config.agent.first_byte_timeout_secs),
    )
    .await;
    let store = ResultsStore::new(clients.dynamodb.clone(), results, "sweep status".into());
    let Some(progress) = store.sweep_progress(&id).await.map_err(anyhow::Error::msg)? else {
        bail!("no sweep `{id}` in the results table (was it queued with [results] configured?)");
    };
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&progress)?),
        Format::Text => print!("{}", text(&progress)),
    }
    Ok(ExitCode::SUCCESS)
}

fn text(progress: &SweepProgress) -> String {
    let sweep = &progress.sweep;
    let mut out = format!(
        "sweep {} of {} ({}): {} queued, {}\n",
        sweep.id, sweep.bucket, sweep.source, sweep.queued, sweep.state
    );
    for (result, count) in &progress.scanned {
        out.push_str(&format!("  {result:<12} {count:>10}\n"));
    }
    out.push_str(&format!("  {:<12} {:>10}\n", "skipped", progress.skipped));
    out.push_str(&format!("  {:<12} {:>10}\n", "remaining", progress.remaining));
    let eta = match progress.eta_seconds {
        Some(seconds) => format!("about {} min left", seconds.div_ceil(60)),
        None => "no rate yet".to_owned(),
    };
    out.push_str(&format!(
        "{:.1} objects/s since {}; {eta}\n",
        progress.per_second, sweep.started_at
    ));
    if let Some(resume) = &sweep.resume_at {
        out.push_str(&format!("resume with --resume-at {resume}\n"));
    } else if let Some(key) = sweep.last_key.as_ref().filter(|_| sweep.state == "stopped") {
        out.push_str(&format!("resume with --start-after {key:?}\n"));
    }
    out
}
