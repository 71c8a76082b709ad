//! Write [bucketscan] plugins in Rust.
//!
//! A plugin is a WebAssembly component that implements the
//! `bucketscan:plugin` WIT contract (`wit/` in the repository is the
//! source of truth and documents every type). This crate generates the
//! bindings for you and reduces a plugin to one trait impl and one macro:
//!
//! ```ignore
//! use bucketscan_plugin_sdk::{Decision, Inspector, PluginError, PluginInfo, Settings, Stage, Verdict};
//!
//! struct DenyEmpty;
//!
//! impl Inspector for DenyEmpty {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("deny-empty", env!("CARGO_PKG_VERSION"), "blocks empty objects")
//!     }
//!
//!     fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
//!         let settings = Settings::of(stage);
//!         let minimum = settings.u64("minimum-bytes")?.unwrap_or(1);
//!         if stage.object().size() < minimum {
//!             return Ok(Decision::Verdict(Verdict::Blocked("empty object".into())));
//!         }
//!         Ok(Decision::Continue)
//!     }
//! }
//!
//! bucketscan_plugin_sdk::export_inspector!(DenyEmpty);
//! ```
//!
//! Everything a stage is given comes through its [`Stage`]: the object
//! (`stage.object()`), its settings, the verdict so far (or the final one,
//! for an action), the agent's id and how earlier stages went. New inputs
//! in later 0.2.x contracts arrive as new methods there.
//!
//! Build it as a `cdylib` for WASI 0.2:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! and run it over a local file with `bucketscan plugin run target/wasm32-wasip2/release/NAME.wasm --file PATH`.
//!
//! [bucketscan]: https://github.com/bucketscan/bucketscan

#![deny(missing_docs)]

mod settings;

pub use settings::Settings;

/// Bindings generated from the `inspector-plugin` world. Plugins rarely need
/// these directly; the types they use are re-exported at the crate root.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "inspector-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_inspector_world",
        default_bindings_module: "::bucketscan_plugin_sdk::bindings",
        generate_all,
    });
}

/// Bindings generated from the `action-plugin` world, sharing every
/// imported type with [`bindings`]. (wit-bindgen names remapped interfaces
/// with their version; a contract bump that forgets these fails to compile
/// with "unused remappings".)
#[allow(missing_docs)]
pub mod action_bindings {
    wit_bindgen::generate!({
        world: "action-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_action_world",
        default_bindings_module: "::bucketscan_plugin_sdk::action_bindings",
        with: {
            "bucketscan:plugin/types@0.2.2": crate::bindings::bucketscan::plugin::types,
            "bucketscan:plugin/object@0.2.2": crate::bindings::bucketscan::plugin::object,
            "bucketscan:plugin/stage@0.2.2": crate::bindings::bucketscan::plugin::stage,
            "bucketscan:plugin/log@0.2.2": crate::bindings::bucketscan::plugin::log,
            "bucketscan:plugin/clamav@0.2.2": crate::bindings::bucketscan::plugin::clamav,
            "bucketscan:plugin/yara@0.2.2": crate::bindings::bucketscan::plugin::yara,
            "bucketscan:plugin/storage@0.2.2": crate::bindings::bucketscan::plugin::storage,
            "bucketscan:plugin/http@0.2.2": crate::bindings::bucketscan::plugin::http,
        },
    });
}

pub use bindings::bucketscan::plugin::object::{Object, ReadError};
pub use bindings::bucketscan::plugin::stage::{Stage, StageTiming};
pub use bindings::bucketscan::plugin::types::{
    Decision, Finding, Level, PluginError, PluginInfo, SettingValue, StageOutcome, Unscannable, UnscannableReason,
    Verdict,
};

/// ClamAV through the host (grant: `clamav = true`).
pub mod clamav {
    pub use crate::bindings::bucketscan::plugin::clamav::{ClamdAnswer, ScanError, scan};
}

/// YARA rule sets run by the host (grant: `yara = [rule sets]`).
pub mod yara {
    pub use crate::bindings::bucketscan::plugin::yara::{PatternMatch, RuleMatch, ScanError, YaraAnswer, scan};
}

/// Storage actions on the object under scan (grant: `storage = [buckets]`).
pub mod storage {
    pub use crate::bindings::bucketscan::plugin::storage::{StorageError, copy, delete, move_, tag};
}

/// Outbound HTTP POST (grant: `http = [hosts]`). The host signs the body
/// when the stage has a `signing-secret`.
pub mod http {
    pub use crate::bindings::bucketscan::plugin::http::{HttpError, Request, Response, send};
}

/// Logs a message with key/value fields into the agent's log.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    bindings::bucketscan::plugin::log::log(level, message, &fields);
}

impl PluginInfo {
    /// A plugin's name, version and one-line description.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
        }
    }
}

impl Finding {
    /// A finding of `engine` named `signature`.
    pub fn new(engine: &str, signature: &str) -> Self {
        Self {
            engine: engine.into(),
            signature: signature.into(),
        }
    }
}

impl Verdict {
    /// An `unscannable` verdict.
    pub fn unscannable(reason: UnscannableReason, detail: impl Into<String>) -> Self {
        Verdict::Unscannable(Unscannable {
            reason,
            detail: detail.into(),
        })
    }
}

// wit-bindgen derives `Display` for error variants (as their `Debug`);
// `explain` gives the sentence a report or log line wants.

impl PluginError {
    /// The message alone, without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidSettings(m) | Self::Unavailable(m) | Self::Other(m) => m,
        }
    }

    /// The error as a sentence: its kind, then its message.
    pub fn explain(&self) -> String {
        match self {
            Self::InvalidSettings(m) => format!("invalid settings: {m}"),
            Self::Unavailable(m) => format!("unavailable: {m}"),
            Self::Other(m) => m.clone(),
        }
    }
}

