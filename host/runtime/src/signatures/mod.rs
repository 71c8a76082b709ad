//! Signature databases, in one place: synced from a private S3 bucket
//! ([`sync`]), judged by the build time they carry ([`database`]), loaded
//! into clamd with RELOAD and *proven* loaded with a canary, and held to
//! the freshness rule before every scan ([`SignatureState`], the engine's
//! `SignatureGate`).
//!
//! Why a canary: clamd answers RELOAD with `RELOADING` and loads in the
//! background; when a database is broken it logs the failure and keeps the
//! old one, which no command reveals. So with every change the agent also
//! installs a one-line database of its own, `bucketscan-canary.hsb`,
//! matching a random sample only it knows; when clamd reports that sample
//! as found, the reload it belongs to has happened. Until then — a failed
//! reload, a database that does not load, clamd down — the agent is not
//! ready, and scans are `unscannable (stale-signatures)`, never clean.

pub mod database;
pub mod hashes;
pub mod sync;
pub mod trust;

use bucketscan_core::hashes::HashSignatures;
use bucketscan_engine::Clamd;
use bucketscan_engine::clamd::{SignatureGate, Untrusted};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// `[signatures]`: ClamAV databases synced from a private S3 bucket into
/// clamd's database directory, and the freshness rule for scans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SignaturesConfig {
    /// clamd's `DatabaseDirectory` (shared with clamd; the agent writes its
    /// canary there).
    pub database_dir: PathBuf,
    /// The bucket holding the database files; without it nothing is synced,
    /// and what another process puts in the directory is checked.
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    /// How often to look for new files, in seconds.
    #[serde(default = "SignaturesConfig::default_sync_interval_secs")]
    pub sync_interval_secs: u64,
    /// Scans are `unscannable (stale-signatures)` when the newest database
    /// clamd has loaded was built longer ago than this, in seconds. The
    /// build time comes from the databases themselves (the header of
    /// `.cvd`, `.cld` and `.cud` files), never from file times.
    #[serde(default = "SignaturesConfig::default_max_age_secs")]
    pub max_age_secs: u64,
    /// How long clamd may take to load a synced database before the agent
    /// counts the reload as failed, in seconds.
    #[serde(default = "SignaturesConfig::default_reload_timeout_secs")]
    pub reload_timeout_secs: u64,
    /// Keys (full S3 keys) of files that may allow or ignore detections or
    /// configure clamd (`.fp`, `.sfp`, `.ign`, `.ign2`, `.cfg`, `.wdb`,
    /// `.crb`), which the bucket may otherwise never install (see
    /// `trust`): naming one here says an operator reviewed it.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Keys of unsigned databases (`.cld`, `.cud`) that may be installed.
    /// Signed `.cvd` files need no entry: their signature is checked.
    #[serde(default)]
    pub unsigned: Vec<String>,
    /// The key `.cvd` signatures are checked with (Talos's by default).
    #[serde(default = "trust::SigningKey::talos")]
    pub signing_key: trust::SigningKey,
    /// Databases that must be installed (names without extension, e.g.
    /// `["main", "daily"]`): without one of them the agent is not ready,
    /// so a database deleted from the bucket makes scans wait instead of
    /// running with fewer signatures.
    #[serde(default)]
    pub required: Vec<String>,
}

impl SignaturesConfig {
    /// What the signature bucket may install under this config.
    pub fn trust_policy(&self) -> trust::TrustPolicy {
        trust::TrustPolicy {
            trusted: self.trusted.clone(),
            unsigned: self.unsigned.clone(),
            signing_key: self.signing_key.clone(),
        }
    }

    fn default_sync_interval_secs() -> u64 {
        300
    }
    fn default_max_age_secs() -> u64 {
        2 * 24 * 3600
    }
    fn default_reload_timeout_secs() -> u64 {
        120
    }
}

/// The canary database the agent writes next to the synced ones.
pub const CANARY_FILE: &str = "bucketscan-canary.hsb";
/// While the signatures are not proven, how often to try again.
const RETRY: Duration = Duration::from_secs(5);

/// Whether scans can be trusted, as the last check found.
#[derive(Debug, Clone)]
enum Status {
    /// Not checked yet, or the check failed: why.
    Unproven(String),
    /// clamd runs the databases of this build.
    Loaded { built: SystemTime, from: String },
}

/// The signatures' state: read before every scan, updated by the keeper.
#[derive(Debug)]
pub struct SignatureState {
    max_age: Duration,
    status: RwLock<Status>,
    /// Files in the signature bucket the last sync refused, and why.
    refused: RwLock<Vec<String>>,
    /// The whole-file hash signatures of the databases clamd was last
    /// proven to run, for objects over `hash_floor` bytes.
    hashes: RwLock<Result<Arc<HashSignatures>, String>>,
    hash_floor: u64,
}

impl SignatureState {
    /// A state whose hash index keeps the signatures for objects over
    /// `hash_floor` bytes (the smallest size limit: smaller objects go to
    /// clamd whole, which applies every signature itself).
    pub fn new(max_age: Duration, hash_floor: u64) -> Self {
        Self {
            max_age,
            status: RwLock::new(Status::Unproven(
                "the signature database has not been checked yet".into(),
            )),
            refused: RwLock::default(),
            hashes: RwLock::new(Err("the signature database has not been checked yet".into())),
            hash_floor,
        }
    }

