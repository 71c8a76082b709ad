//! Hot reload: the config file and every declared plugin file are watched
//! (and SIGHUP asks for the same); a change is loaded and checked off the
//! hot path — config validation, sha256 pins, contract version, each
//! plugin's load check — and only then swapped in, atomically. Objects
//! already in flight finish on the pipelines they started with (they hold
//! their own `Arc`); a config or plugin that fails any check is refused
//! with a log line naming why, and the running version keeps serving.
//!
//! What a reload changes: `[plugins]` and `[buckets]` (stages, prefixes,
//! settings, grants, signing secrets). Everything else — `[agent]`,
//! `[engine]`, `[clamav]`, `[tags]`, `[notifications]`, `[signatures]`,
//! `[allow-list]` (its list object reloads on its own schedule), `[serve]` and
//! a bucket's `role-arn`/`external-id` — is read at start; a reload that
//! changes them says so and they take effect at the next restart.

use crate::agent::Agent;
use crate::config::Config;
use bucketscan_core::config::ConfigSource;
use bucketscan_engine::LoadedPipelines;
use notify_debouncer_full::notify::event::ModifyKind;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Changes within this window are taken as one (editors and `cp` write a
/// file in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why a reload was refused; the running version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] bucketscan_core::config::ConfigError),
    #[error("{0}")]
    Load(#[from] bucketscan_engine::pipelines::LoadError),
}

/// Loads the config again and swaps it in when every check passes. Returns
/// the new generation.
pub async fn reload(agent: &Agent, source: &ConfigSource) -> Result<u64, ReloadError> {
    let started = Instant::now();
    let mut config = Config::load(source)?;
    config.enrolled = agent.started_with.enrolled.clone();
    let running = agent.pipelines.snapshot();
    for section in restart_only_changes(&agent.started_with, &config) {
        tracing::warn!(config = %source, "{section} changed; it takes effect at the next restart");
    }
    let digest = crate::config::digest(&config.text.text);
    let loaded = LoadedPipelines::load_reusing(agent.engine(), config.pipelines(), Some(&running)).await?;
    let changed: Vec<String> = loaded
        .plugins
        .iter()
        .filter(|(name, plugin)| running.plugins.get(*name).is_none_or(|old| old.sha256 != plugin.sha256))
        .map(|(name, plugin)| format!("{name}@{} ({})", plugin.identity.version, &plugin.sha256[..12]))
        .collect();
    let generation = agent.pipelines.swap(loaded);
    if let Some(results) = &agent.results {
        results.set_config_digest(digest);
    }
    tracing::info!(
        generation,
        config = %source,
        plugins_changed = ?changed,
        took_ms = started.elapsed().as_millis() as u64,
        "reloaded: new objects use the new pipelines; objects in flight finish on the old ones"
    );
    Ok(generation)
}

/// Sections that a reload does not apply.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut section = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    section("[engine]", running.engine != new.engine);
    section("[clamav]", running.clamav != new.clamav);
    section("[agent]", running.agent != new.agent);
    section("[tags]", running.tags != new.tags);
    section("[notifications]", running.notifications != new.notifications);
    section("[signatures]", running.signatures != new.signatures);
    section("[results]", running.results != new.results);
    section("[allow-list]", running.allow_list != new.allow_list);
    section("[organization]", running.organization != new.organization);
    section("[yara]", running.yara != new.yara);
    section("[serve]", running.serve != new.serve);
    for (bucket, config) in &new.buckets {
        let old = running.buckets.get(bucket);
        let role = |c: &bucketscan_core::config::BucketConfig| (c.role_arn.clone(), c.external_id.clone());
        let (old_role, new_role) = (old.map(role).unwrap_or_default(), role(config));
        if old_role != new_role {
            changed.push(format!("[buckets.{bucket}] role-arn/external-id"));
        }
    }
    changed
}

type Watcher = notify_debouncer_full::Debouncer<
    notify_debouncer_full::notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Reloads on every change to the config file (when it is one) or a
