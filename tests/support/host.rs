//! An in-process host for tests: the real engine, real components, real
//! clamd, and the real scan path over an object held in memory, with a
//! store that records what the path would write.

use bucketscan_core::config::SettingValue;
use bucketscan_core::grants::Grants;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::report::ScanReport;
use bucketscan_core::seal::Sealer;
use bucketscan_core::tags::TagKeys;
use bucketscan_engine::config::{ClamavConfig, EngineConfig};
use bucketscan_engine::{Clamd, Engine, PipelineStage, Plugin, ScanObject, Services};
use bucketscan_scan::store::Target;
use bucketscan_scan::testing::MemoryStore;
use bucketscan_scan::{OnePipeline, Scanner};
use std::sync::Arc;

pub struct TestHost {
    pub host: Arc<Engine>,
    pub services: Arc<Services>,
}

/// Limits for tests: the defaults, with a compile cache under target/.
pub fn test_limits() -> EngineConfig {
    EngineConfig {
        cache_dir: Some(crate::target_dir().join("tmp/component-cache")),
        ..EngineConfig::default()
    }
}

impl TestHost {
    /// A host whose `clamav` capability talks to `clamd_address`.
    pub fn new(limits: EngineConfig, clamd_address: &str) -> Self {
        let host = Arc::new(Engine::new(&limits).expect("engine"));
        let clamav = ClamavConfig {
            address: clamd_address.to_owned(),
            stream_max_bytes: crate::clamd::STREAM_MAX_BYTES,
            ..ClamavConfig::default()
        };
        let services = Arc::new(Services::new(Clamd::new(&clamav)));
        Self { host, services }
    }

    /// A host on the shared test clamd.
    pub fn with_clamd(limits: EngineConfig) -> Self {
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

    /// A plugin of the last 0.1 release (see [`crate::released_component`]).
    pub async fn released_plugin(&self, component: &str) -> Arc<Plugin> {
        let path = crate::released_component(component);
        Arc::new(
            Plugin::load(&self.host, component, &path, None)
                .await
                .expect("released plugin loads"),
        )
    }

    /// A plugin as the 0.2.0 contract built it, before `yara` was added
    /// (`tests/fixtures/released-0.2.0/`).
    pub async fn plugin_of_0_2_0(&self, component: &str) -> Arc<Plugin> {
        let path = crate::workspace()
            .join("tests/fixtures/released-0.2.0")
            .join(format!("{component}.wasm"));
        Arc::new(
            Plugin::load(&self.host, component, &path, None)
                .await
                .expect("0.2.0 plugin loads"),
        )
    }

    /// Takes `object` through the scan path with `stages`.
    pub async fn run(&self, stages: &[PipelineStage], object: ScanObject) -> ScanReport {
        self.run_recorded(stages, object).await.0
    }

    /// Like [`run`](Self::run), with what the path wrote (dry).
    pub async fn run_recorded(&self, stages: &[PipelineStage], object: ScanObject) -> (ScanReport, Vec<String>) {
        let store = MemoryStore::dry_run();
        store.insert(&object);
        let scanner = Scanner {
            stages: Arc::new(bucketscan_scan::WasmStages {
                engine: self.host.clone(),
                services: self.services.clone(),
            }),
            store: store.clone(),
            publisher: None,
            tag_keys: TagKeys::default(),
            sealer: Sealer::ephemeral(),
            allow_list: Default::default(),
            spool: bucketscan_scan::spool::SpoolConfig::in_temp_dir(64 << 30),
            hashes: None,
        };
        let routing = OnePipeline {
            stages: Arc::from(stages.to_vec()),
            max_object_bytes: u64::MAX,
        };
        let target = Target {
            version_id: object.info.version_id.clone(),
            etag: object.info.etag.clone(),
            size: Some(object.info.size),
            ..Target::new(&object.info.bucket, &object.info.key)
        };
        let report = scanner.scan(&routing, &target).await;
        (report, store.log())
    }
}

/// A pipeline stage with settings and grants.
pub fn stage(plugin: &Arc<Plugin>, settings: &[(&str, &str)], grants: Grants) -> PipelineStage {
    PipelineStage {
        plugin: plugin.clone(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), SettingValue::from_command_line(v)))
            .collect(),
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
    let info = Arc::new(ObjectInfo {
        bucket: bucket.into(),
        key: key.into(),
        size: bytes.len() as u64,
        content_type: content_type.map(str::to_owned),
        ..ObjectInfo::default()
    });
    ScanObject::new(info, ObjectBody::from_bytes(bytes))
}
