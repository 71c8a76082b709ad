//! Writes pipeline config files that point at the built components.

use std::path::{Path, PathBuf};

/// `[plugins]` declarations for every built plugin, by absolute path.
pub fn plugin_declarations() -> String {
    [
        ("clamav-bridge", "clamav_bridge"),
        ("filetype-filter", "filetype_filter"),
        ("tagger", "test_plugin_tagger"),
        ("hostile", "test_plugin_hostile"),
    ]
    .iter()
    .map(|(name, file)| format!("[plugins.{name}]\npath = \"{}\"\n", crate::component(file).display()))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Writes `body` after the clamd address and plugin declarations into
/// `dir/config.toml`.
pub fn write(dir: &Path, clamd_address: &str, body: &str) -> PathBuf {
    let text = format!(
        "[engine]\ncache-dir = \"{}\"\n\n[clamav]\naddress = \"{clamd_address}\"\n\n{}\n{body}",
        crate::target_dir().join("tmp/component-cache").display(),
        plugin_declarations()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}
