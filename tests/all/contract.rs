//! The contract version a component was built against is read from the
//! component itself and checked against the series the host runs; plugins
//! of the last 0.1 release run beside 0.2 plugins, in one pipeline.

use bucketscan_core::ResultName;
use bucketscan_core::Verdict;
use bucketscan_core::grants::Capability;
use bucketscan_core::grants::Grants;
use bucketscan_core::pipeline::StageKind;
use bucketscan_engine::PipelineStage;
use bucketscan_engine::contract;
use bucketscan_engine::engine::CacheUse;
use bucketscan_engine::{Engine, Plugin};
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::webhook::{Behaviour, Receiver};
use bucketscan_tests::{clamd, component, released_component, samples};
use std::sync::Arc;
use std::time::Duration;

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
        assert_eq!(plugin.contract.to_string(), "0.2.2", "{name}");
        assert_eq!(plugin.series, contract::Series::V0_2, "{name}");
        assert_eq!(plugin.capabilities, capabilities, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_against_an_earlier_compatible_contract_still_runs() {
    // tests/plugins/legacy is built with plain wit-bindgen against the frozen
    // tests/contracts/0.1.0; the host's newest contract is 0.2.2. It runs
    // on the 0.1 bindings, in one pipeline with a 0.2 plugin.
    let host = TestHost::with_clamd(test_limits());
    let legacy = host.plugin("test_plugin_legacy").await;
    assert_eq!(legacy.contract.to_string(), "0.1.0");
    assert_eq!(legacy.series, contract::Series::V0_1);
    assert_eq!(contract::HOST_VERSION, "0.2.2");
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
    // tests/plugins/future is built against tests/contracts/0.3.0, a
    // made-up series where `inspect` takes another parameter.
    let host = Engine::new(&test_limits()).unwrap();
    let err = Plugin::load(&host, "future", &component("test_plugin_future"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "built against contract bucketscan:plugin@0.3.0, but this host supports ^0.1, ^0.2 (contract bucketscan:plugin@0.2.2)"
        ),
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

/// An action stage that runs on `on`.
fn action(
    plugin: &Arc<bucketscan_engine::Plugin>,
    settings: &[(&str, &str)],
    grants: Grants,
    on: &[ResultName],
) -> PipelineStage {
    PipelineStage {
        on: on.to_vec(),
        ..stage(plugin, settings, grants)
    }
}

fn storage(buckets: &[&str]) -> Grants {
    Grants {
        storage: buckets.iter().map(|b| b.to_string()).collect(),
        ..Grants::default()
    }
}

fn http_to_loopback() -> Grants {
    Grants {
        http: vec!["127.0.0.1".into()],
        http_private: vec!["127.0.0.0/8".parse().unwrap()],
        ..Grants::default()
    }
}

/// Which series each role of the pipeline below is built against.
struct Mix {
    filter_released: bool,
    bridge_released: bool,
    promoter_released: bool,
    quarantine_released: bool,
    webhook_released: bool,
}

/// The shipped pipeline — file-type filter, ClamAV bridge, promoter on
/// clean, quarantine on infected or blocked, webhook on everything —
/// with each plugin taken from the last 0.1 release or built now, as
/// `mix` says; run over a clean file, EICAR and an executable.
async fn shipped_pipeline_runs(mix: Mix) {
    let host = TestHost::with_clamd(test_limits());
    let load = async |name: &str, released: bool| {
        let plugin = if released {
            host.released_plugin(name).await
        } else {
            host.plugin(name).await
        };
        let expected = if released { "0.1.1" } else { "0.2.2" };
        assert_eq!(plugin.contract.to_string(), expected, "{name}");
        plugin
    };
    let filter = load("filetype_filter", mix.filter_released).await;
    let bridge = load("clamav_bridge", mix.bridge_released).await;
    let promoter = load("promoter", mix.promoter_released).await;
    let quarantine = load("quarantine", mix.quarantine_released).await;
    let webhook = load("webhook", mix.webhook_released).await;
    let receiver = Receiver::start(Behaviour::default());
    let url = receiver.url("/scan");
    let stages = [
        // A list setting: 0.1 plugins get it joined with commas, 0.2
        // plugins as a list.
        stage(&filter, &[("deny", r#"["executable", "script"]"#)], Grants::default()),
        stage(&bridge, &[], clamav_grant()),
        action(
            &promoter,
            &[("bucket", PRODUCTION)],
            storage(&[PRODUCTION]),
            &[ResultName::Clean],
        ),
        action(
            &quarantine,
            &[("mode", "move"), ("bucket", QUARANTINE)],
            storage(&[QUARANTINE, STAGING]),
            &[ResultName::Infected, ResultName::Blocked],
        ),
        action(&webhook, &[("url", &url)], http_to_loopback(), &[]),
    ];

    let (report, writes) = host
        .run_recorded(
            &stages,
            object(STAGING, "in/report.txt", samples::clean_text(), Some("text/plain")),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean);
    assert!(report.actions_ok(), "{:?}", report.stages);
    assert!(
        writes.iter().any(|w| w.starts_with(&format!(
            "copy s3://{STAGING}/in/report.txt -> s3://{PRODUCTION}/in/report.txt"
        ))),
        "{writes:?}"
    );

    let (report, writes) = host
        .run_recorded(
            &stages,
            object(STAGING, "in/eicar.txt", samples::eicar(), Some("text/plain")),
        )
        .await;
    assert!(
        matches!(report.verdict, Verdict::Infected { .. }),
        "{:?}",
        report.verdict
    );
    assert!(report.actions_ok(), "{:?}", report.stages);
    assert!(
        writes.iter().any(|w| w.starts_with(&format!(
            "copy s3://{STAGING}/in/eicar.txt -> s3://{QUARANTINE}/{STAGING}/in/eicar.txt"
        ))),
        "{writes:?}"
    );
    assert!(!writes.iter().any(|w| w.contains(PRODUCTION)), "{writes:?}");

    let report = host
        .run(
            &stages,
            object(
                STAGING,
                "in/setup.bin",
                std::fs::read(samples::clamav_testfile("clam.exe")).unwrap(),
                None,
            ),
        )
        .await;
    assert!(
        matches!(report.verdict, Verdict::Blocked { .. }),
        "{:?}",
        report.verdict
    );

    // The webhook saw all three, with the stages before it (0.1's
    // `context`, 0.2's `earlier-stages`) and stable outcome names.
    let requests = receiver.wait_for_requests(3, Duration::from_secs(10)).await;
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    let verdicts: Vec<&str> = bodies.iter().map(|b| b["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["clean", "infected", "blocked"], "{requests:?}");
    let timings = bodies[0]["timings"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = timings
        .iter()
        .map(|t| (t["plugin"].as_str().unwrap(), t["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("filetype_filter", "continue"),
            ("clamav_bridge", "clean"),
            ("promoter", "done"),
            ("quarantine", "not applicable")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn released_inspectors_and_webhook_run_beside_new_actions() {
    shipped_pipeline_runs(Mix {
        filter_released: true,
        bridge_released: true,
        promoter_released: false,
        quarantine_released: false,
        webhook_released: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_inspectors_run_beside_released_actions() {
    shipped_pipeline_runs(Mix {
        filter_released: false,
        bridge_released: false,
        promoter_released: true,
        quarantine_released: true,
        webhook_released: false,
    })
    .await;
}

/// The agent on real S3 events with the last release's ClamAV bridge and
/// quarantine beside this build's file-type filter and promoter.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_protects_a_bucket_with_plugins_of_both_series() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let swapped = text
        .replace(
            &component("clamav_bridge").display().to_string(),
            &released_component("clamav_bridge").display().to_string(),
        )
        .replace(
            &component("quarantine").display().to_string(),
            &released_component("quarantine").display().to_string(),
        );
    assert_ne!(text, swapped);
    std::fs::write(&config, swapped).unwrap();
    let agent = world.start_agent(&config);
    world
        .put("in/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("in/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    let within = Duration::from_secs(60);
    world.wait_for(QUARANTINE, "staging/in/eicar.txt", within, &agent).await;
    world.wait_for(PRODUCTION, "in/notes.txt", within, &agent).await;
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/in/eicar.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    assert!(!world.exists(PRODUCTION, "in/eicar.txt").await);
    // Moved by the released quarantine (the delete comes after the alert).
    world.wait_gone(STAGING, "in/eicar.txt", within, &agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_built_against_0_2_0_run_on_a_newer_0_2_host() {
    // Built before `yara` joined the contract, kept in
    // tests/fixtures/released-0.2.0: their imports name 0.2.0, which the
    // host's newer 0.2 definitions satisfy (an addition, semver-compatible).
    let host = TestHost::with_clamd(test_limits());
    let mut plugins = Vec::new();
    for name in ["filetype_filter", "clamav_bridge", "promoter", "quarantine"] {
        let plugin = host.plugin_of_0_2_0(name).await;
        assert_eq!(plugin.contract.to_string(), "0.2.0", "{name}");
        assert_eq!(plugin.series, contract::Series::V0_2, "{name}");
        plugins.push(plugin);
    }
    let [filter, bridge, promoter, quarantine] = &plugins[..] else {
        unreachable!()
    };
    let stages = [
        stage(filter, &[("deny", r#"["executable"]"#)], Grants::default()),
        stage(bridge, &[], clamav_grant()),
        action(
            promoter,
            &[("bucket", PRODUCTION)],
            storage(&[PRODUCTION]),
            &[ResultName::Clean],
        ),
        action(
            quarantine,
            &[("mode", "move"), ("bucket", QUARANTINE)],
            storage(&[QUARANTINE, STAGING]),
            &[ResultName::Infected, ResultName::Blocked],
        ),
    ];
    let (report, writes) = host
        .run_recorded(
            &stages,
            object(STAGING, "in/eicar.txt", samples::eicar(), Some("text/plain")),
        )
        .await;
    assert!(
        matches!(report.verdict, Verdict::Infected { .. }),
        "{:?}",
        report.verdict
    );
    assert!(writes.iter().any(|w| w.contains(QUARANTINE)), "{writes:?}");
    let report = host
        .run(
            &stages,
            object(STAGING, "in/notes.txt", samples::clean_text(), Some("text/plain")),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean);
}
