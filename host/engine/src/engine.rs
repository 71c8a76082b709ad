//! The engine: one wasmtime `Engine` for the process, its limits, the epoch
//! ticker that enforces Wasm time limits, and the compiled-artifact cache.

use crate::capabilities::Services;
use crate::config::EngineConfig;
use crate::sandbox::{ScanObject, StageEnv, StageFailure, StageState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

/// How often the epoch advances; the Wasm time limit is checked this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("configuring wasmtime: {0}")]
    Wasmtime(String),
    #[error("linking host capabilities: {0}")]
    Link(String),
    #[error("starting the epoch ticker: {0}")]
    Ticker(std::io::Error),
}

/// Why a component could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(String);

/// The Wasm host: compile plugins, make sandboxes.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<StageState>,
    limits: EngineConfig,
    cache_dir: Option<PathBuf>,
    pooling: bool,
    ticker_stop: Arc<AtomicBool>,
    /// Services for load checks (`describe`): nothing real behind them.
    load_services: Arc<Services>,
}

impl Engine {
    /// Builds the engine for `limits`. Uses the pooling allocator when
    /// enabled and the machine can reserve its address space, otherwise
    /// on-demand allocation.
    pub fn new(limits: &EngineConfig) -> Result<Self, EngineError> {
        let on_demand = || {
            wasmtime::Engine::new(&wasmtime_config(limits, false))
                .map_err(|err| EngineError::Wasmtime(format!("{err:#}")))
        };
        let (engine, pooling) = match limits.pooling {
            true => match wasmtime::Engine::new(&wasmtime_config(limits, true)) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!("pooling allocator unavailable ({err:#}); using on-demand allocation");
                    (on_demand()?, false)
                }
            },
            false => (on_demand()?, false),
        };
        let mut linker = Linker::new(&engine);
        crate::contract::add_to_linker(&mut linker).map_err(|err| EngineError::Link(format!("{err:#}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("bucketscan-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(EngineError::Ticker)?;

        let cache_dir = limits.cache_dir.clone().or_else(default_cache_dir);
        Ok(Self {
            engine,
            linker,
            limits: limits.clone(),
            cache_dir,
            pooling,
            ticker_stop,
            load_services: Arc::new(Services::new(crate::Clamd::new(&Default::default()))),
        })
    }

    /// The services a plugin's load check runs with: nothing real.
    pub fn load_services(&self) -> Arc<Services> {
        self.load_services.clone()
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StageState> {
        &self.linker
    }

    pub fn limits(&self) -> &EngineConfig {
        &self.limits
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles a component on a blocking thread (compiling a large
    /// component takes seconds and must not stall the async workers),
    /// reusing a cached compilation of the same bytes by the same engine
    /// configuration when there is one.
    pub async fn compile(&self, bytes: Vec<u8>, digest: String) -> Result<(Component, CacheUse), CompileError> {
        let (engine, dir) = (self.engine.clone(), self.cache_dir.clone());
        tokio::task::spawn_blocking(move || compile_cached(&engine, dir.as_deref(), &bytes, &digest))
            .await
            .map_err(|err| CompileError(format!("compile task: {err}")))?
            .map_err(|err| CompileError(format!("{err:#}")))
    }

    /// A fresh store for one stage over one object, with limits, grants and
    /// the Wasm time limit armed.
    pub fn new_store(&self, services: &Services, env: StageEnv, object: ScanObject) -> Store<StageState> {
        let state = StageState::new(&self.limits, services, env, object);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let limit = Duration::from_millis(self.limits.wasm_time_limit_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let shared = &mut ctx.data_mut().shared;
            if shared.wasm_time() > limit {
                return Err(shared.fail(StageFailure::WasmTime(limit)));
            }
            // Yield so a wall-clock timeout around the call can fire.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn compile_cached(
    engine: &wasmtime::Engine,
    dir: Option<&Path>,
    bytes: &[u8],
    digest: &str,
) -> wasmtime::Result<(Component, CacheUse)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, CacheUse::Disabled));
    };
    // A cache entry is native code the host runs: it is used only from a
    // directory nobody else can have written to.
    if let Err(why) = prepare_private_dir(dir) {
        tracing::warn!("not using the plugin cache {}: {why}; compiling instead", dir.display());
        return Ok((Component::new(engine, bytes)?, CacheUse::Untrusted));
    }
    let compat = {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    };
    let path = dir.join(format!("{digest}-{compat:016x}.cwasm"));
    match trusted::check_file(&path) {
        Ok(true) => {
            // SAFETY: the file sits in a directory only this user can write,
            // is owned by this user and writable by nobody else, and was
            // written by `serialize` below for this exact engine
            // configuration (the name carries its compatibility hash);
            // wasmtime checks the header too.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheUse::Hit)),
                Err(err) => tracing::warn!("ignoring unusable cache entry {}: {err:#}", path.display()),
            }
        }
        Ok(false) => {}
        Err(why) => tracing::warn!("ignoring cache entry {}: {why}", path.display()),
    }
    let component = Component::new(engine, bytes)?;
    if let Err(err) = write_cache(&path, &component) {
        tracing::warn!("cannot cache compiled plugin in {}: {err:#}", dir.display());
    }
    Ok((component, CacheUse::Miss))
}

/// Creates `dir` (mode 0700) if missing and checks that it is private.
fn prepare_private_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| format!("cannot create it: {err}"))?;
    }
    trusted::check_dir(dir)
}

