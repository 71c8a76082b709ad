//! One loaded plugin: read, pinned, compiled (or taken from the cache),
//! checked against the contract, pre-instantiated and asked who it is.

use crate::bindings::{action, inspector};
use crate::contract::{self, ContractName};
use crate::engine::{CacheUse, Engine};
use crate::sandbox::{ScanObject, StageEnv, StageState};
use bucketscan_core::grants::Capability;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::pipeline::StageKind;
use semver::Version;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a plugin could not be loaded. Every message names the plugin and its
/// file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{name}` ({}): cannot read the component: {error}", path.display())]
    Read {
        name: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("plugin `{name}` ({}): sha256 is {actual} but the config pins {expected}; refusing a file that changed", path.display())]
    PinMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("plugin `{name}` ({}): not a WebAssembly component ({detail}); build it for wasm32-wasip2 or wrap a core module with `wasm-tools component new`", path.display())]
    NotAComponent {
        name: String,
        path: PathBuf,
        detail: String,
    },
    #[error("plugin `{name}` ({}): {detail}", path.display())]
    Contract {
        name: String,
        path: PathBuf,
        detail: String,
    },
    #[error("plugin `{name}` ({}): built against contract {PACKAGE}@{found}, but this host supports {supported} (contract {PACKAGE}@{host}); rebuild the plugin against a supported version", path.display(), PACKAGE = contract::PACKAGE, host = contract::HOST_VERSION)]
    UnsupportedContract {
        name: String,
        path: PathBuf,
        found: Version,
        supported: String,
    },
    #[error("plugin `{name}` ({}): cannot link: {detail}", path.display())]
    Link {
        name: String,
        path: PathBuf,
        detail: String,
    },
    #[error("plugin `{name}` ({}): load check failed: {detail}", path.display())]
    Describe {
        name: String,
        path: PathBuf,
        detail: String,
    },
}

/// Who a plugin says it is (its `describe` export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    pub description: String,
}

enum Pre {
    Inspector(inspector::InspectorPluginPre<StageState>),
    Action(action::ActionPluginPre<StageState>),
}

/// A plugin ready to be instantiated per object.
pub struct Plugin {
    /// The name it is declared under in the config.
    pub name: String,
    pub path: PathBuf,
    /// Hex sha256 of the component file.
    pub sha256: String,
    pub kind: StageKind,
    /// The contract version it was built against.
    pub contract: Version,
    /// Contract capabilities it imports (it can only use those granted).
    pub capabilities: Vec<Capability>,
    /// Every import name, contract and WASI.
    pub imports: Vec<String>,
    /// Imports `context` (0.1.1): the host then hands each stage the
    /// timings of the stages before it; for others it skips that work.
    pub uses_context: bool,
    pub identity: PluginIdentity,
    pub cache: CacheUse,
    pre: Pre,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads the component at `path`, declared as `name`, refusing it when
    /// its sha256 differs from `pin`.
    pub async fn load(host: &Engine, name: &str, path: &Path, pin: Option<&str>) -> Result<Self, PluginError> {
        let at = || (name.to_owned(), path.to_owned());
        let bytes = std::fs::read(path).map_err(|error| {
            let (name, path) = at();
            PluginError::Read { name, path, error }
        })?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = pin
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            let (name, path) = at();
            return Err(PluginError::PinMismatch {
                name,
                path,
                expected: expected.to_owned(),
                actual: sha256,
            });
        }
        if !is_component_binary(&bytes) {
            let (name, path) = at();
            let detail = if bytes.starts_with(b"\0asm") {
                "a core module"
            } else {
                "no Wasm header"
            };
            return Err(PluginError::NotAComponent {
                name,
                path,
                detail: detail.into(),
            });
        }
        let (component, cache) = host.compile(bytes, sha256.clone()).await.map_err(|err| {
            let (name, path) = at();
            PluginError::NotAComponent {
                name,
                path,
                detail: format!("{err:#}"),
            }
        })?;

