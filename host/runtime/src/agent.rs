//! One object event, start to finish: the scan path (`bucketscan-scan`) on
//! S3, then the log line and metrics. The caller deletes the queue message
//! only when no object in it came back [`Handled::Retry`].

use crate::allow_list::AllowListLoadError;
use crate::aws::Clients;
use crate::config::Config;
use crate::config::NotificationsConfig;
use crate::events::ObjectEvent;
use crate::live::LivePipelines;
use crate::metrics::{Metrics, MetricsFormat, ObjectSample};
use crate::notify::{EventBridgePublisher, FanOut, SnsPublisher};
use crate::organization::{Admission, Organization};
use crate::s3_store::S3Store;
use crate::signatures::SignatureState;
use arc_swap::ArcSwap;
use bucketscan_core::allow::{AllowList, AllowListConfig};
use bucketscan_core::object::printable;
use bucketscan_core::report::{Outcome, ScanReport};
use bucketscan_core::seal::Sealer;
use bucketscan_engine::{Clamd, Engine, LoadedPipelines, Services};
use bucketscan_scan::spool::SpoolBudget;
use bucketscan_scan::spool::SpoolConfig;
use bucketscan_scan::{Publisher, ScanSlot, Scanner, Target, WasmStages};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What became of one object event.
#[derive(Debug, Clone)]
pub enum Handled {
    /// Scanned and fully handled: tags written, actions done, notified.
    Scanned(Box<ScanReport>),
    /// Nothing to do (no pipeline, an agent's own write, replaced, gone).
    Skipped(String),
    /// Not handled; leave the message for redelivery (and, after the
    /// queue's redrive limit, its DLQ). `report` says what the pass found
    /// and did before it stopped, when it got that far.
    Retry {
        why: String,
        report: Option<Box<ScanReport>>,
    },
}

impl Handled {
    /// A retry before any scan ran.
    pub fn retry(why: impl Into<String>) -> Self {
        Self::Retry {
            why: why.into(),
            report: None,
        }
    }
}

/// Everything needed to handle objects; shared by all concurrent tasks.
pub struct Agent {
    pub scanner: Scanner,
    /// The wasm engine the pipelines are loaded into (and reloaded).
    pub engine: Arc<Engine>,
    /// What the stages' capabilities reach: clamd, outbound HTTP.
    pub services: Arc<Services>,
    pub pipelines: LivePipelines,
    pub clients: Clients,
    /// Set when `[results]` names a table.
    pub results: Option<Arc<crate::results::ResultsStore>>,
    /// Set when `[signatures]` manages the databases.
    pub signatures: Option<Arc<SignatureState>>,
    /// Set when a bucket asks for retro-scans (with `[results]`).
    pub retro_scans: Option<Arc<crate::retro_scan::RetroScans>>,
    /// Set with `[organization]`: member accounts' tagged buckets.
    pub organization: Option<Arc<Organization>>,
    /// Counts every object handled (set by `bucketscan run`; the default
    /// counts without exposing anything).
    pub metrics: Arc<Metrics>,
    /// `/readyz`'s answer, shared by the health endpoints and the API.
    pub readiness: crate::http::CachedAnswer<Result<(), Vec<String>>>,
    /// The config the agent started with: the sections a reload cannot
    /// change are compared against it.
    pub started_with: Config,
    /// Disk for spooled bodies (objects, and the API's uploads).
    pub spool_budget: Arc<SpoolBudget>,
}

