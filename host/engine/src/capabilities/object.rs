//! The object under scan: its metadata and ranged reads. Always available.
//! Objects live in the stage's resource table as [`ScanObject`]s.

use crate::shared::{ScanObject, StageShared};
use wasmtime::component::{HasData, Resource};

/// The most one `read` call returns, so a plugin cannot make the host copy a
/// huge object into its memory in one go.
pub const MAX_READ: u32 = 1 << 20;

/// What object access sees of the store.
pub struct ObjectCtxView<'a> {
    pub shared: &'a mut StageShared,
}

/// The projection from a store's state to object access.
pub trait ObjectView: Send {
    fn object(&mut self) -> ObjectCtxView<'_>;
}

/// Marks object access for `add_to_linker`.
pub struct HasObject;

impl HasData for HasObject {
    type Data<'a> = ObjectCtxView<'a>;
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    NotDownloaded,
    Other(String),
}

impl ObjectCtxView<'_> {
    pub fn get(&self, object: &Resource<ScanObject>) -> wasmtime::Result<&ScanObject> {
        Ok(self.shared.table.get(object)?)
    }

    /// Up to `len` bytes (at most [`MAX_READ`]) at `offset`.
    pub fn read(
        &self,
        object: &Resource<ScanObject>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, ReadError>> {
        let object = self.get(object)?;
        let len = len.min(MAX_READ) as usize;
        if matches!(object.body, bucketscan_core::object::ObjectBody::NotFetched) {
            return Ok(Err(ReadError::NotDownloaded));
        }
        Ok(object
            .body
            .read_at(offset, len)
            .map_err(|err| ReadError::Other(format!("reading {} at {offset}: {err}", object.info.url()))))
    }

    pub fn drop(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<()> {
        self.shared.table.delete(object)?;
        Ok(())
    }
}
