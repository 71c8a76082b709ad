//! Output formats shared by the subcommands.

use bucketscan_core::report::{Outcome, ScanReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Prints a scan report as a readable summary.
pub fn print_report(report: &ScanReport) {
    let version = report
        .version_id
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    println!("s3://{}/{}{version}: {}", report.bucket, report.key, report.verdict);
    for stage in &report.stages {
        println!(
            "  {:<18} {:<9} {:<15} {:>9.2} ms{}",
            stage.plugin,
            format!("{:?}", stage.kind).to_lowercase(),
            stage.outcome.as_str(),
            stage.duration_ms,
            stage
                .engine_version
                .as_deref()
                .map(|v| format!("  [{v}]"))
                .unwrap_or_default()
        );
        for action in &stage.actions {
            println!("      {action}");
        }
        if let Some(error) = &stage.error {
            println!("      {error}");
        }
    }
    if let Some(tags) = &report.tags {
        if !tags.dropped.is_empty() {
            let dropped: Vec<String> = tags.dropped.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("  own tags dropped by S3's limit: {}", dropped.join(", "));
        }
        if !tags.omitted.is_empty() {
            println!("  result tags left out by S3's limit: {}", tags.omitted.join(", "));
        }
    }
    for action in &report.host_actions {
        println!("  {action}");
    }
    match &report.outcome {
        Outcome::Done => {}
        Outcome::Held(why) => println!("  held: {why}"),
        Outcome::Skipped(why) => println!("  skipped: {why}"),
        Outcome::Retry(why) => println!("  not settled (an agent would retry): {why}"),
    }
    println!("  total {:.2} ms", report.duration_ms);
}
