//! Host capabilities: the imports of the `bucketscan:plugin` contract, one
//! module per interface.
//!
//! Every capability call is checked against the stage's grants first. A
//! call that was not granted ends the stage (a trap whose cause the report
//! names); a granted call that fails returns an error the plugin can handle.

mod clamav;
mod http;
mod log;
mod object;
mod storage;

use crate::bindings;
use crate::clamd::Clamd;
use crate::sandbox::StageState;
use bucketscan_core::storage::StorageBackend;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

/// The services behind the capabilities, shared by every stage.
pub struct HostServices {
    pub clamd: Clamd,
    pub storage: Arc<dyn StorageBackend>,
    http: reqwest::Client,
}

/// How long one outbound HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

impl HostServices {
    pub fn new(clamd: Clamd, storage: Arc<dyn StorageBackend>) -> Self {
        let http = reqwest::Client::builder()
            // A redirect could lead past the allow-list; plugins see 3xx.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("HTTP client with static settings");
        Self { clamd, storage, http }
    }
}

/// Adds WASI 0.2 and every contract import to `linker`.
pub fn add_to_linker(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // Both plugin worlds import the same interfaces, so one registration
    // serves inspectors and actions.
    bindings::inspector::InspectorPlugin::add_to_linker::<StageState, HasSelf<StageState>>(linker, |state| state)
}

impl bindings::types::Host for StageState {}
