//! Contract series 0.2 (`wit/`): its bindings, its imports bound to the
//! host's capabilities, and conversions between its types and the
//! domain's.
//!
//! In 0.2 a stage's inputs come through the `stage` resource (a new input
//! is a new method), settings are typed, every capability call names its
//! object, errors are variants, and HTTP requests and answers are
//! resources.

mod calls;
mod convert;

pub(super) use calls::*;

use convert::{outcome_to_wit, setting_to_wit, verdict_to_wit};

use crate::capabilities::clamav::clamd::ClamdError;
use crate::capabilities::clamav::{ClamavCtxView, ClamavView, HasClamav};
use crate::capabilities::http::{HasHttp, HttpCtxView, HttpFailure, HttpRequest, HttpResponse, HttpView};
use crate::capabilities::log::{HasLog, Level as DomainLevel, LogCtxView, LogView};
use crate::capabilities::object::{HasObject, ObjectCtxView, ObjectView, ReadError};
use crate::capabilities::stage::{HasStage, StageCtxView, StageHandle, StageView};
use crate::capabilities::storage::{HasStorage, StorageCtxView, StorageView};
use crate::capabilities::yara::{HasYara, YaraCtxView, YaraError, YaraView};
use crate::sandbox::ScanObject;
use bucketscan_core::storage::{StorageAction, StorageError};
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

pub mod inspector {
    wasmtime::component::bindgen!({
        world: "inspector-plugin",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/object.object": crate::sandbox::ScanObject,
            "bucketscan:plugin/stage.stage": crate::capabilities::stage::StageHandle,
            "bucketscan:plugin/http.request": crate::capabilities::http::HttpRequest,
            "bucketscan:plugin/http.response": crate::capabilities::http::HttpResponse,
        },
    });
}

pub mod action {
    wasmtime::component::bindgen!({
        world: "action-plugin",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "bucketscan:plugin/types": super::inspector::bucketscan::plugin::types,
            "bucketscan:plugin/object": super::inspector::bucketscan::plugin::object,
            "bucketscan:plugin/stage": super::inspector::bucketscan::plugin::stage,
            "bucketscan:plugin/log": super::inspector::bucketscan::plugin::log,
            "bucketscan:plugin/clamav": super::inspector::bucketscan::plugin::clamav,
            "bucketscan:plugin/yara": super::inspector::bucketscan::plugin::yara,
            "bucketscan:plugin/storage": super::inspector::bucketscan::plugin::storage,
            "bucketscan:plugin/http": super::inspector::bucketscan::plugin::http,
        },
    });
}

use inspector::bucketscan::plugin::{clamav, http, log, object, stage, storage, types, yara};

/// Binds the 0.2 imports to the capabilities of `T`'s stores.
pub fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: ObjectView + StageView + LogView + ClamavView + YaraView + StorageView + HttpView + 'static,
{
    types::add_to_linker::<T, HasObject>(linker, T::object)?;
    object::add_to_linker::<T, HasObject>(linker, T::object)?;
    stage::add_to_linker::<T, HasStage>(linker, T::stage)?;
    log::add_to_linker::<T, HasLog>(linker, T::log)?;
    clamav::add_to_linker::<T, HasClamav>(linker, T::clamav)?;
    yara::add_to_linker::<T, HasYara>(linker, T::yara)?;
    storage::add_to_linker::<T, HasStorage>(linker, T::storage)?;
    http::add_to_linker::<T, HasHttp>(linker, T::http)
}

impl types::Host for ObjectCtxView<'_> {}
impl object::Host for ObjectCtxView<'_> {}

