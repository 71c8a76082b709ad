//! `bucketscan:plugin/storage`: copy, move, delete and tag the scanned
//! object version. Grant: `storage = [buckets]`, checked against the bucket
//! each action writes to.

use crate::bindings::storage::Host;
use crate::sandbox::{StageFailure, StageState};
use bucketscan_core::storage::StorageAction;
use std::time::Instant;

impl StageState {
    async fn perform(&mut self, action: StorageAction) -> wasmtime::Result<Result<(), String>> {
        let info = self.object.info.clone();
        if let Err(err) = self.grants.check_storage(action.target_bucket(&info)) {
            return Err(self.fail(StageFailure::NotGranted(err)));
        }
        let description = action.describe(&info);
        let started = Instant::now();
        let result = self.services.storage.perform(&info, action).await;
        self.host_time += started.elapsed();
        match &result {
            Ok(()) => self.actions.push(description),
            Err(err) => self.actions.push(format!("FAILED {description}: {err}")),
        }
        Ok(result)
    }
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
