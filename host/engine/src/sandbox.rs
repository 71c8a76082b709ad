//! The per-stage sandbox: what one plugin instance's store holds, the limits
//! it runs under, and how a failed stage explains itself.
//!
//! Each stage of each object gets a new store: nothing a plugin did for one
//! object can leak into the next, and a plugin that broke its store (trap,
//! timeout) takes nothing else down with it. The store's state is one
//! context per capability (each defined in `capabilities/`, reached through
//! its own small view trait, as `wasmtime_wasi` does with `WasiView`) plus
//! [`StageShared`], what every capability needs.

use crate::capabilities::Services;
use crate::capabilities::clamav::ClamavCtx;
use crate::capabilities::http::HttpCtx;
use crate::capabilities::log::LogCtx;
use crate::capabilities::stage::StageCtx;
use crate::capabilities::storage::StorageCtx;
use crate::config::EngineConfig;
use bucketscan_core::Verdict;
use bucketscan_core::config::SettingValue;
use bucketscan_core::grants::{Grants, NotGranted};
use bucketscan_core::report::{FailureCause, StageOutcome};
use bucketscan_core::storage::{NoStorage, StorageBackend};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use bucketscan_core::object::ScanObject;

/// Why a stage failed. Shown after the plugin's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageFailure {
    /// The stage ran longer than `stage-timeout-ms` in all.
    Timeout(Duration),
    /// The plugin's own code ran longer than `wasm-time-limit-ms`.
    WasmTime(Duration),
    /// The plugin tried to grow memory or tables past the limit.
    Memory(String),
    /// The plugin trapped (panic, unreachable, out-of-bounds access).
    Trap(String),
    /// The plugin called a capability its stage was not granted.
    NotGranted(NotGranted),
    /// The plugin returned something the contract does not allow.
    Malformed(String),
    /// The plugin returned an error of its own.
    Plugin(String),
    /// The plugin could not be instantiated.
    Instantiate(String),
    /// The plugin made more capability calls, or held more handles, than a
    /// stage may.
    CallLimit(String),
    /// A storage action failed and the plugin returned success anyway.
    UnhandledFailure(String),
}

impl StageFailure {
    /// A short cause for reports and metrics.
    pub fn cause(&self) -> FailureCause {
        match self {
            Self::Timeout(_) | Self::WasmTime(_) => FailureCause::Timeout,
            Self::Memory(_) => FailureCause::Memory,
            Self::Trap(_) => FailureCause::Trap,
            Self::NotGranted(_) => FailureCause::NotGranted,
            Self::Malformed(_) => FailureCause::MalformedOutput,
            Self::Plugin(_) => FailureCause::PluginError,
            Self::Instantiate(_) => FailureCause::Instantiate,
            Self::CallLimit(_) => FailureCause::CallLimit,
            Self::UnhandledFailure(_) => FailureCause::UnhandledFailure,
        }
    }
}

impl fmt::Display for StageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(limit) => write!(f, "timeout: the stage took longer than {} ms", limit.as_millis()),
            Self::WasmTime(limit) => {
                write!(f, "timeout: the plugin's code ran longer than {} ms", limit.as_millis())
            }
            Self::Memory(detail) => write!(f, "memory limit exceeded: {detail}"),
            Self::Trap(detail) => write!(f, "trap: {detail}"),
            Self::NotGranted(err) => write!(f, "{err}"),
            Self::Malformed(detail) => write!(f, "malformed output: {detail}"),
            Self::Plugin(detail) => write!(f, "plugin error: {detail}"),
            Self::Instantiate(detail) => write!(f, "instantiation failed: {detail}"),
            Self::CallLimit(detail) => write!(f, "call limit: {detail}"),
            Self::UnhandledFailure(detail) => {
                write!(f, "a storage action failed and the plugin reported success: {detail}")
            }
        }
    }
}

/// Enforces memory, table and instance limits, and remembers a refused
/// growth so a trap that follows it is reported as a memory failure.
pub struct StageLimiter {
    limits: StoreLimits,
    memory_limit: usize,
    pub refused: Option<String>,
}

impl StageLimiter {
    pub fn new(limits: &EngineConfig) -> Self {
        let memory_limit = (limits.memory_limit_mib * 1024 * 1024) as usize;
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(limits.instance_limit as usize)
                .memories(limits.instance_limit as usize)
                .tables(limits.table_limit as usize)
                .table_elements(limits.table_elements_limit as usize)
                .build(),
            memory_limit,
            refused: None,
        }
    }
}