impl object::HostObject for ObjectCtxView<'_> {
    async fn bucket(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<String> {
        Ok(self.get(&object)?.info.bucket.clone())
    }

    async fn key(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<String> {
        Ok(self.get(&object)?.info.key.clone())
    }

    async fn version_id(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&object)?.info.version_id.clone())
    }

    async fn size(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<u64> {
        Ok(self.get(&object)?.size())
    }

    async fn etag(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&object)?.info.etag.clone())
    }

    async fn sha256(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&object)?.info.sha256.clone())
    }

    async fn content_type(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&object)?.info.content_type.clone())
    }

    async fn metadata(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.get(&object)?.info.metadata.clone())
    }

    async fn tags(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.get(&object)?.info.tags.clone())
    }

    async fn read(
        &mut self,
        object: Resource<ScanObject>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, object::ReadError>> {
        Ok(
            ObjectCtxView::read(self, &object, offset, len)?.map_err(|err| match err {
                ReadError::NotDownloaded => object::ReadError::NotDownloaded,
                ReadError::Other(message) => object::ReadError::Other(message),
            }),
        )
    }

    async fn container_key(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Option<String>> {
        let member = self.get(&object)?.info.member.as_ref();
        Ok(member.map(|member| member.container_key.clone()))
    }

    async fn member_path(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Vec<String>> {
        let member = self.get(&object)?.info.member.as_ref();
        Ok(member.map(|member| member.path.clone()).unwrap_or_default())
    }

    async fn drop(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<()> {
        ObjectCtxView::drop(self, object)
    }
}

impl stage::Host for StageCtxView<'_> {}

impl stage::HostStage for StageCtxView<'_> {
    async fn object(&mut self, _stage: Resource<StageHandle>) -> wasmtime::Result<Resource<ScanObject>> {
        StageCtxView::object(self)
    }

    async fn settings(
        &mut self,
        _stage: Resource<StageHandle>,
    ) -> wasmtime::Result<Vec<(String, types::SettingValue)>> {
        Ok(self
            .ctx
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), setting_to_wit(v)))
            .collect())
    }

    async fn setting(
        &mut self,
        _stage: Resource<StageHandle>,
        name: String,
    ) -> wasmtime::Result<Option<types::SettingValue>> {
        Ok(StageCtxView::setting(self, &name).map(setting_to_wit))
    }

    async fn verdict(&mut self, _stage: Resource<StageHandle>) -> wasmtime::Result<Option<types::Verdict>> {
        Ok(self.ctx.verdict.as_ref().map(verdict_to_wit))
    }

    async fn agent_id(&mut self, _stage: Resource<StageHandle>) -> wasmtime::Result<String> {
        Ok(self.ctx.agent_id.clone())
    }

    async fn earlier_stages(&mut self, _stage: Resource<StageHandle>) -> wasmtime::Result<Vec<stage::StageTiming>> {
        Ok(self
            .ctx
            .timings
            .iter()
            .map(|timing| stage::StageTiming {
                plugin: timing.plugin.clone(),
                outcome: outcome_to_wit(timing.outcome),
                duration_us: timing.duration.as_micros().min(u64::MAX as u128) as u64,
            })
            .collect())
    }

    async fn drop(&mut self, stage: Resource<StageHandle>) -> wasmtime::Result<()> {
        self.shared.table.delete(stage)?;
        Ok(())
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
    ) -> wasmtime::Result<Result<clamav::ClamdAnswer, clamav::ScanError>> {
        Ok(match ClamavCtxView::scan(self, &object).await? {
            Ok(answer) => Ok(clamav::ClamdAnswer {
                found: answer.found,
                engine_version: answer.engine_version,
            }),
            Err(err) => {
                let message = err.to_string();
                Err(match err {
                    ClamdError::Unreachable(_) => clamav::ScanError::Unreachable(message),
                    ClamdError::Timeout(_) => clamav::ScanError::Timeout(message),
                    ClamdError::SizeLimit(_) => clamav::ScanError::SizeLimit(message),
                    ClamdError::StaleSignatures(_) => clamav::ScanError::StaleSignatures(message),
                    ClamdError::Read(_) => clamav::ScanError::Read(message),
                    ClamdError::Protocol(_) => clamav::ScanError::Other(message),
                })
            }
        })
    }
}

impl yara::Host for YaraCtxView<'_> {
    async fn scan(
        &mut self,
        object: Resource<ScanObject>,
        rule_set: String,
    ) -> wasmtime::Result<Result<yara::YaraAnswer, yara::ScanError>> {
        Ok(match YaraCtxView::scan(self, &object, &rule_set).await? {
            Ok(answer) => Ok(yara::YaraAnswer {
                matches: answer.matches.into_iter().map(convert::rule_match_to_wit).collect(),
                rule_set: answer.rule_set,
                version: answer.version,
            }),
            Err(err) => {
                let message = err.to_string();
                Err(match err {
                    YaraError::UnknownRuleSet(_) => yara::ScanError::UnknownRuleSet(message),
                    YaraError::NotReady(_) => yara::ScanError::NotReady(message),
                    YaraError::SizeLimit(_) => yara::ScanError::SizeLimit(message),
                    YaraError::Timeout(_) => yara::ScanError::Timeout(message),
                    YaraError::Read(_) => yara::ScanError::Read(message),
                    YaraError::Other(_) => yara::ScanError::Other(message),
                })
            }
        })
    }
}

