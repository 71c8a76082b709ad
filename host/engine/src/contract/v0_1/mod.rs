//! Contract series 0.1 (`wit/released/0.1.1`, frozen; 0.1.0 plugins run on
//! it too): its bindings, its imports bound to the host's capabilities,
//! and conversions between its types and the domain's.
//!
//! In 0.1 a stage's inputs are parameters (`inspect(object, settings,
//! so-far)`), settings are strings (lists joined with commas), storage acts
//! on the stage's own object, and errors are strings.

mod calls;
mod convert;

pub(super) use calls::*;

use crate::capabilities::clamav::clamd::ClamdError;
use crate::capabilities::clamav::{ClamavCtxView, ClamavView, HasClamav};
use crate::capabilities::http::{HasHttp, HttpCtxView, HttpRequest, HttpView};
use crate::capabilities::log::{HasLog, Level as DomainLevel, LogCtxView, LogView};
use crate::capabilities::object::{HasObject, ObjectCtxView, ObjectView, ReadError};
use crate::capabilities::stage::{HasStage, StageCtxView, StageView};
use crate::capabilities::storage::{HasStorage, StorageCtxView, StorageView};
use crate::sandbox::ScanObject;
use bucketscan_core::storage::StorageAction;
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

pub mod inspector {
    wasmtime::component::bindgen!({
        world: "inspector-plugin",
        path: "../../wit/released/0.1.1",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/object.object": crate::sandbox::ScanObject,
        },
    });
}

pub mod action {
    wasmtime::component::bindgen!({
        world: "action-plugin",
        path: "../../wit/released/0.1.1",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/types": super::inspector::bucketscan::plugin::types,
            "bucketscan:plugin/object": super::inspector::bucketscan::plugin::object,
            "bucketscan:plugin/log": super::inspector::bucketscan::plugin::log,
            "bucketscan:plugin/clamav": super::inspector::bucketscan::plugin::clamav,
            "bucketscan:plugin/storage": super::inspector::bucketscan::plugin::storage,
            "bucketscan:plugin/http": super::inspector::bucketscan::plugin::http,
            "bucketscan:plugin/context": super::inspector::bucketscan::plugin::context,
        },
    });
}

use inspector::bucketscan::plugin::{clamav, context, http, log, object, storage, types};

/// Binds the 0.1 imports to the capabilities of `T`'s stores.
pub fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: ObjectView + StageView + LogView + ClamavView + StorageView + HttpView + 'static,
{
    types::add_to_linker::<T, HasObject>(linker, T::object)?;
    object::add_to_linker::<T, HasObject>(linker, T::object)?;
    log::add_to_linker::<T, HasLog>(linker, T::log)?;
    clamav::add_to_linker::<T, HasClamav>(linker, T::clamav)?;
    storage::add_to_linker::<T, HasStorage>(linker, T::storage)?;
    http::add_to_linker::<T, HasHttp>(linker, T::http)?;
    context::add_to_linker::<T, HasStage>(linker, T::stage)
}

impl types::Host for ObjectCtxView<'_> {}
impl object::Host for ObjectCtxView<'_> {}

