//! An in-process host for tests: the real engine, real components, real
//! clamd, and dry-run storage that records what stages asked for.

use bucketscan_core::config::{ClamavConfig, HostLimits};
use bucketscan_core::grants::Grants;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::report::ScanReport;
use bucketscan_core::storage::DryRunStorage;
use bucketscan_engine::{Clamd, HostServices, PipelineStage, Plugin, PluginHost, ScanObject};
use std::sync::Arc;

pub struct TestHost {
    pub host: PluginHost,
    pub services: Arc<HostServices>,
    pub storage: Arc<DryRunStorage>,
}

/// Limits for tests: the defaults, with a compile cache under target/.
pub fn test_limits() -> HostLimits {
    HostLimits {
        cache_dir: Some(crate::target_dir().join("tmp/component-cache")),
        ..HostLimits::default()
    }
}

impl TestHost {
    /// A host whose `clamav` capability talks to `clamd_address`.
    pub fn new(limits: HostLimits, clamd_address: &str) -> Self {
        let host = PluginHost::new(&limits).expect("engine");
        let storage = Arc::new(DryRunStorage::default());
        let clamav = ClamavConfig {
            address: clamd_address.to_owned(),
            stream_max_bytes: crate::clamd::STREAM_MAX_BYTES,
            ..ClamavConfig::default()
        };
        let services = Arc::new(HostServices::new(Clamd::new(&clamav), storage.clone()));
        Self {
            host,
            services,
            storage,
        }
    }

    /// A host on the shared test clamd.
    pub fn with_clamd(limits: HostLimits) -> Self {
        Self::new(limits, &crate::clamd::shared().address())
    }

    pub async fn plugin(&self, component: &str) -> Arc<Plugin> {
        let path = crate::component(component);
        Arc::new(
            Plugin::load(&self.host, component, &path, None)
                .await
                .expect("plugin loads"),
        )
    }

    pub async fn run(&self, stages: &[PipelineStage], object: ScanObject) -> ScanReport {
        bucketscan_engine::run_pipeline(&self.host, &self.services, stages, object).await
    }
}

/// A pipeline stage with settings and grants.
pub fn stage(plugin: &Arc<Plugin>, settings: &[(&str, &str)], grants: Grants) -> PipelineStage {
    PipelineStage {
        plugin: plugin.clone(),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        grants,
        on: Vec::new(),
        signing_secret: None,
    }
}

/// Grants ClamAV only.
pub fn clamav_grant() -> Grants {
    Grants {
        clamav: true,
        ..Grants::default()
    }
}

/// An in-memory object in `bucket` under `key`.
pub fn object(bucket: &str, key: &str, bytes: Vec<u8>, content_type: Option<&str>) -> ScanObject {
    ScanObject {
        info: Arc::new(ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            size: bytes.len() as u64,
            content_type: content_type.map(str::to_owned),
            ..ObjectInfo::default()
        }),
        body: ObjectBody::from_bytes(bytes),
    }
}
