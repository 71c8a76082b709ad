//! The contract version a component was built against is read from the
//! component itself and checked against the host's supported range.

use bucketscan_core::grants::Capability;
use bucketscan_core::pipeline::StageKind;
use bucketscan_engine::host::CacheUse;
use bucketscan_engine::{Plugin, PluginHost};
use bucketscan_tests::host::test_limits;
use bucketscan_tests::component;

#[tokio::test(flavor = "multi_thread")]
async fn kind_contract_and_capabilities_come_from_the_component() {
    let host = PluginHost::new(&test_limits()).unwrap();
    let cases = [
        ("clamav_bridge", StageKind::Inspector, vec![Capability::Clamav]),
        ("filetype_filter", StageKind::Inspector, vec![]),
        ("test_plugin_tagger", StageKind::Action, vec![Capability::Storage]),
    ];
    for (name, kind, capabilities) in cases {
        let plugin = Plugin::load(&host, name, &component(name), None).await.unwrap();
        assert_eq!(plugin.kind, kind, "{name}");
        assert_eq!(plugin.contract.to_string(), "0.1.0", "{name}");
        assert_eq!(plugin.capabilities, capabilities, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_contract_is_refused_with_the_supported_range() {
    // A component claiming contract 0.2.0: the same plugin with its
    // contract names rewritten (same length, so the binary stays valid).
    let bytes = std::fs::read(component("filetype_filter")).unwrap();
    let patched = replace_all(&bytes, b"bucketscan:plugin/", b"@0.1.0", b"@0.2.0");
    assert_ne!(bytes, patched);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.wasm");
    std::fs::write(&path, patched).unwrap();
    let host = PluginHost::new(&test_limits()).unwrap();
    let err = Plugin::load(&host, "future", &path, None).await.unwrap_err().to_string();
    assert!(
        err.contains("built against contract bucketscan:plugin@0.2.0, but this host supports ^0.1"),
        "{err}"
    );
    assert!(err.contains("plugin `future`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_core_module_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let host = PluginHost::new(&test_limits()).unwrap();
    let err = Plugin::load(&host, "core", &path, None).await.unwrap_err().to_string();
    assert!(err.contains("not a WebAssembly component (a core module)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_reuses_the_compiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let limits = bucketscan_core::config::HostLimits {
        cache_dir: Some(cache.path().to_owned()),
        ..test_limits()
    };
    let first = PluginHost::new(&limits).unwrap();
    let plugin = Plugin::load(&first, "f", &component("filetype_filter"), None).await.unwrap();
    assert_eq!(plugin.cache, CacheUse::Miss);
    drop(first);
    let second = PluginHost::new(&limits).unwrap();
    let plugin = Plugin::load(&second, "f", &component("filetype_filter"), None).await.unwrap();
    assert_eq!(plugin.cache, CacheUse::Hit);
    assert_eq!(plugin.identity.name, "filetype-filter");
}

/// Replaces `old` with `new` wherever it follows `prefix` within 32 bytes.
fn replace_all(bytes: &[u8], prefix: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while let Some(at) = find(&out[i..], prefix) {
        let start = i + at + prefix.len();
        let window = &out[start..(start + 32).min(out.len())];
        if let Some(pos) = find(window, old) {
            out[start + pos..start + pos + new.len()].copy_from_slice(new);
        }
        i = start;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