impl object::HostObject for ObjectCtxView<'_> {
    async fn info(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<object::ObjectInfo> {
        let scanned = self.get(&object)?;
        let info = &scanned.info;
        Ok(object::ObjectInfo {
            bucket: info.bucket.clone(),
            key: info.key.clone(),
            version_id: info.version_id.clone(),
            size: scanned.size(),
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
        Ok(
            ObjectCtxView::read(self, &object, offset, len)?.map_err(|err| match err {
                ReadError::NotDownloaded => "the object was not downloaded (it is over the size limit)".into(),
                ReadError::Other(message) => message,
            }),
        )
    }

    async fn drop(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<()> {
        ObjectCtxView::drop(self, object)
    }
}

impl log::Host for LogCtxView<'_> {
    async fn log(
        &mut self,
        level: types::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            types::Level::Trace => DomainLevel::Trace,
            types::Level::Debug => DomainLevel::Debug,
            types::Level::Info => DomainLevel::Info,
            types::Level::Warn => DomainLevel::Warn,
            types::Level::Error => DomainLevel::Error,
        };
        LogCtxView::log(self, level, &message, &fields);
        Ok(())
    }
}

impl clamav::Host for ClamavCtxView<'_> {
    async fn scan(
        &mut self,
        object: Resource<ScanObject>,
    ) -> wasmtime::Result<Result<clamav::ScanReport, clamav::ScanError>> {
        Ok(match ClamavCtxView::scan(self, &object).await? {
            Ok(answer) => Ok(clamav::ScanReport {
                found: answer.found,
                engine_version: answer.engine_version,
            }),
            Err(err) => Err(clamav::ScanError {
                kind: match err {
                    ClamdError::Unreachable(_) => clamav::ScanErrorKind::Unreachable,
                    ClamdError::Timeout(_) => clamav::ScanErrorKind::Timeout,
                    ClamdError::SizeLimit(_) => clamav::ScanErrorKind::SizeLimit,
                    ClamdError::Protocol(_) => clamav::ScanErrorKind::Protocol,
                    ClamdError::Read(_) => clamav::ScanErrorKind::Read,
                    ClamdError::StaleSignatures(_) => clamav::ScanErrorKind::StaleSignatures,
                },
                message: err.to_string(),
            }),
        })
    }
}

impl StorageCtxView<'_> {
    /// 0.1 acts on the stage's own object; errors are strings, their kind
    /// first.
    async fn perform_v0_1(&mut self, action: StorageAction) -> wasmtime::Result<Result<(), String>> {
        let object = self.shared.object.clone();
        Ok(self.perform(&object, action).await?.map_err(|err| {
            use bucketscan_core::storage::StorageError as E;
            let kind = match &err {
                E::Replaced(_) => "replaced",
                E::Gone(_) => "gone",
                E::Refused(_) => "refused",
                E::Unavailable(_) => "unavailable",
                E::Failed(_) => "failed",
            };
            format!("{kind}: {err}")
        }))
    }
}

impl storage::Host for StorageCtxView<'_> {
    async fn copy(
        &mut self,
        bucket: String,
        key: String,
        extra_tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.perform_v0_1(StorageAction::Copy {
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
        self.perform_v0_1(StorageAction::Move {
            bucket,
            key,
            extra_tags,
        })
        .await
    }

    async fn delete(&mut self) -> wasmtime::Result<Result<(), String>> {
        self.perform_v0_1(StorageAction::Delete).await
    }

    async fn tag(&mut self, tags: Vec<(String, String)>) -> wasmtime::Result<Result<(), String>> {
        self.perform_v0_1(StorageAction::Tag { tags }).await
    }
}

impl http::Host for HttpCtxView<'_> {
    async fn post(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<http::Response, String>> {
        let request = HttpRequest {
            url,
            headers,
            body,
            timeout: None,
            attempts: None,
        };
        Ok(self
            .send(request)
            .await?
            .map(|response| http::Response {
                status: response.status,
                body: response.body,
            })
            .map_err(|failure| failure.to_string()))
    }

    async fn send(&mut self, request: http::Request) -> wasmtime::Result<Result<http::Response, String>> {
        let request = HttpRequest {
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout: Some(Duration::from_millis(request.timeout_ms.into())),
            attempts: Some(request.attempts),
        };
        Ok(HttpCtxView::send(self, request)
            .await?
            .map(|response| http::Response {
                status: response.status,
                body: response.body,
            })
            .map_err(|failure| failure.to_string()))
    }
}

impl context::Host for StageCtxView<'_> {
    async fn agent_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.agent_id.clone())
    }

    async fn stage_timings(&mut self) -> wasmtime::Result<Vec<context::StageTiming>> {
        Ok(self
            .ctx
            .timings
            .iter()
            .map(|timing| context::StageTiming {
                plugin: timing.plugin.clone(),
                outcome: timing.outcome.as_str().to_owned(),
                duration_us: timing.duration.as_micros().min(u64::MAX as u128) as u64,
            })
            .collect())
    }
}