/// Whether a compile came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    Disabled,
    /// The cache directory could be written by someone else: not used.
    Untrusted,
}

fn wasmtime_config(limits: &EngineConfig, pooling: bool) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let memory = (limits.memory_limit_mib * 1024 * 1024) as usize;
        let per_component = limits.instance_limit;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(memory)
            .max_core_instances_per_component(per_component)
            .max_memories_per_component(per_component)
            .max_tables_per_component(limits.table_limit)
            .table_elements(limits.table_elements_limit as usize);
        // A freed instance's memory is reset with madvise, and each madvise
        // flushes TLBs on every CPU; batching 64 resets into one flush cut
        // a no-op stage from 16.9 µs to 13.7 µs (benches/pipeline.rs).
        // Keeping memory resident (memset instead) did not pay: a Rust
        // guest's stack top sits 1 MiB in, so the region to keep is large.
        pool.decommit_batch_size(64);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("bucketscan"))
}

fn write_cache(path: &Path, component: &Component) -> wasmtime::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = component.serialize()?;
    // Write then rename, so a concurrent reader never sees half a file;
    // owner-only permissions from the start.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Ownership and permission checks for the compiled-plugin cache: the
/// rules a private directory follows (as ssh applies to `~/.ssh`).
mod trusted {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// `dir` is private: a real directory owned by this user, writable by
    /// nobody else; and no ancestor lets anyone else replace it (each is
    /// owned by this user or root, and sticky where others may write).
    pub fn check_dir(dir: &Path) -> Result<(), String> {
        let me = euid();
        let meta = std::fs::symlink_metadata(dir).map_err(|err| err.to_string())?;
        if !meta.is_dir() {
            return Err("it is not a directory (a symlink is not accepted)".into());
        }
        if meta.uid() != me {
            return Err(format!(
                "it is owned by uid {}, not this process's uid {me}",
                meta.uid()
            ));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "it is writable by group or others (mode {:o}); `chmod 700` it",
                meta.permissions().mode() & 0o777
            ));
        }
        let canonical = dir.canonicalize().map_err(|err| err.to_string())?;
        for ancestor in canonical.ancestors().skip(1) {
            let meta = std::fs::metadata(ancestor).map_err(|err| err.to_string())?;
            let mode = meta.permissions().mode();
            let shared = mode & 0o022 != 0 && mode & 0o1000 == 0;
            if (meta.uid() != me && meta.uid() != 0) || shared {
                return Err(format!(
                    "its parent {} could let another user replace it (owner uid {}, mode {:o})",
                    ancestor.display(),
                    meta.uid(),
                    mode & 0o7777
                ));
            }
        }
        Ok(())
    }

    /// `Ok(true)` for a regular file owned by this user and writable by
    /// nobody else, `Ok(false)` when missing, `Err` otherwise.
    pub fn check_file(path: &Path) -> Result<bool, String> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err.to_string()),
        };
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.uid() != euid() {
            return Err(format!("owned by uid {}, not this process's", meta.uid()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err("writable by group or others".into());
        }
        Ok(true)
    }
}