/// declared plugin file, and on every `trigger` (SIGHUP), until the process
/// ends.
pub fn spawn(
    agent: Arc<Agent>,
    source: ConfigSource,
    mut trigger: mpsc::Receiver<()>,
) -> Result<(), crate::StartError> {
    let watch_error = |err: &dyn std::fmt::Display| crate::StartError::Watch(err.to_string());
    let config_path = source
        .file()
        .map(std::path::absolute)
        .transpose()
        .map_err(|err| watch_error(&err))?;
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify_debouncer_full::new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| match result {
            Ok(events) => {
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|event| is_change(&event.event.kind))
                    .flat_map(|event| event.event.paths)
                    .collect();
                if !paths.is_empty() {
                    let _ = changed_tx.send(paths);
                }
            }
            Err(errors) => tracing::warn!("watching plugin and config files: {errors:?}"),
        },
    )
    .map_err(|err| watch_error(&err))?;

    tokio::spawn(async move {
        let mut watched_dirs = BTreeSet::new();
        let mut watched_files = watched(&agent, config_path.as_deref());
        loop {
            watched_dirs = watch_dirs_of(&mut watcher, watched_dirs, &watched_files);
            let why = tokio::select! {
                Some(paths) = changed_rx.recv() => match changed_among(&paths, &watched_files) {
                    Some(why) => why,
                    None => continue,
                },
                Some(()) = trigger.recv() => "SIGHUP".to_owned(),
                else => break,
            };
            tracing::info!("reloading ({why})");
            if let Err(err) = reload(&agent, &source).await {
                tracing::error!(
                    generation = agent.pipelines.generation(),
                    "reload refused, the running version keeps serving: {err}"
                );
            }
            watched_files = watched(&agent, config_path.as_deref());
        }
    });
    Ok(())
}

/// Reads (including our own, when a reload hashes the files) and metadata
/// changes are not changes.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        _ => false,
    }
}

/// Watches the directories of `files` not yet watched; returns the set now
/// watched. Directories, not files: an atomic replace (write to a temp
/// name, rename over) gives the file a new inode.
fn watch_dirs_of(watcher: &mut Watcher, before: BTreeSet<PathBuf>, files: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let dirs: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_owned)).collect();
    let new_dirs: Vec<&PathBuf> = dirs.difference(&before).collect();
    for dir in &new_dirs {
        if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch for changes: {err}");
        }
    }
    if !new_dirs.is_empty() {
        tracing::info!(files = ?files, "watching for changes (reload also on SIGHUP)");
    }
    dirs
}

/// "changed: FILES" for the watched files among `paths`, if any.
fn changed_among(paths: &[PathBuf], watched: &BTreeSet<PathBuf>) -> Option<String> {
    let hits: BTreeSet<String> = paths
        .iter()
        .filter(|p| watched.contains(*p))
        .map(|p| p.display().to_string())
        .collect();
    (!hits.is_empty()).then(|| format!("changed: {}", hits.into_iter().collect::<Vec<_>>().join(", ")))
}

/// The config file and every plugin file of the running pipelines.
fn watched(agent: &Agent, config_path: Option<&Path>) -> BTreeSet<PathBuf> {
    let running = agent.pipelines.snapshot();
    let mut files: BTreeSet<PathBuf> = running
        .config
        .plugins
        .values()
        .filter_map(|decl| std::path::absolute(running.config.plugin_path(decl)).ok())
        .collect();
    files.extend(config_path.map(Path::to_owned));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RenameMode};

    #[test]
    fn writes_renames_creates_and_removes_are_changes_reads_and_metadata_are_not() {
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(
            notify_debouncer_full::notify::event::RemoveKind::File
        )));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(DataChange::Content))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        // A reload hashing the plugin files reads them: no reload loop.
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
    }

    #[test]
    fn only_watched_files_ask_for_a_reload_each_named_once() {
        let watched: BTreeSet<PathBuf> = ["/etc/b/config.toml", "/p/a.wasm"].map(PathBuf::from).into();
        let unrelated = [PathBuf::from("/p/a.wasm.tmp"), PathBuf::from("/etc/b/other")];
        assert_eq!(changed_among(&unrelated, &watched), None);
        let hits = [
            PathBuf::from("/p/a.wasm"),
            PathBuf::from("/p/a.wasm.tmp"),
            PathBuf::from("/etc/b/config.toml"),
            PathBuf::from("/p/a.wasm"),
        ];
        assert_eq!(
            changed_among(&hits, &watched).as_deref(),
            Some("changed: /etc/b/config.toml, /p/a.wasm")
        );
    }
}