impl ResourceLimiter for StageLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused = Some(format!(
                "asked to grow memory to {} MiB; the limit is {} MiB",
                desired >> 20,
                self.memory_limit >> 20
            ));
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        if !allowed {
            self.refused = Some(format!("asked to grow a table to {desired} elements"));
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What one stage is given besides its object: its config, where its
/// storage actions go, and what the stages before it did.
#[derive(Clone)]
pub struct StageEnv {
    /// `plugin@version`, for log lines.
    pub label: Arc<str>,
    pub grants: Grants,
    /// The plugin's settings.
    pub settings: Vec<(String, SettingValue)>,
    /// For an inspector, the verdict so far; for an action, the final one.
    pub verdict: Option<Verdict>,
    /// The key the host signs this stage's HTTP requests with.
    pub signing_secret: Option<Arc<[u8]>>,
    /// Performs this object's storage actions (the scan path's, per object).
    pub storage: Arc<dyn StorageBackend>,
    /// Earlier stages of this object's pipeline.
    pub timings: Vec<StageTiming>,
}

impl Default for StageEnv {
    fn default() -> Self {
        Self {
            label: Arc::from(""),
            grants: Grants::default(),
            settings: Vec::new(),
            verdict: None,
            signing_secret: None,
            storage: Arc::new(NoStorage),
            timings: Vec::new(),
        }
    }
}

/// How one earlier stage went.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTiming {
    pub plugin: String,
    pub outcome: StageOutcome,
    pub duration: Duration,
}

/// What every capability of a stage needs: the resource table, the
/// stage's name and object, its clock, and the first failure the host saw.
pub struct StageShared {
    pub table: ResourceTable,
    /// `plugin@version`, for log lines.
    pub label: Arc<str>,
    pub object: ScanObject,
    /// When the stage started, and how much of that time was spent waiting
    /// on host calls (scans, storage, HTTP), which the Wasm time limit
    /// does not count.
    pub started: Instant,
    pub host_time: Duration,
    /// The first failure the host itself detected (limit, grant), which
    /// explains a trap better than the trap does.
    pub failure: Option<StageFailure>,
}

impl StageShared {
    /// Records a failure unless an earlier one explains the stage already;
    /// the error traps the plugin.
    pub fn fail(&mut self, failure: StageFailure) -> wasmtime::Error {
        let message = failure.to_string();
        self.failure.get_or_insert(failure);
        wasmtime::Error::msg(message)
    }

    /// Puts `entry` in the table; a full table ends the stage with a
    /// call-limit failure (a plugin hoarding handles), not a bare trap.
    pub fn push<T: Send + 'static>(&mut self, entry: T) -> wasmtime::Result<wasmtime::component::Resource<T>> {
        match self.table.push(entry) {
            Ok(handle) => Ok(handle),
            Err(err) => Err(self.fail(StageFailure::CallLimit(format!(
                "more than {MAX_HANDLES} handles held at once ({err})"
            )))),
        }
    }

    /// Time the plugin's own code has run so far.
    pub fn wasm_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.host_time)
    }
}

/// Everything one stage's store holds: WASI (sealed), the shared part, and
/// one context per capability.
pub struct StageState {
    wasi: WasiCtx,
    pub shared: StageShared,
    pub limiter: StageLimiter,
    pub stage: StageCtx,
    pub log: LogCtx,
    pub clamav: ClamavCtx,
    pub storage: StorageCtx,
    pub http: HttpCtx,
}

/// Most handles one stage may hold at once (objects, requests, responses,
/// WASI streams): the table lives in host memory, outside the plugin's
/// memory limit.
pub const MAX_HANDLES: usize = 1024;

impl StageState {
    pub fn new(limits: &EngineConfig, services: &Services, env: StageEnv, object: ScanObject) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        Self {
            wasi: sealed_wasi(),
            shared: StageShared {
                table,
                label: env.label,
                object: object.clone(),
                started: Instant::now(),
                host_time: Duration::ZERO,
                failure: None,
            },
            limiter: StageLimiter::new(limits),
            stage: StageCtx::new(
                object,
                env.settings,
                env.verdict,
                env.timings,
                services.agent_id.clone(),
            ),
            log: LogCtx::default(),
            clamav: ClamavCtx::new(env.grants.clamav, services.clamd.clone()),
            storage: StorageCtx::new(env.grants.clone(), env.storage),
            http: HttpCtx::new(env.grants, env.signing_secret, services.http.clone()),
        }
    }
}

/// A WASI context with nothing in it: no preopened directories, no
/// environment, no arguments, no sockets, no name lookup, stdio going
/// nowhere and clocks that stand still. Plugins still link against WASI
/// (language runtimes import it) but can learn and reach nothing through it.
fn sealed_wasi() -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.shared.table,
        }
    }
}

/// A clock that always reads zero: the contract hands out no time.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