impl Agent {
    /// Builds the agent a config describes: the Wasm host with every
    /// pipeline loaded, clamd, the S3 store, and the SNS publisher.
    pub async fn from_config(config: Config) -> Result<Self, crate::StartError> {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let engine = Arc::new(Engine::new(&config.engine)?);
        let first_byte_timeout = std::time::Duration::from_secs(config.agent.first_byte_timeout_secs);
        let clients = Clients::for_buckets(&config.buckets, config.agent.path_style, first_byte_timeout)
            .await
            .with_organization(config.organization.clone(), config.enrolled.clone());
        let organization = config
            .organization
            .clone()
            .map(|organization| Arc::new(Organization::new(organization, config.enrolled.clone())));
        let spool_budget = Arc::new(SpoolBudget::new(config.agent.spool_budget_bytes));
        let spool = SpoolConfig {
            threshold_bytes: config.agent.spool_threshold_bytes,
            dir: config.agent.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            budget: spool_budget.clone(),
        };
        remove_orphaned_spool_files(&spool.dir);
        let store = s3_store(&config, &clients, &spool);
        let signatures = config.signatures.as_ref().map(|signatures| {
            let max_age = Duration::from_secs(signatures.max_age_secs);
            // A reload may lower a limit below this: the hash check
            // then says it does not cover those sizes.
            let hash_floor = config.pipelines().smallest_max_object_bytes();
            Arc::new(SignatureState::new(max_age, hash_floor))
        });
        let agent_id = config
            .agent
            .agent_id
            .clone()
            .unwrap_or_else(bucketscan_engine::capabilities::default_agent_id);
        let yara = Arc::new(config.yara.as_ref().map(|yara| yara.library()).unwrap_or_default());
        let services = Arc::new(
            Services::new(clamd(&config, signatures.as_ref()))
                .with_agent_id(agent_id.clone())
                .with_yara(yara),
        );
        let sealer = match &config.agent.seal_key {
            Some(source) => Sealer::new(source.read()?),
            None => {
                warn_without_seal_key(&config);
                Sealer::ephemeral()
            }
        };
        let results = config.results.clone().map(|results| {
            let store = crate::results::ResultsStore::new(clients.dynamodb.clone(), results, agent_id.clone());
            store.set_config_digest(crate::config::digest(&config.text.text));
            Arc::new(store)
        });
        let publisher = publisher(&config.notifications, &clients, &agent_id, &sealer, results.clone());
        let retro_scans = results.clone().and_then(|results| {
            crate::retro_scan::RetroScans::new(&config, results, clients.sqs.clone(), sealer.clone()).map(Arc::new)
        });
        let allow_list = Arc::new(ArcSwap::from_pointee(
            initial_allow_list(&config, &clients, &sealer, results.as_deref()).await,
        ));
        let pipelines = LivePipelines::new(LoadedPipelines::load(&engine, config.pipelines()).await?);
        Ok(Self {
            scanner: Scanner {
                stages: Arc::new(WasmStages {
                    engine: engine.clone(),
                    services: services.clone(),
                }),
                store: Arc::new(store),
                publisher,
                tag_keys: config.tags.clone(),
                sealer,
                allow_list,
                spool,
                hashes: signatures
                    .clone()
                    .map(|state| state as Arc<dyn bucketscan_scan::HashSource>),
            },
            engine,
            services,
            pipelines,
            clients,
            signatures,
            results,
            retro_scans,
            organization,
            metrics: Arc::new(Metrics::new(MetricsFormat::None)),
            readiness: Default::default(),
            started_with: config,
            spool_budget,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn clamd(&self) -> &Arc<Clamd> {
        &self.services.clamd
    }

    /// What keeps `[yara]`'s rule sets compiled and current; `None`
    /// without that section.
    pub fn rule_keeper(&self) -> Option<crate::yara_rules::RuleKeeper> {
        let config = self.started_with.yara.clone()?;
        let base_dir = self.started_with.text.resolve(std::path::Path::new(""));
        Some(crate::yara_rules::RuleKeeper::new(
            config,
            self.services.yara.clone(),
            self.clients.s3.clone(),
            base_dir,
        ))
    }

    /// Reads every rule set once, for commands that scan and end (the
    /// long-running ones keep a [`RuleKeeper`](crate::yara_rules::RuleKeeper)
    /// running instead).
    pub async fn load_rules_once(&self) {
        if let Some(keeper) = self.rule_keeper() {
            keeper.sync_all().await;
        }
    }

    /// What keeps `[signatures]` synced, loaded and proven for this agent;
    /// `None` without that section.
    pub fn signature_keeper(&self) -> Option<crate::signatures::Keeper> {
        Some(crate::signatures::Keeper {
            s3: self.clients.s3.clone(),
            config: self.started_with.signatures.clone()?,
            clamd: self.clamd().clone(),
            state: self.signatures.clone()?,
            retro_scans: self.retro_scans.clone(),
        })
    }

    /// Handles `event` in `slot` (given back once its object is contained).
    pub async fn handle(&self, event: &ObjectEvent, slot: &ScanSlot) -> Handled {
        if let Some(why) = self.refuse_retro_item(event) {
            tracing::warn!("{why}");
            return Handled::Skipped(why);
        }
        if let Some(refused) = self.admit_member_event(event).await {
            return refused;
        }
        let mut target = match event.on_demand {
            true => {
                self.on_demand_target(&event.bucket, &event.key, event.version_id.as_deref())
                    .await
            }
            false => self.event_target(event).await,
        };
        target.sweep = event.sweep_id().map(str::to_owned);
        let handled = self.handle_target(&target, slot).await;
        if let Some(sweep) = &target.sweep {
            self.count_sweep_item(sweep, &handled).await;
        }
        handled
    }

    /// What an upload event or a sweep item asks to scan.
    async fn event_target(&self, event: &ObjectEvent) -> Target {
        // A sweep item skips what carries a result sealed from the
        // signatures clamd runs now, as `bucketscan scan` does. Not a
        // redelivered one: the agent that had it may have died between
        // writing the result and promoting the object.
        let skip_if_scanned_with = match event.is_sweep_item() && !event.redelivered {
            true => self
                .clamd()
                .version()
                .await
                .ok()
                .map(|v| bucketscan_core::tags::sanitize(&v)),
            false => None,
        };
        Target {
            version_id: event.version_id.clone(),
            etag: event.etag.clone(),
            size: event.size,
            skip_if_scanned_with,
            // A retro-scan rescans an agent's copy (a promotion): contained
            // where it lives if it must be, never promoted again.
            rescan: event.retro.is_some(),
            contain_only: event.retro.is_some(),
            retro: event.retro.clone(),
            ..Target::new(&event.bucket, &event.key)
        }
    }

    /// Why a retro item is not to be followed: only the fleet's own retro
    /// walks (marked with the seal key) may route an object through
    /// another bucket's pipeline, and only for a bucket that asks for it.
    fn refuse_retro_item(&self, event: &ObjectEvent) -> Option<String> {
        let retro = event.retro.as_ref()?;
        if !event.retro_is_sealed(&self.scanner.sealer) {
            return Some(format!(
                "a retro-scan item for {} without a valid mark from the fleet's seal key: ignored",
                bucketscan_scan::Target::new(&event.bucket, &event.key).url()
            ));
        }
        let asks = self
            .started_with
            .buckets
            .get(&retro.origin_bucket)
            .is_some_and(|bucket| bucket.retro_scan.is_some());
        (!asks).then(|| {
            format!(
                "a retro-scan item for bucket `{}`, which asks for no retro-scan: ignored",
                retro.origin_bucket
            )
        })
    }

    /// A member account's event for a bucket the config does not declare
    /// is scanned only when the account has a pipeline and the bucket's
    /// tag opts in; `None`: go on.
    async fn admit_member_event(&self, event: &ObjectEvent) -> Option<Handled> {
        let account = event.account.as_deref()?;
        let organization = self.organization.as_ref()?;
        let pipelines = self.pipelines.snapshot();
        if pipelines.config.buckets.contains_key(&event.bucket) {
            return None;
        }
        match organization
            .admit(&self.clients, &pipelines.config, &event.bucket, account)
            .await
        {
            Ok(Admission::Protected) => None,
            Ok(Admission::NotProtected(why)) => {
                tracing::info!("{why}");
                Some(Handled::Skipped(why))
            }
            Err(why) => Some(Handled::retry(why)),
        }
    }

    /// A sweep's progress: its metric, and for an item skipped (nothing
    /// recorded for it) the sweep record's counter.
    async fn count_sweep_item(&self, sweep: &str, handled: &Handled) {
        let outcome = match handled {
            Handled::Scanned(_) => "scanned",
            Handled::Skipped(_) => "skipped",
            Handled::Retry { .. } => "retry",
        };
        self.metrics.record_sweep_item(outcome);
        if let (Handled::Skipped(_), Some(results)) = (handled, &self.results)
            && let Err(err) = results.count_skipped(sweep).await
        {
            tracing::warn!(sweep, "sweep progress not counted: {err}");
        }
    }

    /// An on-demand scan (`scan --version-id`, `POST /v1/objects/scan`):
    /// exactly `version` (or the current object), even when already
    /// tagged; a version that is not the current one is contained if it
    /// must be, never promoted.
    pub async fn scan_on_demand(&self, bucket: &str, key: &str, version: Option<&str>) -> Handled {
        let target = self.on_demand_target(bucket, key, version).await;
        self.handle_target(&target, &ScanSlot::unbounded()).await
    }

    async fn on_demand_target(&self, bucket: &str, key: &str, version: Option<&str>) -> Target {
        let mut target = Target {
            version_id: version.map(str::to_owned),
            rescan: true,
            ..Target::new(bucket, key)
        };
        if let Some(version) = version {
            target.contain_only = match self.scanner.store.current(bucket, key).await {
                Ok(Some(current)) => current.version_id.as_deref() != Some(version),
                // Deleted, or unknown: never promote what is not current.
                _ => true,
            };
        }
        target
    }

    pub async fn handle_target(&self, target: &Target, slot: &ScanSlot) -> Handled {
        if self
            .started_with
            .buckets
            .get(&target.bucket)
            .is_some_and(|bucket| bucket.api_only)
        {
            // The name stands for an upload pipeline of the API; a bucket
            // of that name, if one exists, is somebody else's.
            let why = format!(
                "`{}` is an upload pipeline (api-only), not a bucket: nothing read",
                target.bucket
            );
            tracing::warn!("{why}");
            return Handled::Skipped(why);
        }
        tracing::info!(bucket = %target.bucket, key = %printable(&target.key), version = target.version_id.as_deref().unwrap_or(""), "scanning");
        let pipelines = self.pipelines.snapshot();
        let report = self.scanner.scan_in(pipelines.as_ref(), target, slot).await;
        if let Outcome::Skipped(why) = &report.outcome {
            tracing::info!(bucket = %target.bucket, key = %printable(&target.key), "{why}; nothing to do");
            return Handled::Skipped(why.clone());
        }
        self.metrics.record_object(&ObjectSample {
            bucket: &report.bucket,
            result: report.result().as_str(),
            bytes: report.size,
            duration: Duration::from_secs_f64(report.duration_ms / 1000.0),
            stages: &report.stages,
        });
        tracing::info!(
            bucket = %report.bucket,
            key = %printable(&report.key),
            version = report.version_id.as_deref().unwrap_or(""),
            verdict = report.result().as_str(),
            findings = ?report.findings().iter().map(|f| f.signature.as_str()).collect::<Vec<_>>(),
            detail = %printable(&report.verdict.to_string()),
            notes = ?report.host_actions,
            duration_ms = report.duration_ms,
            outcome = ?report.outcome,
            "scanned"
        );
        match &report.outcome {
            Outcome::Retry(why) => Handled::Retry {
                why: why.clone(),
                report: Some(Box::new(report.clone())),
            },
            Outcome::Held(why) => {
                tracing::warn!(bucket = %report.bucket, key = %printable(&report.key), "held: {why}");
                Handled::Scanned(Box::new(report))
            }
            _ => Handled::Scanned(Box::new(report)),
        }
    }

    /// Reloads the allow-list now; on failure the current list stays,
    /// less the revocations the results store holds (if it can be read).
    /// Every revocation the current list knows is kept (see
    /// [`AllowList::keep_revocations`]). Returns its entries.
    pub async fn refresh_allow_list(&self) -> Result<usize, AllowListLoadError> {
        let config = &self.started_with.allow_list;
        let store = self.results.as_deref();
        match crate::allow_list::load(&self.clients.s3, config, &self.scanner.sealer, store).await {
            Ok(list) => {
                let entries = list.len();
                self.scanner.allow_list.rcu(|current| {
                    let mut next = list.clone();
                    next.keep_revocations(current);
                    next
                });
                Ok(entries)
            }
            Err(err) => {
                if let Some(store) = store
                    && let Ok(revocations) = crate::allow_list::store_revocations(store).await
                {
                    self.apply_revocations(&revocations);
                }
                Err(err)
            }
        }
    }

    /// Takes `revocations` out of the current list, whatever reloads.
    fn apply_revocations(&self, revocations: &[(String, bucketscan_core::allow::AllowEntry)]) {
        self.scanner.allow_list.rcu(|current| {
            let mut next = AllowList::clone(current);
            for (digest, why) in revocations {
                next.revoke(digest, why.clone());
            }
            next
        });
    }

    /// Revokes an allow-listed digest for the fleet (see
    /// [`crate::allow_list::revoke`]); this agent drops it at once, as
    /// soon as it was written anywhere, then reloads its list.
    pub async fn revoke_allowed(
        &self,
        revocation: crate::results::revocations::StoredRevocation,
    ) -> Result<crate::allow_list::Revoked, crate::allow_list::RevokeError> {
        use crate::allow_list::RevokeError;
        let config = &self.started_with.allow_list;
        let why = bucketscan_core::allow::AllowEntry {
            source: "revoked here".into(),
            note: Some(revocation.note()),
        };
        let digest = revocation.sha256.clone();
        let outcome = crate::allow_list::revoke(&self.clients.s3, config, self.results.as_deref(), revocation).await;
        if matches!(&outcome, Ok(_) | Err(RevokeError::List { recorded: true, .. })) {
            self.apply_revocations(&[(digest, why)]);
        }
        let revoked = outcome?;
        if let Err(err) = self.refresh_allow_list().await {
            tracing::error!("allow-list not reloaded after a revocation: {err}");
        }
        Ok(revoked)
    }

    /// Reloads the allow-list every `refresh-secs` when there is
    /// something to reload: a list object, or revocations in the results
    /// store of digests the config allows.
    pub fn spawn_allow_list_refresh(self: &Arc<Self>) {
        let config = &self.started_with.allow_list;
        if config.object.is_none() && (self.results.is_none() || config.sha256.is_empty()) {
            return;
        }
        let every = Duration::from_secs(
            config
                .refresh_secs
                .unwrap_or(AllowListConfig::DEFAULT_REFRESH_SECS)
                .max(1),
        );
        let agent = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = agent.refresh_allow_list().await {
                    tracing::error!("allow-list not reloaded, the last one read stays: {err}");
                }
            }
        });
    }
}

