//! The per-stage sandbox: what one plugin instance's store holds and the
//! limits it runs under (how a failed stage explains itself is
//! `crate::shared`'s).
//!
//! Each stage of each object gets a new store: nothing a plugin did for one
//! object can leak into the next, and a plugin that broke its store (trap,
//! timeout) takes nothing else down with it. The store's state is one
//! context per capability (each defined in `capabilities/`, reached through
//! its own small view trait, as `wasmtime_wasi` does with `WasiView`; the
//! views are implemented here, beside WASI's) plus [`StageShared`], what
//! every capability needs.

use crate::capabilities::Services;
use crate::capabilities::clamav::{ClamavCtx, ClamavCtxView, ClamavView};
use crate::capabilities::http::{HttpCtx, HttpCtxView, HttpView};
use crate::capabilities::log::{LogCtx, LogCtxView, LogView};
use crate::capabilities::object::{ObjectCtxView, ObjectView};
use crate::capabilities::stage::{StageCtx, StageCtxView, StageView};
use crate::capabilities::storage::{StorageCtx, StorageCtxView, StorageView};
use crate::capabilities::yara::{YaraCtx, YaraCtxView, YaraView};
use crate::config::EngineConfig;
use bucketscan_core::Verdict;
use bucketscan_core::config::SettingValue;
use bucketscan_core::grants::Grants;
use bucketscan_core::storage::{NoStorage, StageStorage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use crate::shared::{MAX_HANDLES, ScanObject, StageFailure, StageShared, StageTiming};

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
    pub storage: Arc<dyn StageStorage>,
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

/// Everything one stage's store holds: WASI (sealed), the shared part, and
/// one context per capability.
pub struct StageState {
    wasi: WasiCtx,
    pub shared: StageShared,
    pub limiter: StageLimiter,
    pub stage: StageCtx,
    pub log: LogCtx,
    pub clamav: ClamavCtx,
    pub yara: YaraCtx,
    pub storage: StorageCtx,
    pub http: HttpCtx,
}

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
            yara: YaraCtx::new(env.grants.clone(), services.yara.clone()),
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

// Each capability reaches its context through its own view, as WASI does
// through `WasiView`: the capabilities know their view, never this state.

impl ClamavView for StageState {
    fn clamav(&mut self) -> ClamavCtxView<'_> {
        ClamavCtxView {
            ctx: &mut self.clamav,
            shared: &mut self.shared,
        }
    }
}

impl YaraView for StageState {
    fn yara(&mut self) -> YaraCtxView<'_> {
        YaraCtxView {
            ctx: &mut self.yara,
            shared: &mut self.shared,
        }
    }
}

impl LogView for StageState {
    fn log(&mut self) -> LogCtxView<'_> {
        LogCtxView {
            ctx: &mut self.log,
            shared: &mut self.shared,
        }
    }
}

impl ObjectView for StageState {
    fn object(&mut self) -> ObjectCtxView<'_> {
        ObjectCtxView {
            shared: &mut self.shared,
        }
    }
}

impl StageView for StageState {
    fn stage(&mut self) -> StageCtxView<'_> {
        StageCtxView {
            ctx: &self.stage,
            shared: &mut self.shared,
        }
    }
}

impl StorageView for StageState {
    fn storage(&mut self) -> StorageCtxView<'_> {
        StorageCtxView {
            ctx: &mut self.storage,
            shared: &mut self.shared,
        }
    }
}

impl HttpView for StageState {
    fn http(&mut self) -> HttpCtxView<'_> {
        HttpCtxView {
            ctx: &mut self.http,
            shared: &mut self.shared,
        }
    }
}
