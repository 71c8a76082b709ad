//! Output formats shared by the subcommands.

use bucketscan_core::report::ScanReport;

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
            stage.outcome,
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
    println!("  total {:.2} ms", report.duration_ms);
}
