//! `bucketscan protect` / `unprotect`.

use bucketscan_runtime::aws::Clients;
use bucketscan_runtime::protect;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ProtectArgs {
    /// The bucket whose uploads the agent should scan.
    #[arg(long)]
    bucket: String,
    /// The agent's SQS queue URL.
    #[arg(long)]
    queue: String,
    /// Only keys under this prefix.
    #[arg(long)]
    prefix: Option<String>,
}

pub async fn protect(args: ProtectArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::from_env(false).await;
    let arn = protect::queue_arn(&clients.sqs, &args.queue)
        .await
        .map_err(anyhow::Error::msg)?;
    protect::protect(&clients.s3, &args.bucket, &arn, args.prefix.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    println!("s3://{}: s3:ObjectCreated:* events now go to {arn}", args.bucket);
    Ok(ExitCode::SUCCESS)
}

pub async fn unprotect(bucket: String) -> anyhow::Result<ExitCode> {
    let clients = Clients::from_env(false).await;
    let removed = protect::unprotect(&clients.s3, &bucket)
        .await
        .map_err(anyhow::Error::msg)?;
    if removed {
        println!("s3://{bucket}: bucketscan's notification removed; other notifications untouched");
    } else {
        println!("s3://{bucket}: had no bucketscan notification");
    }
    Ok(ExitCode::SUCCESS)
}
