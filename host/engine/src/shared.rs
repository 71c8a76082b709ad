//! What every capability of a stage shares, and how a stage fails: the
//! leaf the capabilities build on. (The store's state that holds all of
//! them is `crate::sandbox`'s; the capabilities never see it.)

use bucketscan_core::grants::NotGranted;
use bucketscan_core::report::{FailureCause, StageOutcome};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;

pub use bucketscan_core::object::ScanObject;

/// Most handles one stage may hold at once (objects, requests, responses,
/// WASI streams): the table lives in host memory, outside the plugin's
/// memory limit.
pub const MAX_HANDLES: usize = 1024;

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
