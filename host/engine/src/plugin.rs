//! One loaded plugin: read, pinned, compiled (or taken from the cache),
//! checked against the contract, pre-instantiated and asked who it is.

use crate::contract::{self, ContractName, Exports, Series};
use crate::engine::{CacheUse, Engine};
use crate::sandbox::{ScanObject, StageEnv, StageState};
use bucketscan_core::grants::Capability;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::pipeline::StageKind;
use semver::Version;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

pub use crate::contract::PluginIdentity;

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
    Identify {
        name: String,
        path: PathBuf,
        detail: String,
    },
}

/// A plugin ready to be instantiated per object.
pub struct Plugin {
    /// The name it is declared under in the config.
    pub name: String,
    pub path: PathBuf,
    /// Hex sha256 of the component file.
    pub sha256: String,
    pub kind: StageKind,
    /// The contract version it was built against, and the series of
    /// bindings it runs on.
    pub contract: Version,
    pub series: Series,
    /// Contract capabilities it imports (it can only use those granted).
    pub capabilities: Vec<Capability>,
    /// Every import name, contract and WASI.
    pub imports: Vec<String>,
    pub identity: PluginIdentity,
    pub cache: CacheUse,
    pub(crate) exports: Exports,
    label: Arc<str>,
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
    pub async fn load(engine: &Engine, name: &str, path: &Path, pin: Option<&str>) -> Result<Self, PluginError> {
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
        let (component, cache) = engine.compile(bytes, sha256.clone()).await.map_err(|err| {
            let (name, path) = at();
            PluginError::NotAComponent {
                name,
                path,
                detail: format!("{err:#}"),
            }
        })?;

        let wasmtime = engine.wasmtime();
        let ty = component.component_type();
        let contract_error = |detail: String| {
            let (name, path) = at();
            PluginError::Contract { name, path, detail }
        };
        let mut kind = None;
        let mut exports = Vec::new();
        for (export, _) in ty.exports(wasmtime) {
            exports.push(export.to_owned());
            if let Some(parsed) = contract::parse_name(export) {
                let ContractName { interface, version } = parsed.map_err(|err| contract_error(err.to_string()))?;
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
        let unsupported = |found: Version| {
            let (name, path) = at();
            PluginError::UnsupportedContract {
                name,
                path,
                found,
                supported: contract::supported(),
            }
        };
        let Some(series) = Series::of(&contract) else {
            return Err(unsupported(contract));
        };
        let mut capabilities = Vec::new();
        let mut imports = Vec::new();
        for (import, _) in ty.imports(wasmtime) {
            imports.push(import.to_owned());
            if let Some(parsed) = contract::parse_name(import) {
                let ContractName { interface, version } = parsed.map_err(|err| contract_error(err.to_string()))?;
                // One component, one series: its imports come from the same
                // contract as its export.
                if Series::of(&version) != Some(series) {
                    return Err(unsupported(version));
                }
                capabilities.extend(contract::capability_of_import(&interface));
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
        let instance_pre = engine.linker().instantiate_pre(&component).map_err(link_error)?;
        let exports = Exports::new(kind, series, instance_pre).map_err(link_error)?;
        let mut plugin = Plugin {
            name: name.to_owned(),
            path: path.to_owned(),
            sha256,
            kind,
            contract,
            series,
            capabilities,
            imports,
            identity: PluginIdentity {
                name: name.to_owned(),
                version: "?".into(),
                description: String::new(),
            },
            cache,
            exports,
            label: Arc::from(""),
        };
        plugin.identity = plugin.identify(engine).await.map_err(|detail| {
            let (name, path) = at();
            PluginError::Identify { name, path, detail }
        })?;
        plugin.label = Arc::from(format!("{}@{}", plugin.identity.name, plugin.identity.version));
        Ok(plugin)
    }

    /// Instantiates the plugin once, with no grants, and asks who it is.
    /// This is the load check: a plugin that cannot even do this is refused.
    async fn identify(&self, engine: &Engine) -> Result<PluginIdentity, String> {
        let object = ScanObject::new(Arc::new(ObjectInfo::default()), ObjectBody::from_bytes(Vec::new()));
        let env = StageEnv {
            label: Arc::from(format!("{}@load", self.name)),
            ..StageEnv::default()
        };
        let mut store: Store<StageState> = engine.new_store(&engine.load_services(), env, object);
        let timeout = Duration::from_millis(engine.limits().stage_timeout_ms);
        match tokio::time::timeout(timeout, self.exports.identify(&mut store)).await {
            Err(_) => Err(format!("info() took longer than {} ms", timeout.as_millis())),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Ok(Ok(identity)) => Ok(identity),
        }
    }

    /// `name@version`, as errors and logs show the plugin (made once at
    /// load: every stage of every object names it).
    pub fn label(&self) -> Arc<str> {
        self.label.clone()
    }
}

/// Hex sha256 of a component file: its identity for pins and caches.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A component's header: `\0asm`, then version 0x0d and layer 1.
fn is_component_binary(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}
