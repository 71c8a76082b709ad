//! Which versions of the `bucketscan:plugin` contract this host runs, and how
//! a component says which one it was built against: the version in its
//! import and export names (`bucketscan:plugin/inspector@0.1.0`).

use bucketscan_core::grants::Capability;
use bucketscan_core::pipeline::StageKind;
use semver::{Version, VersionReq};

/// The WIT package every plugin is built against.
pub const PACKAGE: &str = "bucketscan:plugin";

/// The contract version this host was built from (`wit/plugin.wit`).
pub const HOST_VERSION: &str = "0.1.1";

/// Contract versions this host runs: every 0.1.x (before 1.0 a minor bump
/// is breaking, so 0.1 is the compatible series).
pub fn supported() -> VersionReq {
    VersionReq::parse("^0.1").expect("valid requirement")
}

/// An interface name of the contract, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractName {
    pub interface: String,
    pub version: Version,
}

/// Parses `bucketscan:plugin/NAME@VERSION`; `None` for other packages.
pub fn parse_name(name: &str) -> Option<Result<ContractName, String>> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => Version::parse(version)
            .map(|version| ContractName {
                interface: interface.to_owned(),
                version,
            })
            .map_err(|err| format!("`{name}` has an invalid version: {err}")),
        None => Err(format!("`{name}` has no version; the contract is always versioned")),
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
/// interfaces every plugin may use (object, log, types).
pub fn capability_of_import(interface: &str) -> Option<Capability> {
    match interface {
        "clamav" => Some(Capability::Clamav),
        "storage" => Some(Capability::Storage),
        "http" => Some(Capability::Http),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract_names() {
        let name = parse_name("bucketscan:plugin/inspector@0.1.3").unwrap().unwrap();
        assert_eq!(name.interface, "inspector");
        assert!(supported().matches(&name.version));
        assert!(parse_name("wasi:io/streams@0.2.0").is_none());
        assert!(parse_name("bucketscan:plugin/inspector").unwrap().is_err());
    }

    #[test]
    fn other_minor_series_are_not_supported() {
        assert!(!supported().matches(&Version::parse("0.2.0").unwrap()));
        assert!(!supported().matches(&Version::parse("1.0.0").unwrap()));
        assert!(supported().matches(&Version::parse(HOST_VERSION).unwrap()));
    }
}