/// The S3 store, knowing each bucket's expected owner and the multipart
/// copy settings.
fn s3_store(config: &Config, clients: &Clients, spool: &SpoolConfig) -> S3Store {
    let pipelines = config.pipelines();
    let owners: HashMap<String, String> = config
        .buckets
        .keys()
        .filter_map(|bucket| Some((bucket.clone(), pipelines.expected_owner(bucket)?.to_owned())))
        .collect();
    let mut store = S3Store::new(clients.clone(), spool.clone(), owners).with_enrolled(config.enrolled.clone());
    store.multipart_threshold = config.agent.multipart_copy_threshold_bytes;
    store.part_size = config.agent.multipart_copy_part_bytes;
    store
}

/// The clamd client; with `[signatures]`, gated on a fresh database.
fn clamd(config: &Config, signatures: Option<&Arc<SignatureState>>) -> Clamd {
    let clamd = Clamd::new(&config.clamav);
    match signatures {
        Some(state) => clamd.with_gate(state.clone()),
        None => clamd,
    }
}

/// Every configured destination of results: SNS, EventBridge, both or none.
fn publisher(
    notifications: &NotificationsConfig,
    clients: &Clients,
    agent_id: &str,
    sealer: &Sealer,
    results: Option<Arc<crate::results::ResultsStore>>,
) -> Option<Arc<dyn Publisher>> {
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    // The record first: a notification names a result the store holds.
    if let Some(results) = results {
        publishers.push(results);
    }
    if let Some(arn) = &notifications.topic_arn {
        publishers.push(Arc::new(SnsPublisher::new(
            clients.sns.clone(),
            arn.clone(),
            agent_id.to_owned(),
            sealer.clone(),
        )));
    }
    if let Some(bus) = &notifications.event_bus {
        let source = notifications
            .event_source
            .clone()
            .unwrap_or_else(|| NotificationsConfig::DEFAULT_EVENT_SOURCE.to_owned());
        publishers.push(Arc::new(EventBridgePublisher::new(
            clients.events.clone(),
            bus.clone(),
            source,
            agent_id.to_owned(),
        )));
    }
    FanOut::of(publishers)
}