    /// Indexes the hash signatures of `dir` (clamd has just been proven to
    /// run what it holds).
    async fn index_hashes(&self, dir: &Path) {
        let (dir, floor) = (dir.to_owned(), self.hash_floor);
        let loaded = tokio::task::spawn_blocking(move || hashes::load(&dir, floor))
            .await
            .unwrap_or_else(|err| Err(format!("indexing the hash signatures: {err}")));
        match &loaded {
            Ok(index) => tracing::info!(
                signatures = index.len(),
                over_bytes = floor,
                "whole-file hash signatures indexed"
            ),
            Err(why) => {
                tracing::error!("whole-file hash signatures not indexed (large objects get no hash check): {why}")
            }
        }
        *self.hashes.write().unwrap() = loaded.map(Arc::new);
    }

    /// What the signature bucket holds that the agent refuses to install
    /// (shown by `/readyz`): the agent still scans, with what it has.
    pub fn refused(&self) -> Vec<String> {
        self.refused.read().unwrap().clone()
    }

    fn set(&self, status: Status) {
        *self.status.write().unwrap() = status;
    }
}

impl SignatureGate for SignatureState {
    fn check(&self) -> Result<(), Untrusted> {
        match &*self.status.read().unwrap() {
            Status::Unproven(why) => Err(Untrusted(why.clone())),
            Status::Loaded { built, from } => {
                // A build slightly in the future (clock skew, at most an
                // hour, see `database`) counts as just built.
                let age = built.elapsed().unwrap_or_default();
                if age > self.max_age {
                    Err(Untrusted(format!(
                        "the newest signature database clamd runs ({from}) was built {} h ago; the limit is {} h",
                        age.as_secs() / 3600,
                        self.max_age.as_secs() / 3600
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The scan path's hash signatures: those of the databases clamd runs,
/// while they are fresh.
impl bucketscan_scan::HashSource for SignatureState {
    fn hash_signatures(&self) -> Result<Arc<HashSignatures>, String> {
        self.check().map_err(|Untrusted(why)| why)?;
        self.hashes.read().unwrap().clone()
    }
}

/// A canary: random bytes, and the one-line database that names them.
struct Canary {
    sample: Vec<u8>,
    name: String,
}

impl Canary {
    fn new() -> Self {
        let mut sample = vec![0u8; 64];
        getrandom::fill(&mut sample).expect("the OS random number generator");
        let name = format!("Bucketscan.Canary.{}", hex::encode(&sample[..6]));
        Self { sample, name }
    }

    fn write(&self, dir: &Path) -> Result<(), String> {
        let line = format!(
            "{}:{}:{}\n",
            hex::encode(Sha256::digest(&self.sample)),
            self.sample.len(),
            self.name
        );
        let partial = dir.join(format!(".{CANARY_FILE}.partial"));
        std::fs::write(&partial, line).map_err(|err| format!("writing {}: {err}", partial.display()))?;
        std::fs::rename(&partial, dir.join(CANARY_FILE)).map_err(|err| format!("installing the canary: {err}"))
    }

    /// Whether clamd's loaded databases include this canary.
    async fn is_loaded(&self, clamd: &Clamd) -> Result<bool, String> {
        let found = clamd
            .scan_bytes_ungated(&self.sample)
            .await
            .map_err(|err| err.to_string())?;
        Ok(found.iter().any(|name| name.starts_with(&self.name)))
    }
}

/// What the database directory holds (names, sizes, times), to notice
/// changes; the canary and the sync's own files are not part of it.
fn fingerprint(dir: &Path) -> Vec<String> {
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == CANARY_FILE {
                return None;
            }
            let meta = entry.metadata().ok()?;
            Some(format!("{name}:{}:{:?}", meta.len(), meta.modified().ok()))
        })
        .collect();
    entries.sort();
    entries
}

/// Keeps the signatures synced, loaded and proven, until the task ends.
pub struct Keeper {
    pub s3: aws_sdk_s3::Client,
    pub config: SignaturesConfig,
    pub clamd: Arc<Clamd>,
    pub state: Arc<SignatureState>,
    /// Started after every round that proves the databases: a new
    /// database version rescans what older ones called clean.
    pub retro_scans: Option<Arc<crate::retro_scan::RetroScans>>,
}

impl Keeper {
    /// One round: sync, and when anything changed or the last check did
    /// not prove the databases, a new canary, RELOAD, and the proof.
    /// Returns whether the databases are proven now.
    async fn round(&self, canary: &mut Option<Canary>, seen: &mut Option<Vec<String>>) -> bool {
        let dir = &self.config.database_dir;
        let synced = match sync::sync_once(&self.s3, &self.config).await {
            Ok(synced) => synced,
            Err(err) => {
                // What is on disk may still be good: the freshness rule
                // decides, the sync is tried again next round.
                tracing::error!("signature sync failed: {err}");
                sync::Synced::default()
            }
        };
        if synced.changed() {
            tracing::info!(installed = ?synced.installed, removed = ?synced.removed, "signature files updated");
        }
        let before = std::mem::replace(&mut *self.state.refused.write().unwrap(), synced.refused.clone());
        for refused in synced.refused.iter().filter(|r| !before.contains(r)) {
            tracing::error!("signature bucket: {refused}");
        }
        // Files can also change without a sync (another process manages
        // the directory): any change counts.
        let now = fingerprint(dir);
        let changed = synced.changed() || seen.as_ref() != Some(&now);
        *seen = Some(now);
        let proven = matches!(*self.state.status.read().unwrap(), Status::Loaded { .. });
        if !changed && proven {
            // An index that failed (a file unreadable for a moment) is
            // tried again; without it large objects get no hash check.
            if self.state.hashes.read().unwrap().is_err() {
                self.state.index_hashes(dir).await;
            }
            return true;
        }
        if let Some(missing) = self.missing_required(dir) {
            self.state.set(Status::Unproven(missing));
            return false;
        }
        let build = match database::governing_build(dir) {
            Ok(Some(build)) => build,
            Ok(None) => {
                self.state.set(Status::Unproven(format!(
                    "{} holds no database with a build time (a .cvd, .cld or .cud); plain signature files \
                     cannot show how old they are",
                    dir.display()
                )));
                return false;
            }
            Err(err) => {
                self.state.set(Status::Unproven(err.to_string()));
                return false;
            }
        };
        if changed || canary.is_none() {
            let fresh = Canary::new();
            if let Err(err) = fresh.write(dir) {
                self.state.set(Status::Unproven(err));
                return false;
            }
            *canary = Some(fresh);
        }
        let canary = canary.as_ref().expect("set above");
        match self.load(canary).await {
            Ok(()) => {
                tracing::info!(database = %build.file, version = build.version, "clamd runs the synced signatures");
                self.state.index_hashes(dir).await;
                self.state.set(Status::Loaded {
                    built: build.built,
                    from: format!("{} version {}", build.file, build.version),
                });
                true
            }
            Err(why) => {
                tracing::error!("signatures not loaded: {why}");
                self.state.set(Status::Unproven(why));
                false
            }
        }
    }

    /// The first required database not installed, said as a reason.
    fn missing_required(&self, dir: &Path) -> Option<String> {
        self.config
            .required
            .iter()
            .filter(|name| !name.is_empty())
            .find_map(|name| {
                let installed = ["cvd", "cld", "cud"]
                    .iter()
                    .any(|extension| dir.join(format!("{name}.{extension}")).exists());
                (!installed).then(|| {
                    format!(
                        "the required database `{name}` ([signatures] required) is not installed in {}; scans wait \
                     until the signature bucket holds it again",
                        dir.display()
                    )
                })
            })
    }

    /// Makes clamd load the directory (unless it already has this canary)
    /// and waits until it reports the canary.
    async fn load(&self, canary: &Canary) -> Result<(), String> {
        if canary.is_loaded(&self.clamd).await.unwrap_or(false) {
            return Ok(());
        }
        self.clamd
            .reload()
            .await
            .map_err(|err| format!("clamd RELOAD: {err}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.config.reload_timeout_secs);
        let mut last = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match canary.is_loaded(&self.clamd).await {
                Ok(true) => {
                    // New databases may open what the old ones did not
                    // (or the other way round): ask again.
                    self.clamd.forget_version();
                    self.clamd.forget_opens();
                    return Ok(());
                }
                Ok(false) => last = "clamd still runs the previous databases".into(),
                Err(err) => last = err,
            }
        }
        Err(format!(
            "clamd did not load the databases in {} within {} s ({last}); a database may be broken — clamd keeps \
             the previous ones and logs why",
            self.config.database_dir.display(),
            self.config.reload_timeout_secs
        ))
    }

    /// One round, for a command that scans once (`bucketscan scan`): the
    /// databases synced and proven loaded, or why not.
    pub async fn prove(&self) -> Result<(), String> {
        let (mut canary, mut seen) = (None, None);
        self.round(&mut canary, &mut seen).await;
        self.state.check().map_err(|Untrusted(why)| why)
    }

    /// The retro-scans of the database clamd runs now, if not done yet.
    async fn start_retro_scans(&self) {
        let Some(retro_scans) = &self.retro_scans else { return };
        match self.clamd.version().await {
            Ok(database) => retro_scans.after_proven(&database),
            Err(err) => tracing::warn!("retro-scans wait: clamd VERSION: {err}"),
        }
    }

    /// Rounds forever: every `sync-interval-secs`, sooner while unproven.
    pub async fn run(self) {
        let (mut canary, mut seen) = (None, None);
        loop {
            let proven = self.round(&mut canary, &mut seen).await;
            if proven {
                self.start_retro_scans().await;
            }
            let wait = if proven {
                Duration::from_secs(self.config.sync_interval_secs.max(1))
            } else {
                RETRY
            };
            tokio::time::sleep(wait).await;
        }
    }
}