impl StorageCtxView<'_> {
    async fn perform_v0_2(
        &mut self,
        object: Resource<ScanObject>,
        action: StorageAction,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        let object = self.shared.table.get(&object)?.clone();
        Ok(self.perform(&object, action).await?.map_err(|err| match err {
            StorageError::Replaced(m) => storage::StorageError::Replaced(m),
            StorageError::Gone(m) => storage::StorageError::Gone(m),
            StorageError::Refused(m) => storage::StorageError::Refused(m),
            StorageError::Unavailable(m) => storage::StorageError::Unavailable(m),
            StorageError::Failed(m) => storage::StorageError::Other(m),
        }))
    }
}

impl storage::Host for StorageCtxView<'_> {
    async fn copy(
        &mut self,
        object: Resource<ScanObject>,
        bucket: String,
        key: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        let action = StorageAction::Copy {
            bucket,
            key,
            extra_tags: tags,
        };
        self.perform_v0_2(object, action).await
    }

    async fn move_(
        &mut self,
        object: Resource<ScanObject>,
        bucket: String,
        key: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        let action = StorageAction::Move {
            bucket,
            key,
            extra_tags: tags,
        };
        self.perform_v0_2(object, action).await
    }

    async fn delete(&mut self, object: Resource<ScanObject>) -> wasmtime::Result<Result<(), storage::StorageError>> {
        self.perform_v0_2(object, StorageAction::Delete).await
    }

    async fn tag(
        &mut self,
        object: Resource<ScanObject>,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        self.perform_v0_2(object, StorageAction::Tag { tags }).await
    }
}

impl http::Host for HttpCtxView<'_> {
    async fn send(
        &mut self,
        request: Resource<HttpRequest>,
    ) -> wasmtime::Result<Result<Resource<HttpResponse>, http::HttpError>> {
        let request = self.shared.table.delete(request)?;
        Ok(match HttpCtxView::send(self, request).await? {
            Ok(response) => Ok(self.shared.push(response)?),
            Err(failure) => Err(match failure {
                HttpFailure::NotAllowed(m) => http::HttpError::NotAllowed(m),
                HttpFailure::Timeout(m) => http::HttpError::Timeout(m),
                HttpFailure::Connection(m) => http::HttpError::Connection(m),
                HttpFailure::Other(m) => http::HttpError::Other(m),
            }),
        })
    }
}

impl http::HostRequest for HttpCtxView<'_> {
    async fn new(&mut self, url: String) -> wasmtime::Result<Resource<HttpRequest>> {
        let request = self.new_request(url)?;
        self.shared.push(request)
    }

    async fn set_header(
        &mut self,
        request: Resource<HttpRequest>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.add_header(&request, name, value)
    }

    async fn set_body(&mut self, request: Resource<HttpRequest>, body: Vec<u8>) -> wasmtime::Result<()> {
        HttpCtxView::set_body(self, &request, body)
    }

    async fn set_timeout_ms(&mut self, request: Resource<HttpRequest>, timeout_ms: u32) -> wasmtime::Result<()> {
        self.shared.table.get_mut(&request)?.timeout = Some(Duration::from_millis(timeout_ms.into()));
        Ok(())
    }

    async fn set_attempts(&mut self, request: Resource<HttpRequest>, attempts: u8) -> wasmtime::Result<()> {
        self.shared.table.get_mut(&request)?.attempts = Some(attempts);
        Ok(())
    }

    async fn drop(&mut self, request: Resource<HttpRequest>) -> wasmtime::Result<()> {
        self.shared.table.delete(request)?;
        Ok(())
    }
}

impl http::HostResponse for HttpCtxView<'_> {
    async fn status(&mut self, response: Resource<HttpResponse>) -> wasmtime::Result<u16> {
        Ok(self.shared.table.get(&response)?.status)
    }

    async fn header(&mut self, response: Resource<HttpResponse>, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .shared
            .table
            .get(&response)?
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.clone()))
    }

    async fn body(&mut self, response: Resource<HttpResponse>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.shared.table.get(&response)?.body.clone())
    }

    async fn drop(&mut self, response: Resource<HttpResponse>) -> wasmtime::Result<()> {
        self.shared.table.delete(response)?;
        Ok(())
    }
}