/// The allow-list at start. While the list object or the store's
/// revocations cannot be read: the config's entries alone, and none of
/// them when a results store is configured (it may hold their
/// revocations). The list is reloaded every `refresh-secs`.
async fn initial_allow_list(
    config: &Config,
    clients: &Clients,
    sealer: &Sealer,
    results: Option<&crate::results::ResultsStore>,
) -> AllowList {
    match crate::allow_list::load(&clients.s3, &config.allow_list, sealer, results).await {
        Ok(list) => list,
        Err(err) => {
            let mut fallback = config.allow_list.clone();
            if results.is_some() {
                fallback.sha256.clear();
            }
            tracing::error!(
                "allow-list: {err}; until it can be read, {} apply",
                if fallback.sha256.is_empty() {
                    "no entries"
                } else {
                    "only the config's entries"
                }
            );
            AllowList::from_config(&fallback)
        }
    }
}

/// Without a shared seal key, agents cannot recognise each other's writes:
/// say so when a pipeline writes into a bucket that has a pipeline too.
fn warn_without_seal_key(config: &Config) {
    for (scope, stages) in config.pipelines().pipelines() {
        for stage in stages {
            for bucket in &stage.grants.get_ref().storage {
                let watched = config
                    .buckets
                    .get(bucket)
                    .is_some_and(|b| !b.stages.is_empty() || !b.prefixes.is_empty());
                if watched && scope.bucket() != Some(bucket.as_str()) {
                    tracing::warn!(
                        "{scope} writes into bucket `{bucket}`, which has a pipeline of its own, and [agent] seal-key is \
                         not set: other agents will scan this agent's writes again. Give every agent the same seal-key"
                    );
                    return;
                }
            }
        }
    }
}

/// A process killed before its scans finished (SIGKILL, OOM) left its
/// spool files behind: they take disk the budget no longer counts.
fn remove_orphaned_spool_files(dir: &std::path::Path) {
    match bucketscan_scan::spool::remove_orphans(dir) {
        Ok(cleanup) => {
            if cleanup.removed > 0 {
                tracing::warn!(
                    "removed {} spool file(s) in {} left by a process that no longer runs",
                    cleanup.removed,
                    dir.display()
                );
            }
            for failure in cleanup.failed {
                tracing::warn!("could not remove an orphaned spool file: {failure}");
            }
        }
        Err(err) => tracing::warn!("could not look for orphaned spool files in {}: {err}", dir.display()),
    }
}