impl storage::StorageError {
    /// The message alone, without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Replaced(m) | Self::Gone(m) | Self::Refused(m) | Self::Unavailable(m) | Self::Other(m) => m,
        }
    }

    /// The error as a sentence: its kind, then its message.
    pub fn explain(&self) -> String {
        let (kind, m) = match self {
            Self::Replaced(m) => ("replaced", m),
            Self::Gone(m) => ("gone", m),
            Self::Refused(m) => ("refused", m),
            Self::Unavailable(m) => ("unavailable", m),
            Self::Other(m) => ("failed", m),
        };
        format!("{kind}: {m}")
    }
}

impl From<storage::StorageError> for PluginError {
    /// A storage failure as the plugin's own: throttling and outages are
    /// `unavailable` (the object comes back later), the rest `other`.
    fn from(err: storage::StorageError) -> Self {
        match err {
            storage::StorageError::Unavailable(_) => PluginError::Unavailable(err.explain()),
            _ => PluginError::Other(err.explain()),
        }
    }
}

impl http::HttpError {
    /// The message alone, without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::NotAllowed(m) | Self::Timeout(m) | Self::Connection(m) | Self::Other(m) => m,
        }
    }

    /// The error as a sentence: its kind, then its message.
    pub fn explain(&self) -> String {
        let (kind, m) = match self {
            Self::NotAllowed(m) => ("not allowed", m),
            Self::Timeout(m) => ("timeout", m),
            Self::Connection(m) => ("connection failed", m),
            Self::Other(m) => ("failed", m),
        };
        format!("{kind}: {m}")
    }
}

impl clamav::ScanError {
    /// The message alone, without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Unreachable(m)
            | Self::Timeout(m)
            | Self::SizeLimit(m)
            | Self::StaleSignatures(m)
            | Self::Read(m)
            | Self::Other(m) => m,
        }
    }

    /// The error as a sentence: its kind, then its message.
    pub fn explain(&self) -> String {
        let (kind, m) = match self {
            Self::Unreachable(m) => ("clamd unreachable", m),
            Self::Timeout(m) => ("clamd timeout", m),
            Self::SizeLimit(m) => ("over clamd's size limit", m),
            Self::StaleSignatures(m) => ("stale signatures", m),
            Self::Read(m) => ("read failed", m),
            Self::Other(m) => ("scan failed", m),
        };
        format!("{kind}: {m}")
    }
}

/// An inspector: looks at one object and answers with a [`Decision`].
pub trait Inspector {
    /// Name, version and description of the plugin.
    fn info() -> PluginInfo;

    /// Inspects the stage's object. `stage.verdict()` is
    /// `Some(Verdict::Clean)` when an earlier inspector already found it
    /// clean. Return `Err` for the plugin's own failures; the host turns
    /// it into an `error` verdict.
    fn inspect(stage: &Stage) -> Result<Decision, PluginError>;
}

/// An action: runs after inspection and acts on the final verdict.
pub trait Action {
    /// Name, version and description of the plugin.
    fn info() -> PluginInfo;

    /// Acts on the final verdict ([`final_verdict`]). Returns a line per
    /// thing done; `Err` marks the object's handling as failed so the
    /// agent retries it.
    fn act(stage: &Stage) -> Result<Vec<String>, PluginError>;
}

/// The verdict an action acts on: the host always hands one to actions.
pub fn final_verdict(stage: &Stage) -> Result<Verdict, PluginError> {
    stage
        .verdict()
        .ok_or_else(|| PluginError::Other("the host gave this action no verdict".into()))
}

/// Exports a type implementing [`Inspector`] as the component's inspector.
#[macro_export]
macro_rules! export_inspector {
    ($plugin:ty) => {
        const _: () = {
            struct BucketscanInspectorExport;

            impl $crate::bindings::exports::bucketscan::plugin::inspector::Guest for BucketscanInspectorExport {
                fn info() -> $crate::PluginInfo {
                    <$plugin as $crate::Inspector>::info()
                }

                fn inspect(stage: &$crate::Stage) -> ::std::result::Result<$crate::Decision, $crate::PluginError> {
                    <$plugin as $crate::Inspector>::inspect(stage)
                }
            }

            // Only a Wasm target can carry the contract's export names; on the
            // host the plugin still compiles so its unit tests run.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::__export_inspector_world!(BucketscanInspectorExport with_types_in $crate::bindings);
            // On the host nothing calls the export; keep it "used" so the
            // plugin's own types don't warn as dead code in its unit tests.
            #[cfg(not(target_arch = "wasm32"))]
            #[used]
            static BUCKETSCAN_KEEP: (fn() -> $crate::PluginInfo,) = (
                <BucketscanInspectorExport as $crate::bindings::exports::bucketscan::plugin::inspector::Guest>::info,
            );
        };
    };
}

/// Exports a type implementing [`Action`] as the component's action.
#[macro_export]
macro_rules! export_action {
    ($plugin:ty) => {
        const _: () = {
            struct BucketscanActionExport;

            impl $crate::action_bindings::exports::bucketscan::plugin::action::Guest for BucketscanActionExport {
                fn info() -> $crate::PluginInfo {
                    <$plugin as $crate::Action>::info()
                }

                fn act(
                    stage: &$crate::Stage,
                ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::PluginError> {
                    <$plugin as $crate::Action>::act(stage)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::action_bindings::__export_action_world!(BucketscanActionExport with_types_in $crate::action_bindings);
            #[cfg(not(target_arch = "wasm32"))]
            #[used]
            static BUCKETSCAN_KEEP: (fn() -> $crate::PluginInfo,) = (<BucketscanActionExport as $crate::action_bindings::exports::bucketscan::plugin::action::Guest>::info,);
        };
    };
}
