//! `bucketscan:plugin/object`: metadata and ranged reads of the object under
//! scan. Always available.

use crate::bindings::object::{Host, HostObject, ObjectInfo};
use crate::sandbox::{ScanObject, StageState};
use wasmtime::component::Resource;

/// The most one `read` call returns, so a plugin cannot make the host copy a
/// huge object into its memory in one go.
pub const MAX_READ: u32 = 1 << 20;

impl Host for StageState {}

impl HostObject for StageState {
    async fn info(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<ObjectInfo> {
        let info = &self.table.get(&object)?.info;
        Ok(ObjectInfo {
            bucket: info.bucket.clone(),
            key: info.key.clone(),
            version_id: info.version_id.clone(),
            size: info.size,
            etag: info.etag.clone(),
            content_type: info.content_type.clone(),
            metadata: info.metadata.clone(),
            tags: info.tags.clone(),
        })
    }

    async fn read(
        &mut self,
        object: Resource<ScanObject>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let object = self.table.get(&object)?;
        let len = len.min(MAX_READ) as usize;
        Ok(object.body.read_at(offset, len).map_err(|err| {
            format!(
                "reading s3://{}/{} at {offset}: {err}",
                object.info.bucket, object.info.key
            )
        }))
    }

    async fn drop(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<()> {
        self.table.delete(object)?;
        Ok(())
    }
}