        let engine = host.wasmtime();
        let ty = component.component_type();
        let contract_error = |detail: String| {
            let (name, path) = at();
            PluginError::Contract { name, path, detail }
        };
        let mut kind = None;
        let mut exports = Vec::new();
        for (export, _) in ty.exports(engine) {
            exports.push(export.to_owned());
            if let Some(parsed) = contract::parse_name(export) {
                let ContractName { interface, version } = parsed.map_err(contract_error)?;
                if let Some(found) = contract::kind_of_export(&interface) {
                    if kind.is_some() {
                        return Err(contract_error(
                            "exports both an inspector and an action; a plugin is one or the other".into(),
                        ));
                    }
                    kind = Some((found, version));
                }
            }
        }
        let Some((kind, contract)) = kind else {
            return Err(contract_error(format!(
                "exports neither {p}/inspector nor {p}/action (its exports: {})",
                if exports.is_empty() {
                    "none".into()
                } else {
                    exports.join(", ")
                },
                p = contract::PACKAGE
            )));
        };
        let supported = contract::supported();
        let unsupported = |found: Version| {
            let (name, path) = at();
            PluginError::UnsupportedContract {
                name,
                path,
                found,
                supported: supported.to_string(),
            }
        };
        if !supported.matches(&contract) {
            return Err(unsupported(contract));
        }
        let mut capabilities = Vec::new();
        let mut imports = Vec::new();
        let mut uses_context = false;
        for (import, _) in ty.imports(engine) {
            imports.push(import.to_owned());
            if let Some(parsed) = contract::parse_name(import) {
                let ContractName { interface, version } = parsed.map_err(contract_error)?;
                if !supported.matches(&version) {
                    return Err(unsupported(version));
                }
                capabilities.extend(contract::capability_of_import(&interface));
                uses_context |= interface == "context";
            }
        }

        let link_error = |err: wasmtime::Error| {
            let (name, path) = at();
            PluginError::Link {
                name,
                path,
                detail: format!("{err:#}"),
            }
        };
        let instance_pre = host.linker().instantiate_pre(&component).map_err(link_error)?;
        let pre = match kind {
            StageKind::Inspector => {
                Pre::Inspector(inspector::InspectorPluginPre::new(instance_pre).map_err(link_error)?)
            }
            StageKind::Action => Pre::Action(action::ActionPluginPre::new(instance_pre).map_err(link_error)?),
        };
        let mut plugin = Plugin {
            name: name.to_owned(),
            path: path.to_owned(),
            sha256,
            kind,
            contract,
            capabilities,
            imports,
            uses_context,
            identity: PluginIdentity {
                name: name.to_owned(),
                version: "?".into(),
                description: String::new(),
            },
            cache,
            pre,
        };
        plugin.identity = plugin.describe(host).await.map_err(|detail| {
            let (name, path) = at();
            PluginError::Describe { name, path, detail }
        })?;
        Ok(plugin)
    }

    /// Instantiates the plugin once, with no grants, and asks who it is.
    /// This is the load check: a plugin that cannot even do this is refused.
    async fn describe(&self, host: &Engine) -> Result<PluginIdentity, String> {
        let object = ScanObject {
            info: Arc::new(ObjectInfo::default()),
            body: ObjectBody::from_bytes(Vec::new()),
        };
        let env = StageEnv {
            label: format!("{}@load", self.name),
            ..StageEnv::default()
        };
        let mut store = host.new_store(host.load_services(), env, object);
        let timeout = Duration::from_millis(host.limits().stage_timeout_ms);
        let call = async {
            let info = match &self.pre {
                Pre::Inspector(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.bucketscan_plugin_inspector().call_describe(&mut store).await?
                }
                Pre::Action(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.bucketscan_plugin_action().call_describe(&mut store).await?
                }
            };
            Ok::<_, wasmtime::Error>(info)
        };
        let info = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Err(format!("describe() took longer than {} ms", timeout.as_millis())),
            Ok(Err(err)) => return Err(format!("{err:#}")),
            Ok(Ok(info)) => info,
        };
        if info.name.is_empty() || info.name.len() > 128 || info.version.len() > 64 || info.description.len() > 1024 {
            return Err("describe() returned an empty or oversized name, version or description".into());
        }
        // Shown in every log line and error of the plugin's stages.
        Ok(PluginIdentity {
            name: crate::text::cap(&info.name, 128),
            version: crate::text::cap(&info.version, 64),
            description: crate::text::cap(&info.description, 1024),
        })
    }

    /// `name@version`, as errors and logs show the plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.identity.name, self.identity.version)
    }

    pub(crate) fn inspector_pre(&self) -> Option<&inspector::InspectorPluginPre<StageState>> {
        match &self.pre {
            Pre::Inspector(pre) => Some(pre),
            Pre::Action(_) => None,
        }
    }

    pub(crate) fn action_pre(&self) -> Option<&action::ActionPluginPre<StageState>> {
        match &self.pre {
            Pre::Action(pre) => Some(pre),
            Pre::Inspector(_) => None,
        }
    }
}

/// A component's header: `\0asm`, then version 0x0d and layer 1.
/// Hex sha256 of a component file: its identity for pins and caches.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_component_binary(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}
