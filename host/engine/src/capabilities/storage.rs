//! Storage actions on the scanned object version: copy, move, delete, tag.
//! Grant: `storage = [buckets]`, checked against *every* bucket an action
//! touches — a move deletes from the object's own bucket, so it needs that
//! bucket granted as well as its destination.
//!
//! What the host then does (conditions on the scanned version, deferred
//! deletes, the result tags on every copy) is the object's stage
//! storage's: the scan path's.

use crate::shared::{ScanObject, StageFailure, StageShared};
use bucketscan_core::grants::Grants;
use bucketscan_core::storage::{StageStorage, StorageAction, StorageError};
use bucketscan_core::text::cap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::HasData;

/// Most storage calls one stage may make: each is S3 work (a copy may be
/// gigabytes) whose time the Wasm limit does not count.
pub const MAX_CALLS: usize = 32;
/// Longest line kept in the report per action.
const MAX_LINE: usize = 1024;

/// Storage's part of a stage.
pub struct StorageCtx {
    grants: Grants,
    storage: Arc<dyn StageStorage>,
    calls: usize,
    /// What was done (or failed), for the report.
    pub actions: Vec<String>,
    /// The last failure that no later action of the stage made good. A
    /// plugin that returns success past it has its stage failed: it must
    /// not report containment that did not happen. (`gone` and `replaced`
    /// are answers, not failures: the scanned bytes need no more handling
    /// or get their own pass.)
    pub unresolved: Option<String>,
}

impl StorageCtx {
    pub fn new(grants: Grants, storage: Arc<dyn StageStorage>) -> Self {
        Self {
            grants,
            storage,
            calls: 0,
            actions: Vec::new(),
            unresolved: None,
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
        self.ctx.calls += 1;
        if self.ctx.calls > MAX_CALLS {
            return Err(self.shared.fail(StageFailure::CallLimit(format!(
                "more than {MAX_CALLS} storage calls in one stage"
            ))));
        }
        let summary = action.summary(&info);
        let started = Instant::now();
        let result = self.ctx.storage.clone().perform(&info, action).await;
        self.shared.host_time += started.elapsed();
        Ok(match result {
            Ok(done) => {
                self.ctx.actions.push(cap(&done, MAX_LINE));
                self.ctx.unresolved = None;
                Ok(())
            }
            Err(err) => {
                let line = cap(&format!("FAILED {summary}: {err}"), MAX_LINE);
                if !matches!(err, StorageError::Gone(_) | StorageError::Replaced(_)) {
                    self.ctx.unresolved = Some(line.clone());
                }
                self.ctx.actions.push(line);
                Err(err)
            }
        })
    }
}
