//! `bucketscan plugin run`: one plugin, or a bucket's whole pipeline, over a
//! local file, through the same scan path as the agent (result tags, the
//! rule that an error runs no actions, deferred deletes, the notification)
//! with the engine's real capabilities. Writes are a dry run: reported as what
//! the agent would do, nothing is written.
//!
//! Exit status: 0 when the file is clean, 1 for any other verdict, 2 when
//! the command itself failed.

use crate::output::{self, Format};
use anyhow::{Context as _, bail};
use bucketscan_core::allow::AllowList;
use bucketscan_core::config::SettingValue;
use bucketscan_core::grants::Grants;
use bucketscan_core::report::ScanReport;
use bucketscan_core::seal::Sealer;
use bucketscan_core::tags::TagKeys;
use bucketscan_engine::config::{ClamavConfig, EngineConfig};
use bucketscan_engine::{Clamd, Engine, LoadedPipelines, PipelineStage, Plugin, Services};
use bucketscan_runtime::config::Config;
use bucketscan_scan::local::{LocalFile, LocalStore};
use bucketscan_scan::{OnePipeline, Publisher, Routing, Scanner, Target, WasmStages};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The plugin component to run (omit with --config).
    plugin: Option<PathBuf>,
    /// The local file to scan.
    #[arg(long)]
    file: PathBuf,
    /// A plugin setting; repeatable. The value is read as TOML when it can
    /// be (`true`, `42`, `["a", "b"]`), as text otherwise.
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
    /// The Content-Encoding the file pretends to have (e.g. `gzip`): the
    /// scan decodes it first, as the agent does for such an object.
    #[arg(long)]
    content_encoding: Option<String>,
    /// Hosts a single plugin may POST to.
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Private networks (CIDR) a single plugin's HTTP requests may reach,
    /// e.g. 127.0.0.0/8 for a receiver on this machine.
    #[arg(long = "allow-private", value_name = "CIDR")]
    allow_private: Vec<ipnet::IpNet>,
    /// A tag the file pretends to have; repeatable (to see what S3's tag
    /// limit would do).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_setting)]
    tags: Vec<(String, String)>,
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
    let config = args.config.as_deref().map(Config::load_file).transpose()?;
    // The config's own allow-list entries (a list object is the agent's).
    let allow_list = config
        .as_ref()
        .map(|config| AllowList::from_config(&config.allow_list))
        .unwrap_or_default();
    let (limits, mut clamav) = match &config {
        Some(config) => (config.engine.clone(), config.clamav.clone()),
        None => (EngineConfig::default(), ClamavConfig::default()),
    };
    if let Some(address) = &args.clamd {
        clamav.address = address.clone();
    }
    let engine = Arc::new(Engine::new(&limits)?);
    let bucket = args.bucket.clone().unwrap_or_else(|| "local".into());
    let key = object_key(&args);
    let route = match (config, &args.plugin) {
        (Some(config), _) => Route::from_config(&engine, config, &bucket, &key).await?,
        (None, Some(path)) => Route::one_plugin(&engine, &args, path, clamav.stream_max_bytes).await?,
        (None, None) => bail!("name a plugin component, or --config with --bucket"),
    };
    std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // The same scan path as the agent's, on a store that writes nothing.
    let store = LocalStore::new(LocalFile {
        path: args.file.clone(),
        content_type: args.content_type.clone(),
        content_encoding: args.content_encoding.clone(),
        metadata: Vec::new(),
        tags: args.tags.clone(),
    });
    let scanner = Scanner {
        stages: Arc::new(WasmStages {
            engine,
            services: Arc::new(Services::new(Clamd::new(&clamav))),
        }),
        store: Arc::new(store),
        publisher: route.publisher,
        tag_keys: route.tag_keys,
        sealer: Sealer::ephemeral(),
        allow_list: Arc::new(arc_swap::ArcSwap::from_pointee(allow_list)),
        spool: bucketscan_scan::spool::SpoolConfig::in_temp_dir(64 << 30),
        hashes: None,
    };
    let report = scanner.scan(route.routing.as_ref(), &Target::new(&bucket, &key)).await;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => output::print_report(&report),
    }
    Ok(if report.verdict.is_clean() && report.outcome.settles() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the dry run scans with: the pipeline(s), the tag keys and where it
/// would publish.
struct Route {
    routing: Box<dyn Routing>,
    tag_keys: TagKeys,
    publisher: Option<Arc<dyn Publisher>>,
}

impl Route {
    /// The config's pipeline for `s3://bucket/key`, as the agent would run it.
    async fn from_config(engine: &Engine, config: Config, bucket: &str, key: &str) -> anyhow::Result<Self> {
        let publisher = config
            .notifications
            .topic_arn
            .clone()
            .map(|arn| Arc::new(DryRunPublisher(arn)) as Arc<dyn Publisher>);
        let loaded = LoadedPipelines::load(engine, config.pipelines()).await?;
        if loaded.pipeline_for(bucket, key).is_none() {
            bail!("the config has no pipeline for s3://{bucket}/{key}");
        }
        Ok(Self {
            routing: Box::new(loaded),
            tag_keys: config.tags,
            publisher,
        })
    }

    /// One plugin as the whole pipeline, with the grants the flags give.
    async fn one_plugin(engine: &Engine, args: &RunArgs, path: &Path, max_object_bytes: u64) -> anyhow::Result<Self> {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
        let mut plugin = Plugin::load(engine, name, path, None).await?;
        plugin.name = plugin.identity.name.clone();
        let grants = Grants {
            clamav: true,
            http: args.allow_http.clone(),
            http_private: args.allow_private.clone(),
            any_bucket: true,
            ..Grants::default()
        };
        let stage = PipelineStage {
            plugin: Arc::new(plugin),
            settings: args
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), SettingValue::from_command_line(v)))
                .collect(),
            grants,
            on: Vec::new(),
            signing_secret: None,
        };
        Ok(Self {
            routing: Box::new(OnePipeline {
                stages: Arc::from(vec![stage]),
                max_object_bytes,
            }),
            tag_keys: TagKeys::default(),
            publisher: None,
        })
    }
}

/// Says where the agent would publish, instead of publishing.
struct DryRunPublisher(String);

#[async_trait::async_trait]
impl Publisher for DryRunPublisher {
    async fn publish(&self, report: &ScanReport) -> Result<String, bucketscan_scan::PublishError> {
        Ok(format!("would publish `{}` to {}", report.result(), self.0))
    }
}

fn object_key(args: &RunArgs) -> String {
    args.key.clone().unwrap_or_else(|| {
        args.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into())
    })
}
