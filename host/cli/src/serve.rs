//! `bucketscan serve`: the HTTP scanning API (`bucketscan-serve`), and
//! `bucketscan api-key`: a new key and its config entry.

use crate::run_agent::{start_background, stop_on_signal};
use anyhow::{Context as _, bail};
use bucketscan_runtime::agent::Agent;
use bucketscan_serve::config::ServeConfig;
use bucketscan_serve::{Api, auth};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
    /// Where the API listens (also /healthz, /readyz, /openapi.yaml).
    #[arg(long, env = "BUCKETSCAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// After SIGTERM, how long requests in flight may take.
    #[arg(long, env = "BUCKETSCAN_STOP_TIMEOUT_SECS", default_value_t = 25)]
    stop_timeout_secs: u64,
    /// Serves the console (`/console/`) to this one user without sign-on:
    /// for a local run, on a loopback address only.
    #[arg(long, value_name = "NAME")]
    console_dev_user: Option<String>,
    /// The development user's role: viewer, releaser or admin.
    #[arg(long, value_name = "ROLE", requires = "console_dev_user", default_value = "viewer",
          value_parser = ["viewer", "releaser", "admin"])]
    role: String,
}

#[derive(clap::Args)]
pub struct ApiKeyArgs {
    /// Names the caller in logs.
    #[arg(long)]
    id: String,
    /// A pipeline it may scan uploads with (repeat; `*` for all).
    #[arg(long = "pipeline")]
    pipelines: Vec<String>,
    /// A bucket whose objects it may have scanned (repeat; `*` for all).
    #[arg(long = "bucket")]
    buckets: Vec<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let source = args.config.source()?;
    let config = bucketscan_runtime::config::Config::load(&source)?;
    let serve_config = ServeConfig::from_config(&config)?;
    let agent = Arc::new(Agent::from_config(config).await?);
    let dev_user = args
        .console_dev_user
        .as_ref()
        .map(|name| (dev_user(name, &args.role), args.listen));
    let api = Api::with_console(agent.clone(), serve_config.clone(), dev_user)
        .map_err(|err| anyhow::anyhow!("{source}: {err}"))?;
    let api = Arc::new(api);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    start_background(&agent, source)?;
    let stopped = stop_on_signal()?;
    if serve_config.take_handoffs {
        take_handoffs(&agent, &serve_config, &args, stopped.clone())?;
    }
    tracing::info!(addr = %args.listen, "serving the scanning API");
    eprintln!("bucketscan serve: listening on http://{}", args.listen);
    if let Some(name) = &args.console_dev_user {
        eprintln!(
            "bucketscan serve: console for {name} ({}) at http://{}/console/",
            args.role, args.listen
        );
    }
    bucketscan_serve::serve(listener, api, stopped, Duration::from_secs(args.stop_timeout_secs)).await;
    Ok(ExitCode::SUCCESS)
}

/// The local development user: every console request is theirs.
fn dev_user(name: &str, role: &str) -> bucketscan_console::identity::User {
    use bucketscan_console::config::{Claims, Role};
    bucketscan_console::identity::User {
        claims: Claims {
            subject: name.to_owned(),
            email: name.contains('@').then(|| name.to_owned()),
            email_verified: false,
            groups: Vec::new(),
        },
        role: Role::from_name(role),
    }
}

/// Finishes, like an agent, the object scans handed to `[serve]
/// handoff-queue` (by this task or another that stopped).
fn take_handoffs(
    agent: &Arc<Agent>,
    config: &ServeConfig,
    args: &ServeArgs,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(queue) = &config.handoff_queue else {
        bail!("[serve] take-handoffs = true needs [serve] handoff-queue");
    };
    let agent_config = &agent.started_with.agent;
    let settings = bucketscan_agent::receive::LoopSettings {
        queue_urls: vec![queue.clone()],
        sweep_queue_urls: Vec::new(),
        concurrency: (config.concurrency / 2).max(1),
        sweep_slots: 1,
        visibility_timeout: Duration::from_secs(agent_config.visibility_timeout_secs),
        wait_time: Duration::from_secs(agent_config.wait_time_secs),
        retry_backoff: Duration::from_secs(agent_config.retry_backoff_secs),
        stop_timeout: Duration::from_secs(args.stop_timeout_secs),
        object_timeout: Duration::from_secs(agent_config.object_timeout_secs),
    };
    tokio::spawn(bucketscan_agent::receive::run(
        agent.clone(),
        agent.clients.sqs.clone(),
        settings,
        stopped,
    ));
    Ok(())
}

pub fn api_key(args: ApiKeyArgs) -> anyhow::Result<ExitCode> {
    if args.pipelines.is_empty() && args.buckets.is_empty() {
        bail!("give the key a scope: --pipeline NAME and/or --bucket NAME");
    }
    let (key, digest) = auth::generate_key();
    let list = |names: &[String]| names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    eprintln!("The key (give it to the client; only its SHA-256 goes in the config):");
    println!("{key}");
    eprintln!();
    eprintln!("Add to the config:");
    eprintln!("[[serve.keys]]");
    eprintln!("id = {:?}", args.id);
    eprintln!("sha256 = \"{digest}\"");
    eprintln!("pipelines = [{}]", list(&args.pipelines));
    eprintln!("buckets = [{}]", list(&args.buckets));
    Ok(ExitCode::SUCCESS)
}

/// `bucketscan notification-key`: the hex key a subscriber checks each
/// notification's `bucketscan-mark` with.
pub fn notification_key(args: crate::config_args::ConfigArgs) -> anyhow::Result<ExitCode> {
    let source = args.source()?;
    let config = bucketscan_runtime::config::Config::load(&source)?;
    let Some(seal_key) = &config.agent.seal_key else {
        bail!("{source}: [agent] seal-key is not set, so every agent has its own random key and no mark would verify");
    };
    let sealer = bucketscan_core::seal::Sealer::new(seal_key.read()?);
    println!("{}", hex::encode(sealer.notification_key()));
    Ok(ExitCode::SUCCESS)
}
