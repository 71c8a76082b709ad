//! The contract version a component was built against is read from the
//! component itself and checked against the host's supported range.

use bucketscan_core::Verdict;
use bucketscan_core::grants::Capability;
use bucketscan_core::grants::Grants;
use bucketscan_core::pipeline::StageKind;
use bucketscan_engine::contract;
use bucketscan_engine::engine::CacheUse;
use bucketscan_engine::{Engine, Plugin};
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::{component, samples};

#[tokio::test(flavor = "multi_thread")]
async fn kind_contract_and_capabilities_come_from_the_component() {
    let host = Engine::new(&test_limits()).unwrap();
    let cases = [
        ("clamav_bridge", StageKind::Inspector, vec![Capability::Clamav]),
        ("filetype_filter", StageKind::Inspector, vec![]),
        ("test_plugin_tagger", StageKind::Action, vec![Capability::Storage]),
    ];
    for (name, kind, capabilities) in cases {
        let plugin = Plugin::load(&host, name, &component(name), None).await.unwrap();
        assert_eq!(plugin.kind, kind, "{name}");
        assert_eq!(plugin.contract.to_string(), "0.1.1", "{name}");
        assert_eq!(plugin.capabilities, capabilities, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_against_an_earlier_compatible_contract_still_runs() {
    // tests/plugins/legacy is built with plain wit-bindgen against the frozen
    // tests/contracts/0.1.0; the host is 0.1.1. It runs in one pipeline
    // with a 0.1.1 plugin that uses an addition (the webhook's `context`).
    let host = TestHost::with_clamd(test_limits());
    let legacy = host.plugin("test_plugin_legacy").await;
    assert_eq!(legacy.contract.to_string(), "0.1.0");
    assert_eq!(contract::HOST_VERSION, "0.1.1");
    let bridge = host.plugin("clamav_bridge").await;
    let stages = [
        stage(&legacy, &[], Grants::default()),
        stage(&bridge, &[], clamav_grant()),
    ];

    let report = host
        .run(&stages, object("b", "old.bin", b"LEGACY-BLOCK and more".to_vec(), None))
        .await;
    assert_eq!(
        report.verdict,
        Verdict::Blocked {
            reason: "legacy rule matched".into()
        }
    );
    let report = host.run(&stages, object("b", "eicar", samples::eicar(), None)).await;
    assert!(
        matches!(report.verdict, Verdict::Infected { .. }),
        "{:?}",
        report.verdict
    );
    assert_eq!(
        report.stages[0].outcome, "continue",
        "the legacy stage ran and read the object"
    );
    let report = host.run(&stages, object("b", "ok", b"fine".to_vec(), None)).await;
    assert_eq!(report.verdict, Verdict::Clean);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_contract_is_refused_with_the_supported_range() {
    // tests/plugins/future is built against tests/contracts/0.2.0, where
    // `inspect` takes another parameter.
    let host = Engine::new(&test_limits()).unwrap();
    let err = Plugin::load(&host, "future", &component("test_plugin_future"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("built against contract bucketscan:plugin@0.2.0, but this host supports ^0.1 (contract bucketscan:plugin@0.1.1)"),
        "{err}"
    );
    assert!(
        err.contains("plugin `future`") && err.contains("test_plugin_future.wasm"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_core_module_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let host = Engine::new(&test_limits()).unwrap();
    let err = Plugin::load(&host, "core", &path, None).await.unwrap_err().to_string();
    assert!(err.contains("not a WebAssembly component (a core module)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_reuses_the_compiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let limits = bucketscan_engine::config::EngineConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..test_limits()
    };
    let first = Engine::new(&limits).unwrap();
    let plugin = Plugin::load(&first, "f", &component("filetype_filter"), None)
        .await
        .unwrap();
    assert_eq!(plugin.cache, CacheUse::Miss);
    drop(first);
    let second = Engine::new(&limits).unwrap();
    let plugin = Plugin::load(&second, "f", &component("filetype_filter"), None)
        .await
        .unwrap();
    assert_eq!(plugin.cache, CacheUse::Hit);
    assert_eq!(plugin.identity.name, "filetype-filter");
}
