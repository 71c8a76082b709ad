//! The host's capabilities: what a plugin may do beyond its own memory.
//! One module per capability, each owning its context in the stage's store
//! and a small view trait to reach it (the `WasiView` pattern):
//!
//! - [`object`]: the object under scan, read in ranges (always available);
//! - [`stage`]: the stage's inputs — settings, verdict, earlier stages;
//! - [`log`]: log lines, capped and budgeted (always available);
//! - [`clamav`]: clamd scans (`grants.clamav`);
//! - [`yara`]: YARA rule sets run by the host (`grants.yara`);
//! - [`storage`]: copy, move, delete, tag (`grants.storage`);
//! - [`http`]: outbound POSTs (`grants.http`, `grants.http-private`).
//!
//! A capability's logic lives here, versionless; each contract series
//! (`crate::contract`) binds its WIT to it, and `crate::contract::add_to_linker`
//! links every series. A capability knows only its own context and the
//! stage's shared part (`crate::shared`), never the whole store state.
//! Adding a capability: a module here (context, view, logic), a field in
//! `StageState` and its view impl (`crate::sandbox`), and its binding in
//! the newest series. Every call is checked against the stage's grants
//! first; a call that was not granted ends the stage (a trap whose cause
//! the report names), a granted call that fails returns an error the
//! plugin can handle.

pub mod clamav;
pub mod http;
pub mod log;
pub mod object;
pub mod stage;
pub mod storage;
pub mod yara;

use crate::capabilities::clamav::clamd::Clamd;
use std::sync::Arc;

pub use http::{AddressPolicy, HttpClients, check_resolved, is_always_forbidden, signature};

/// The services behind the capabilities, shared by every stage. What is
/// per object (its storage backend) travels in the stage's environment.
pub struct Services {
    pub clamd: Arc<Clamd>,
    /// Who is scanning, for the stage's `agent-id`.
    pub agent_id: String,
    pub http: Arc<HttpClients>,
    /// The YARA rule sets stages may be granted (none by default).
    pub yara: Arc<bucketscan_yara::Library>,
}

impl Services {
    pub fn new(clamd: Clamd) -> Self {
        Self {
            clamd: Arc::new(clamd),
            agent_id: default_agent_id(),
            http: Arc::default(),
            yara: Arc::default(),
        }
    }

    pub fn with_yara(mut self, library: Arc<bucketscan_yara::Library>) -> Self {
        self.yara = library;
        self
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
