//! A config's pipelines with their plugins loaded: what the agent and
//! `bucketscan plugin run --config` look objects up in.

use crate::engine::Engine;
use crate::plugin::{Plugin, PluginError};
use bucketscan_core::config::{PipelinesConfig, SettingValue, StageConfig};
use bucketscan_core::grants::Grants;
use bucketscan_core::pipeline::{ResultName, StageKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One stage, resolved: the loaded plugin and the stage's config.
#[derive(Debug, Clone)]
pub struct PipelineStage {
    pub plugin: Arc<Plugin>,
    pub settings: Vec<(String, SettingValue)>,
    pub grants: Grants,
    pub on: Vec<ResultName>,
    /// Read from its source when the config was loaded.
    pub signing_secret: Option<Arc<[u8]>>,
}

/// Why a config's pipelines could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{at}: {message}")]
    Stage { at: String, message: String },
}

/// Every pipeline of a config, ready to run.
#[derive(Debug)]
pub struct LoadedPipelines {
    pub config: PipelinesConfig,
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// Keyed by [`PipelineScope::key`](bucketscan_core::config::PipelineScope::key).
    pipelines: BTreeMap<(String, Option<String>), Arc<[PipelineStage]>>,
}

impl LoadedPipelines {
    /// Loads every declared plugin once and resolves every pipeline.
    pub async fn load(engine: &Engine, config: PipelinesConfig) -> Result<Self, LoadError> {
        Self::load_reusing(engine, config, None).await
    }

    /// Like [`load`](Self::load), but a plugin whose file is byte for byte
    /// the one `previous` loaded under the same name is reused rather than
    /// loaded again (a reload that changed one plugin loads one plugin).
    pub async fn load_reusing(
        engine: &Engine,
        config: PipelinesConfig,
        previous: Option<&Self>,
    ) -> Result<Self, LoadError> {
        let plugins = load_plugins(engine, &config, previous).await?;
        let mut pipelines = BTreeMap::new();
        for (scope, stages) in config.pipelines() {
            let mut resolved = Vec::with_capacity(stages.len());
            let mut seen_action = false;
            for (index, stage) in stages.iter().enumerate() {
                let at = || {
                    format!(
                        "{}: {scope}, stage {} (`{}`)",
                        config.locate(stage.plugin.span()),
                        index + 1,
                        stage.plugin.get_ref()
                    )
                };
                let plugin = &plugins[stage.plugin.get_ref()];
                check_order(plugin, stage, seen_action).map_err(|message| LoadError::Stage { at: at(), message })?;
                seen_action |= plugin.kind == StageKind::Action;
                resolved.push(resolve(plugin, stage).map_err(|message| LoadError::Stage { at: at(), message })?);
            }
            pipelines.insert(scope.key(), Arc::from(resolved));
        }
        Ok(Self {
            config,
            plugins,
            pipelines,
        })
    }

    /// The pipeline for one object and a description of where it applies;
    /// `None` when the bucket is not scanned.
    pub fn pipeline_for(&self, bucket: &str, key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        let (scope, _) = self.config.pipeline_for(bucket, key)?;
        let pipeline = self.pipelines.get(&scope.key())?.clone();
        Some((scope.to_string(), pipeline))
    }
}

/// Every declared plugin, reusing from `previous` those whose file is
/// unchanged.
async fn load_plugins(
    engine: &Engine,
    config: &PipelinesConfig,
    previous: Option<&LoadedPipelines>,
) -> Result<BTreeMap<String, Arc<Plugin>>, LoadError> {
    let mut plugins = BTreeMap::new();
    for (name, decl) in &config.plugins {
        let path = config.plugin_path(decl);
        let pin = decl.sha256.as_ref().map(|pin| pin.get_ref().as_str());
        let unchanged = previous.and_then(|previous| previous.plugins.get(name)).filter(|old| {
            old.path == path
                && pin.is_none_or(|pin| pin.eq_ignore_ascii_case(&old.sha256))
                && std::fs::read(&path).is_ok_and(|bytes| crate::plugin::sha256_hex(&bytes) == old.sha256)
        });
        let plugin = match unchanged {
            Some(old) => old.clone(),
            None => Arc::new(Plugin::load(engine, name, &path, pin).await?),
        };
        plugins.insert(name.clone(), plugin);
    }
    Ok(plugins)
}

/// Inspectors first, then actions; `on` belongs to actions only.
fn check_order(plugin: &Plugin, stage: &StageConfig, seen_action: bool) -> Result<(), String> {
    match plugin.kind {
        StageKind::Inspector if seen_action => {
            Err("an inspector cannot follow an action stage; put inspectors first".into())
        }
        StageKind::Inspector if !stage.on.get_ref().is_empty() => Err(format!(
            "`on` applies to action stages only, and `{}` is an inspector",
            plugin.label()
        )),
        StageKind::Inspector | StageKind::Action => Ok(()),
    }
}

/// One stage with its plugin, settings, grants and signing secret (read
/// now, so a missing secret refuses the config rather than a scan).
fn resolve(plugin: &Arc<Plugin>, stage: &StageConfig) -> Result<PipelineStage, String> {
    let signing_secret = match &stage.signing_secret {
        Some(source) => Some(Arc::<[u8]>::from(
            source
                .get_ref()
                .read()
                .map_err(|err| format!("signing-secret: {err}"))?,
        )),
        None => None,
    };
    Ok(PipelineStage {
        plugin: plugin.clone(),
        settings: stage.settings(),
        grants: stage.grants.get_ref().clone(),
        on: stage.on.get_ref().clone(),
        signing_secret,
    })
}
