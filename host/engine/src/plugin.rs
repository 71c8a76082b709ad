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
        let origin = Origin { name, path };
        let (bytes, sha256) = origin.read_pinned(pin)?;
        let (component, cache) = engine.compile(bytes, sha256.clone()).await.map_err(|err| {
            origin.error(|name, path| PluginError::NotAComponent {
                name,
                path,
                detail: format!("{err:#}"),
            })
        })?;
        let shape = origin.shape(engine, &component)?;
        let link_error = |err: wasmtime::Error| {
            origin.error(|name, path| PluginError::Link {
                name,
                path,
                detail: format!("{err:#}"),
            })
        };
        let instance_pre = engine.linker().instantiate_pre(&component).map_err(link_error)?;
        let exports = Exports::new(shape.kind, shape.series, instance_pre).map_err(link_error)?;
        let mut plugin = Plugin {
            name: name.to_owned(),
            path: path.to_owned(),
            sha256,
            kind: shape.kind,
            contract: shape.contract,
            series: shape.series,
            capabilities: shape.capabilities,
            imports: shape.imports,
            identity: PluginIdentity {
                name: name.to_owned(),
                version: "?".into(),
                description: String::new(),
            },
            cache,
            exports,
            label: Arc::from(""),
        };
        plugin.identity = plugin
            .identify(engine)
            .await
            .map_err(|detail| origin.error(|name, path| PluginError::Identify { name, path, detail }))?;
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

/// Where a plugin being loaded comes from: every refusal names both.
struct Origin<'a> {
    name: &'a str,
    path: &'a Path,
}

/// What a component's type says it is: its stage kind, contract and imports.
struct Shape {
    kind: StageKind,
    contract: Version,
    series: Series,
    capabilities: Vec<Capability>,
    imports: Vec<String>,
}

impl Origin<'_> {
    fn error(&self, make: impl FnOnce(String, PathBuf) -> PluginError) -> PluginError {
        make(self.name.to_owned(), self.path.to_owned())
    }

    /// The file's bytes and sha256, refused when the pin differs or the
    /// bytes are not a component.
    fn read_pinned(&self, pin: Option<&str>) -> Result<(Vec<u8>, String), PluginError> {
        let bytes = std::fs::read(self.path)
            .map_err(|error| self.error(|name, path| PluginError::Read { name, path, error }))?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = pin
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            let (expected, actual) = (expected.to_owned(), sha256);
            return Err(self.error(|name, path| PluginError::PinMismatch {
                name,
                path,
                expected,
                actual,
            }));
        }
        if !is_component_binary(&bytes) {
            let detail = if bytes.starts_with(b"\0asm") {
                "a core module"
            } else {
                "no Wasm header"
            }
            .to_owned();
            return Err(self.error(|name, path| PluginError::NotAComponent { name, path, detail }));
        }
        Ok((bytes, sha256))
    }

    fn contract_error(&self, detail: String) -> PluginError {
        self.error(|name, path| PluginError::Contract { name, path, detail })
    }

    fn unsupported(&self, found: Version) -> PluginError {
        self.error(|name, path| PluginError::UnsupportedContract {
            name,
            path,
            found,
            supported: contract::supported(),
        })
    }

    /// Reads the component's exports (one inspector or one action) and
    /// imports (all from the same contract series).
    fn shape(&self, engine: &Engine, component: &wasmtime::component::Component) -> Result<Shape, PluginError> {
        let ty = component.component_type();
        let (kind, contract) = self.stage_export(ty.exports(engine.wasmtime()).map(|(export, _)| export))?;
        let series = Series::of(&contract).ok_or_else(|| self.unsupported(contract.clone()))?;
        let mut capabilities = Vec::new();
        let mut imports = Vec::new();
        for (import, _) in ty.imports(engine.wasmtime()) {
            imports.push(import.to_owned());
            let Some(parsed) = contract::parse_name(import) else {
                continue;
            };
            let ContractName { interface, version } = parsed.map_err(|err| self.contract_error(err.to_string()))?;
            // One component, one series: its imports come from the same
            // contract as its export.
            if Series::of(&version) != Some(series) {
                return Err(self.unsupported(version));
            }
            capabilities.extend(contract::capability_of_import(&interface));
        }
        Ok(Shape {
            kind,
            contract,
            series,
            capabilities,
            imports,
        })
    }

    /// The one stage interface the component exports, and its version.
    fn stage_export<'e>(&self, exports: impl Iterator<Item = &'e str>) -> Result<(StageKind, Version), PluginError> {
        let mut kind = None;
        let mut names = Vec::new();
        for export in exports {
            names.push(export.to_owned());
            let Some(parsed) = contract::parse_name(export) else {
                continue;
            };
            let ContractName { interface, version } = parsed.map_err(|err| self.contract_error(err.to_string()))?;
            let Some(found) = contract::kind_of_export(&interface) else {
                continue;
            };
            if kind.is_some() {
                return Err(
                    self.contract_error("exports both an inspector and an action; a plugin is one or the other".into())
                );
            }
            kind = Some((found, version));
        }
        kind.ok_or_else(|| {
            let listed = if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            };
            self.contract_error(format!(
                "exports neither {p}/inspector nor {p}/action (its exports: {listed})",
                p = contract::PACKAGE
            ))
        })
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
