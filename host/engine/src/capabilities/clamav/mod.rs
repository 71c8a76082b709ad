//! ClamAV: streams the object to clamd. Grant: `clamav = true`. The bytes
//! go from the host to clamd and never through the plugin's memory.

pub mod clamd;

use crate::shared::{ScanObject, StageFailure, StageShared};
use bucketscan_core::grants::{Capability, NotGranted};
use clamd::{Clamd, ClamdError};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Resource};

/// ClamAV's part of a stage.
pub struct ClamavCtx {
    granted: bool,
    clamd: Arc<Clamd>,
    /// The stage's one scan: a stage has one object, and clamd's time is
    /// shared by every object in flight, so asking again gets this answer
    /// instead of another full scan.
    answer: Option<Result<ClamdAnswer, ClamdError>>,
    /// clamd's VERSION answer, when this stage scanned.
    pub engine_version: Option<String>,
}

impl ClamavCtx {
    pub fn new(granted: bool, clamd: Arc<Clamd>) -> Self {
        Self {
            granted,
            clamd,
            answer: None,
            engine_version: None,
        }
    }
}

impl ClamavCtx {
    /// Whether the stage asked clamd and clamd answered: an answer that
    /// covers only the formats clamd opens.
    pub fn answered(&self) -> bool {
        matches!(&self.answer, Some(Ok(_)))
    }
}

/// What clamd said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdAnswer {
    pub found: Vec<String>,
    pub engine_version: String,
}

/// What ClamAV sees of the store.
pub struct ClamavCtxView<'a> {
    pub ctx: &'a mut ClamavCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to ClamAV.
pub trait ClamavView: Send {
    fn clamav(&mut self) -> ClamavCtxView<'_>;
}

/// Marks ClamAV for `add_to_linker`.
pub struct HasClamav;

impl HasData for HasClamav {
    type Data<'a> = ClamavCtxView<'a>;
}

impl ClamavCtxView<'_> {
    /// Scans `object`; the outer error traps the stage (not granted).
    pub async fn scan(&mut self, object: &Resource<ScanObject>) -> wasmtime::Result<Result<ClamdAnswer, ClamdError>> {
        if !self.ctx.granted {
            return Err(self.shared.fail(StageFailure::NotGranted(NotGranted {
                capability: Capability::Clamav,
                detail: "the stage has no `clamav = true` grant".into(),
            })));
        }
        let body = self.shared.table.get(object)?.body.clone();
        if let Some(answer) = &self.ctx.answer {
            return Ok(answer.clone());
        }
        let clamd = self.ctx.clamd.clone();
        let started = Instant::now();
        let result = async {
            let found = clamd.scan(&body).await?;
            let engine_version = clamd.version().await?;
            Ok(ClamdAnswer { found, engine_version })
        }
        .await;
        self.shared.host_time += started.elapsed();
        if let Ok(answer) = &result {
            self.ctx.engine_version = Some(answer.engine_version.clone());
        }
        self.ctx.answer = Some(result.clone());
        Ok(result)
    }
}
