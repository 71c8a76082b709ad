//! Which versions of the `bucketscan:plugin` contract this host runs, how a
//! component says which one it was built against (the version in its
//! import and export names, `bucketscan:plugin/inspector@0.2.0`), and the
//! calls into a plugin whatever its series.
//!
//! One module per supported series, each with its own bindings generated
//! from that series' WIT and its conversions into the host's domain types
//! (`bucketscan-core`): [`v0_1`] (the frozen `wit/released/0.1.1`, which
//! also runs 0.1.0 plugins) and [`v0_2`] (`wit/`). Both are linked into
//! the same engine, so plugins of both series run side by side, in one
//! pipeline if need be.

pub mod v0_1;
pub mod v0_2;

use crate::sandbox::{ScanObject, StageFailure, StageState};
use bucketscan_core::grants::Capability;
use bucketscan_core::pipeline::StageKind;
use bucketscan_core::{Decision, Verdict};
use semver::{Version, VersionReq};
use serde::Serialize;
use std::fmt;
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

/// The WIT package every plugin is built against.
pub const PACKAGE: &str = "bucketscan:plugin";

/// The newest contract this host was built from (`wit/`).
pub const HOST_VERSION: &str = "0.2.2";

/// A contract series this host runs. Before 1.0 the second number is the
/// major: 0.1.x plugins run on the 0.1 bindings, 0.2.x on the 0.2 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Series {
    #[serde(rename = "0.1")]
    V0_1,
    #[serde(rename = "0.2")]
    V0_2,
}

impl Series {
    /// The series `version` belongs to, if this host runs it.
    pub fn of(version: &Version) -> Option<Self> {
        [Self::V0_1, Self::V0_2]
            .into_iter()
            .find(|series| series.requirement().matches(version))
    }

    fn requirement(self) -> VersionReq {
        VersionReq::parse(match self {
            Self::V0_1 => "^0.1",
            Self::V0_2 => "^0.2",
        })
        .expect("valid requirement")
    }
}

/// What this host runs, for messages: `^0.1, ^0.2`.
pub fn supported() -> String {
    [Series::V0_1, Series::V0_2]
        .map(|s| s.requirement().to_string())
        .join(", ")
}

/// An interface name of the contract, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractName {
    pub interface: String,
    pub version: Version,
}

/// A contract import or export name that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadContractName {
    #[error("`{name}` has an invalid version: {detail}")]
    InvalidVersion { name: String, detail: String },
    #[error("`{0}` has no version; the contract is always versioned")]
    Unversioned(String),
}

/// Parses `bucketscan:plugin/NAME@VERSION`; `None` for other packages.
pub fn parse_name(name: &str) -> Option<Result<ContractName, BadContractName>> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => Version::parse(version)
            .map(|version| ContractName {
                interface: interface.to_owned(),
                version,
            })
            .map_err(|err| BadContractName::InvalidVersion {
                name: name.to_owned(),
                detail: err.to_string(),
            }),
        None => Err(BadContractName::Unversioned(name.to_owned())),
    })
}

/// The kind of stage a contract export makes a component.
pub fn kind_of_export(interface: &str) -> Option<StageKind> {
    match interface {
        "inspector" => Some(StageKind::Inspector),
        "action" => Some(StageKind::Action),
        _ => None,
    }
}

/// The capability an imported contract interface stands for; `None` for
/// interfaces every plugin may use (object, stage, log, types, context).
pub fn capability_of_import(interface: &str) -> Option<Capability> {
    match interface {
        "clamav" => Some(Capability::Clamav),
        "yara" => Some(Capability::Yara),
        "storage" => Some(Capability::Storage),
        "http" => Some(Capability::Http),
        _ => None,
    }
}

/// Who a plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// A plugin's exports, pre-instantiated, whatever its series.
pub(crate) enum Exports {
    InspectorV0_1(v0_1::inspector::InspectorPluginPre<StageState>),
    ActionV0_1(v0_1::action::ActionPluginPre<StageState>),
    InspectorV0_2(v0_2::inspector::InspectorPluginPre<StageState>),
    ActionV0_2(v0_2::action::ActionPluginPre<StageState>),
}

impl fmt::Debug for Exports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InspectorV0_1(_) => "InspectorV0_1",
            Self::ActionV0_1(_) => "ActionV0_1",
            Self::InspectorV0_2(_) => "InspectorV0_2",
            Self::ActionV0_2(_) => "ActionV0_2",
        })
    }
}

/// What a call into a plugin gave, beyond traps: its result, or its own
/// error, or output the contract does not allow.
pub(crate) type Called<T> = Result<T, StageFailure>;

impl Exports {
    pub(crate) fn new(kind: StageKind, series: Series, pre: InstancePre<StageState>) -> wasmtime::Result<Self> {
        Ok(match (kind, series) {
            (StageKind::Inspector, Series::V0_1) => Self::InspectorV0_1(v0_1::inspector::InspectorPluginPre::new(pre)?),
            (StageKind::Action, Series::V0_1) => Self::ActionV0_1(v0_1::action::ActionPluginPre::new(pre)?),
            (StageKind::Inspector, Series::V0_2) => Self::InspectorV0_2(v0_2::inspector::InspectorPluginPre::new(pre)?),
            (StageKind::Action, Series::V0_2) => Self::ActionV0_2(v0_2::action::ActionPluginPre::new(pre)?),
        })
    }

