//! `bucketscan plugin run`: one plugin, or a bucket's whole pipeline, over a
//! local file, with the real host capabilities. Storage actions are a dry
//! run: they are reported, nothing is written.
//!
//! Exit status: 0 when the file is clean, 1 for any other verdict, 2 when
//! the command itself failed.

use crate::output::{self, Format};
use anyhow::{Context as _, bail};
use bucketscan_core::config::{ClamavConfig, Config, HostLimits};
use bucketscan_core::grants::Grants;
use bucketscan_core::object::{ObjectBody, ObjectInfo, SpooledFile};
use bucketscan_core::storage::DryRunStorage;
use bucketscan_engine::{Clamd, HostServices, LoadedPipelines, PipelineStage, Plugin, PluginHost, ScanObject};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The plugin component to run (omit with --config).
    plugin: Option<PathBuf>,
    /// The local file to scan.
    #[arg(long)]
    file: PathBuf,
    /// A plugin setting; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// clamd address (HOST:PORT or socket path); overrides the config's.
    #[arg(long)]
    clamd: Option<String>,
    /// Run this config's pipeline for --bucket instead of one plugin.
    #[arg(long, requires = "bucket", conflicts_with = "plugin")]
    config: Option<PathBuf>,
    /// The bucket the file pretends to be in.
    #[arg(long)]
    bucket: Option<String>,
    /// The key the file pretends to have (default: its file name).
    #[arg(long)]
    key: Option<String>,
    /// The Content-Type the file pretends to have.
    #[arg(long)]
    content_type: Option<String>,
    /// Hosts a single plugin may POST to.
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

fn parse_setting(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{raw}` is not KEY=VALUE"))
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (limits, mut clamav, config) = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            (config.host.clone(), config.clamav.clone(), Some(config))
        }
        None => (HostLimits::default(), ClamavConfig::default(), None),
    };
    if let Some(address) = &args.clamd {
        clamav.address = address.clone();
    }
    let host = PluginHost::new(&limits)?;

    let (stages, bucket) = match (config, &args.plugin) {
        (Some(config), _) => {
            let bucket = args.bucket.clone().expect("clap requires --bucket with --config");
            let key = object_key(&args);
            let loaded = LoadedPipelines::load(&host, config).await?;
            let Some((_, stages)) = loaded.pipeline_for(&bucket, &key) else {
                bail!("the config has no pipeline for s3://{bucket}/{key}");
            };
            (stages.to_vec(), bucket)
        }
        (None, Some(path)) => {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
            let mut plugin = Plugin::load(&host, name, path, None).await?;
            plugin.name = plugin.identity.name.clone();
            let grants = Grants {
                clamav: true,
                http: args.allow_http.clone(),
                any_bucket: true,
                ..Grants::default()
            };
            let stage = PipelineStage {
                plugin: Arc::new(plugin),
                settings: args.settings.clone(),
                grants,
                on: Vec::new(),
                signing_secret: None,
            };
            (vec![stage], args.bucket.clone().unwrap_or_else(|| "local".into()))
        }
        (None, None) => bail!("name a plugin component, or --config with --bucket"),
    };

    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let object = ScanObject {
        info: Arc::new(ObjectInfo {
            bucket,
            key: object_key(&args),
            size,
            content_type: args.content_type.clone(),
            ..ObjectInfo::default()
        }),
        body: ObjectBody::File(Arc::new(
            SpooledFile::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?,
        )),
    };
    let storage = Arc::new(DryRunStorage::default());
    let services = Arc::new(HostServices::new(Clamd::new(&clamav), storage));
    let report = bucketscan_engine::run_pipeline(&host, &services, &stages, object).await;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => output::print_report(&report),
    }
    Ok(if report.verdict.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn object_key(args: &RunArgs) -> String {
    args.key.clone().unwrap_or_else(|| {
        args.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into())
    })
}
