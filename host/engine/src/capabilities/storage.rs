//! `bucketscan:plugin/storage`: copy, move, delete and tag the scanned
//! object version. Grant: `storage = [buckets]`, checked against *every*
//! bucket an action touches — a move deletes from the object's own bucket,
//! so it needs that bucket granted as well as its destination.
//!
//! What the host then does (conditions on the scanned version, deferred
//! deletes, the result tags on every copy) is the scan path's: the stage's
//! storage backend.

use crate::bindings::storage::Host;
use crate::sandbox::{StageFailure, StageState};
use crate::text::cap;
use bucketscan_core::storage::{StorageAction, StorageError};
use std::time::Instant;

impl StageState {
    async fn perform(&mut self, action: StorageAction) -> wasmtime::Result<Result<(), String>> {
        let info = self.object.info.clone();
        for bucket in action.buckets(&info) {
            if let Err(err) = self.grants.check_storage(bucket) {
                return Err(self.fail(StageFailure::NotGranted(err)));
            }
        }
        let description = cap(&action.describe(&info), 1024);
        let started = Instant::now();
        let result = self.storage.clone().perform(&info, action).await;
        self.host_time += started.elapsed();
        Ok(match result {
            Ok(done) => {
                self.actions.push(done);
                Ok(())
            }
            Err(err) => {
                self.actions.push(format!("FAILED {description}: {err}"));
                Err(describe(&err))
            }
        })
    }
}

/// The message a plugin gets: the error's kind first, so a plugin can tell
/// "replaced" (stop) from "unavailable" (the object will come back).
fn describe(err: &StorageError) -> String {
    let kind = match err {
        StorageError::Replaced(_) => "replaced",
        StorageError::Gone(_) => "gone",
        StorageError::Refused(_) => "refused",
        StorageError::Unavailable(_) => "unavailable",
        StorageError::Failed(_) => "failed",
    };
    format!("{kind}: {err}")
}

impl Host for StageState {
    async fn copy(
        &mut self,
        bucket: String,
        key: String,
        extra_tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.perform(StorageAction::Copy {
            bucket,
            key,
            extra_tags,
        })
        .await
    }

    async fn move_(
        &mut self,
        bucket: String,
        key: String,
        extra_tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.perform(StorageAction::Move {
            bucket,
            key,
            extra_tags,
        })
        .await
    }

    async fn delete(&mut self) -> wasmtime::Result<Result<(), String>> {
        self.perform(StorageAction::Delete).await
    }

    async fn tag(&mut self, tags: Vec<(String, String)>) -> wasmtime::Result<Result<(), String>> {
        self.perform(StorageAction::Tag { tags }).await
    }
}