    /// Instantiates and asks who the plugin is.
    pub(crate) async fn identify(&self, store: &mut Store<StageState>) -> wasmtime::Result<PluginIdentity> {
        match self {
            Self::InspectorV0_1(pre) => v0_1::identify_inspector(pre, store).await,
            Self::ActionV0_1(pre) => v0_1::identify_action(pre, store).await,
            Self::InspectorV0_2(pre) => v0_2::identify_inspector(pre, store).await,
            Self::ActionV0_2(pre) => v0_2::identify_action(pre, store).await,
        }
    }

    /// Instantiates and inspects `object` (the stage's inputs are in the
    /// store). Panics for an action: the runner calls inspectors only.
    pub(crate) async fn inspect(
        &self,
        store: &mut Store<StageState>,
        object: &ScanObject,
    ) -> wasmtime::Result<Called<Decision>> {
        match self {
            Self::InspectorV0_1(pre) => v0_1::inspect(pre, store, object).await,
            Self::InspectorV0_2(pre) => v0_2::inspect(pre, store).await,
            Self::ActionV0_1(_) | Self::ActionV0_2(_) => unreachable!("inspect called on an action"),
        }
    }

    /// Instantiates and acts on `verdict`. Panics for an inspector.
    pub(crate) async fn act(
        &self,
        store: &mut Store<StageState>,
        object: &ScanObject,
        verdict: &Verdict,
    ) -> wasmtime::Result<Called<Vec<String>>> {
        match self {
            Self::ActionV0_1(pre) => v0_1::act(pre, store, object, verdict).await,
            Self::ActionV0_2(pre) => v0_2::act(pre, store).await,
            Self::InspectorV0_1(_) | Self::InspectorV0_2(_) => unreachable!("act called on an inspector"),
        }
    }
}

/// Limits on what a plugin returns: its output is untrusted.
pub(crate) mod limits {
    /// Most findings one verdict may carry.
    pub const MAX_FINDINGS: usize = 64;
    /// Longest signature, reason or detail string accepted from a plugin.
    pub const MAX_TEXT: usize = 1024;
    /// Most lines one action may report.
    pub const MAX_ACTION_LINES: usize = 64;

    /// A string from a plugin: refused when oversized, cleaned of control
    /// characters (it ends up in logs, tags, notifications and terminals).
    pub fn text(field: &str, value: String) -> Result<String, String> {
        if value.len() > MAX_TEXT {
            Err(format!(
                "{field} is {} bytes; at most {MAX_TEXT} are allowed",
                value.len()
            ))
        } else {
            Ok(bucketscan_core::text::cap(&value, MAX_TEXT))
        }
    }

    /// An action's report lines, checked in number and capped in length:
    /// a line often names the object, whose key is the uploader's, and a
    /// long key must not turn an action that succeeded into a failure
    /// (retried for ever, containment never settled).
    pub fn action_lines(lines: Vec<String>) -> Result<Vec<String>, String> {
        if lines.len() > MAX_ACTION_LINES {
            return Err(format!(
                "{} report lines; at most {MAX_ACTION_LINES} are allowed",
                lines.len()
            ));
        }
        Ok(lines
            .iter()
            .map(|line| bucketscan_core::text::cap(line, MAX_TEXT))
            .collect())
    }

    /// An identity, capped: shown in every log line and error of the
    /// plugin's stages.
    pub fn identity(name: String, version: String, description: String) -> Result<super::PluginIdentity, String> {
        if name.is_empty() || name.len() > 128 || version.len() > 64 || description.len() > 1024 {
            return Err("the plugin's info has an empty or oversized name, version or description".into());
        }
        Ok(super::PluginIdentity {
            name: bucketscan_core::text::cap(&name, 128),
            version: bucketscan_core::text::cap(&version, 64),
            description: bucketscan_core::text::cap(&description, 1024),
        })
    }
}

/// Adds WASI 0.2 and the capabilities of every supported contract series
/// to `linker`.
pub fn add_to_linker(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract_names() {
        let name = parse_name("bucketscan:plugin/inspector@0.1.3").unwrap().unwrap();
        assert_eq!(name.interface, "inspector");
        assert_eq!(Series::of(&name.version), Some(Series::V0_1));
        assert!(parse_name("wasi:io/streams@0.2.0").is_none());
        assert!(parse_name("bucketscan:plugin/inspector").unwrap().is_err());
    }

    #[test]
    fn both_series_run_and_others_do_not() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(Series::of(&v("0.1.0")), Some(Series::V0_1));
        assert_eq!(Series::of(&v("0.1.1")), Some(Series::V0_1));
        assert_eq!(Series::of(&v("0.2.0")), Some(Series::V0_2));
        assert_eq!(Series::of(&v("0.2.7")), Some(Series::V0_2));
        assert_eq!(Series::of(&v("0.3.0")), None);
        assert_eq!(Series::of(&v("1.0.0")), None);
        assert_eq!(Series::of(&v(HOST_VERSION)), Some(Series::V0_2));
        assert_eq!(supported(), "^0.1, ^0.2");
    }
}
