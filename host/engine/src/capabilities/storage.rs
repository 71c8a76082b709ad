//! Storage actions on the scanned object version: copy, move, delete, tag.
//! Grant: `storage = [buckets]`, checked against *every* bucket an action
//! touches — a move deletes from the object's own bucket, so it needs that
//! bucket granted as well as its destination.
//!
//! What the host then does (conditions on the scanned version, deferred
//! deletes, the result tags on every copy) is the object's storage
//! backend's: the scan path's.

use crate::sandbox::{ScanObject, StageFailure, StageShared, StageState};
use crate::text::cap;
use bucketscan_core::grants::Grants;
use bucketscan_core::storage::{StorageAction, StorageBackend, StorageError};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::HasData;

/// Storage's part of a stage.
pub struct StorageCtx {
    grants: Grants,
    backend: Arc<dyn StorageBackend>,
    /// What was done (or failed), for the report.
    pub actions: Vec<String>,
}

impl StorageCtx {
    pub fn new(grants: Grants, backend: Arc<dyn StorageBackend>) -> Self {
        Self {
            grants,
            backend,
            actions: Vec::new(),
        }
    }
}

/// What storage sees of the store.
pub struct StorageCtxView<'a> {
    pub ctx: &'a mut StorageCtx,
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to storage.
pub trait StorageView: Send {
    fn storage(&mut self) -> StorageCtxView<'_>;
}

impl StorageView for StageState {
    fn storage(&mut self) -> StorageCtxView<'_> {
        StorageCtxView {
            ctx: &mut self.storage,
            shared: &mut self.shared,
        }
    }
}

/// Marks storage for `add_to_linker`.
pub struct HasStorage;

impl HasData for HasStorage {
    type Data<'a> = StorageCtxView<'a>;
}

impl StorageCtxView<'_> {
    /// Performs `action` on `object`; the outer error traps the stage (a
    /// bucket not granted).
    pub async fn perform(
        &mut self,
        object: &ScanObject,
        action: StorageAction,
    ) -> wasmtime::Result<Result<(), StorageError>> {
        let info = object.info.clone();
        for bucket in action.buckets(&info) {
            if let Err(err) = self.ctx.grants.check_storage(bucket) {
                return Err(self.shared.fail(StageFailure::NotGranted(err)));
            }
        }
        let description = cap(&action.describe(&info), 1024);
        let started = Instant::now();
        let result = self.ctx.backend.clone().perform(&info, action).await;
        self.shared.host_time += started.elapsed();
        Ok(match result {
            Ok(done) => {
                self.ctx.actions.push(done);
                Ok(())
            }
            Err(err) => {
                self.ctx.actions.push(format!("FAILED {description}: {err}"));
                Err(err)
            }
        })
    }
}
