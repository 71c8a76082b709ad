//! Write [bucketscan] plugins in Rust.
//!
//! A plugin is a WebAssembly component that implements the
//! `bucketscan:plugin` WIT contract (`wit/plugin.wit` in the repository is
//! the source of truth and documents every type). This crate generates the
//! bindings for you and reduces a plugin to one trait impl and one macro:
//!
//! ```ignore
//! use bucketscan_plugin_sdk::{Decision, Inspector, Object, PluginInfo, Settings, Verdict};
//!
//! struct DenyEmpty;
//!
//! impl Inspector for DenyEmpty {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("deny-empty", env!("CARGO_PKG_VERSION"), "blocks empty objects")
//!     }
//!
//!     fn inspect(object: &Object, _settings: &Settings, _so_far: Option<&Verdict>) -> Result<Decision, String> {
//!         if object.info().size == 0 {
//!             return Ok(Decision::Verdict(Verdict::Blocked("empty object".into())));
//!         }
//!         Ok(Decision::Continue)
//!     }
//! }
//!
//! bucketscan_plugin_sdk::export_inspector!(DenyEmpty);
//! ```
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
/// imported type with [`bindings`].
#[allow(missing_docs)]
pub mod action_bindings {
    wit_bindgen::generate!({
        world: "action-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_action_world",
        default_bindings_module: "::bucketscan_plugin_sdk::action_bindings",
        with: {
            "bucketscan:plugin/types@0.1.1": crate::bindings::bucketscan::plugin::types,
            "bucketscan:plugin/object@0.1.1": crate::bindings::bucketscan::plugin::object,
            "bucketscan:plugin/log@0.1.1": crate::bindings::bucketscan::plugin::log,
            "bucketscan:plugin/clamav@0.1.1": crate::bindings::bucketscan::plugin::clamav,
            "bucketscan:plugin/storage@0.1.1": crate::bindings::bucketscan::plugin::storage,
            "bucketscan:plugin/http@0.1.1": crate::bindings::bucketscan::plugin::http,
            "bucketscan:plugin/context@0.1.1": crate::bindings::bucketscan::plugin::context,
        },
    });
}

pub use bindings::bucketscan::plugin::object::{Object, ObjectInfo};
pub use bindings::bucketscan::plugin::types::{
    Decision, Finding, Level, PluginInfo, Unscannable, UnscannableReason, Verdict,
};

/// ClamAV through the host (grant: `clamav = true`).
pub mod clamav {
    pub use crate::bindings::bucketscan::plugin::clamav::{ScanError, ScanErrorKind, ScanReport, scan};
}

/// Storage actions on the object under scan (grant: `storage = [buckets]`).
pub mod storage {
    pub use crate::bindings::bucketscan::plugin::storage::{copy, delete, move_, tag};
}

/// Outbound HTTP POST (grant: `http = [hosts]`). `send` (contract 0.1.1)
/// adds a timeout and retries; the host signs the body when the stage has
/// a `signing-secret`.
pub mod http {
    pub use crate::bindings::bucketscan::plugin::http::{Request, Response, post, send};
}

/// The scan around this stage (contract 0.1.1): agent id, earlier stages.
pub mod context {
    pub use crate::bindings::bucketscan::plugin::context::{StageTiming, agent_id, stage_timings};
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

/// An inspector: looks at one object and answers with a [`Decision`].
pub trait Inspector {
    /// Name, version and description of the plugin.
    fn info() -> PluginInfo;

    /// Inspects one object. `so_far` is `Some(Verdict::Clean)` when an
    /// earlier inspector already found it clean. Return `Err` for the
    /// plugin's own failures; the host turns it into an `error` verdict.
    fn inspect(object: &Object, settings: &Settings, so_far: Option<&Verdict>) -> Result<Decision, String>;
}

/// An action: runs after inspection and acts on the final verdict.
pub trait Action {
    /// Name, version and description of the plugin.
    fn info() -> PluginInfo;

    /// Acts on `verdict`. Returns a line per thing done; `Err` marks the
    /// object's handling as failed so the agent retries it.
    fn act(object: &Object, settings: &Settings, verdict: &Verdict) -> Result<Vec<String>, String>;
}

/// Exports a type implementing [`Inspector`] as the component's inspector.
#[macro_export]
macro_rules! export_inspector {
    ($plugin:ty) => {
        const _: () = {
            struct BucketscanInspectorExport;

            impl $crate::bindings::exports::bucketscan::plugin::inspector::Guest for BucketscanInspectorExport {
                fn describe() -> $crate::PluginInfo {
                    <$plugin as $crate::Inspector>::info()
                }

                fn inspect(
                    object: &$crate::Object,
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                    so_far: ::std::option::Option<$crate::Verdict>,
                ) -> ::std::result::Result<$crate::Decision, ::std::string::String> {
                    let settings = $crate::Settings::new(settings);
                    <$plugin as $crate::Inspector>::inspect(object, &settings, so_far.as_ref())
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
            static BUCKETSCAN_KEEP: (fn() -> $crate::PluginInfo,) = (<BucketscanInspectorExport as $crate::bindings::exports::bucketscan::plugin::inspector::Guest>::describe,);
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
                fn describe() -> $crate::PluginInfo {
                    <$plugin as $crate::Action>::info()
                }

                fn act(
                    object: &$crate::Object,
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                    verdict: $crate::Verdict,
                ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String> {
                    let settings = $crate::Settings::new(settings);
                    <$plugin as $crate::Action>::act(object, &settings, &verdict)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::action_bindings::__export_action_world!(BucketscanActionExport with_types_in $crate::action_bindings);
            #[cfg(not(target_arch = "wasm32"))]
            #[used]
            static BUCKETSCAN_KEEP: (fn() -> $crate::PluginInfo,) = (<BucketscanActionExport as $crate::action_bindings::exports::bucketscan::plugin::action::Guest>::describe,);
        };
    };
}
