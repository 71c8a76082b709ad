//! Host capabilities: the imports of the `bucketscan:plugin` contract, one
//! module per interface.
//!
//! Every capability call is checked against the stage's grants first. A
//! call that was not granted ends the stage (a trap whose cause the report
//! names); a granted call that fails returns an error the plugin can handle.

mod clamav;
mod context;
mod http;
pub(crate) mod log;
mod object;
mod storage;

use crate::bindings;
use crate::clamd::Clamd;
use crate::sandbox::StageState;
use wasmtime::component::{HasSelf, Linker};

pub use http::{AddressPolicy, HttpClients, check_resolved, is_always_forbidden, signature};

/// The services behind the capabilities, shared by every stage. What is
/// per object (its storage backend) travels in the stage's environment.
pub struct Services {
    pub clamd: std::sync::Arc<Clamd>,
    /// Who is scanning, for the `context` import.
    pub agent_id: String,
    http: HttpClients,
}

impl Services {
    pub fn new(clamd: Clamd) -> Self {
        Self {
            clamd: std::sync::Arc::new(clamd),
            agent_id: default_agent_id(),
            http: HttpClients::default(),
        }
    }

    pub fn with_agent_id(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = agent_id.into();
        self
    }
}

/// `HOSTNAME-PID`: unique per running agent, stable for its lifetime.
pub fn default_agent_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "bucketscan".into());
    format!("{host}-{}", std::process::id())
}

/// Adds WASI 0.2 and every contract import to `linker`.
pub fn add_to_linker(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // Both plugin worlds import the same interfaces, so one registration
    // serves inspectors and actions.
    bindings::inspector::InspectorPlugin::add_to_linker::<StageState, HasSelf<StageState>>(linker, |state| state)
}

impl bindings::types::Host for StageState {}
