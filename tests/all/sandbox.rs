//! Hostile plugins: each is stopped within its limit, reported with the
//! plugin's name, version and the cause, and the host goes on scanning.

use bucketscan_core::Verdict;
use bucketscan_core::grants::Grants;
use bucketscan_engine::config::EngineConfig;
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::samples;
use std::time::{Duration, Instant};

fn limits() -> EngineConfig {
    EngineConfig {
        memory_limit_mib: 64,
        wasm_time_limit_ms: 500,
        stage_timeout_ms: 3_000,
        ..test_limits()
    }
}

/// Runs the hostile plugin with `behaviour`, checks the verdict is an error
/// naming the plugin and containing `expected`, then checks the same host
/// still scans the next object correctly.
async fn assert_stopped(behaviour: &str, extra: &[(&str, &str)], grants: Grants, expected: &str) -> Duration {
    let host = TestHost::with_clamd(limits());
    let hostile = host.plugin("test_plugin_hostile").await;
    let bridge = host.plugin("clamav_bridge").await;
    let mut settings = vec![("behaviour", behaviour)];
    settings.extend_from_slice(extra);
    let started = Instant::now();
    let report = host
        .run(
            &[stage(&hostile, &settings, grants), stage(&bridge, &[], clamav_grant())],
            object("staging", "victim.txt", samples::clean_text(), None),
        )
        .await;
    let took = started.elapsed();
    match &report.verdict {
        Verdict::Error { message } => {
            assert!(
                message.contains("plugin hostile@6.6.6 failed"),
                "{behaviour}: {message}"
            );
            assert!(
                message.contains(expected),
                "{behaviour}: expected `{expected}` in: {message}"
            );
        }
        other => panic!("{behaviour}: expected an error verdict, got {other:?}"),
    }
    assert_eq!(report.stages[0].outcome, "failed");
    assert_eq!(report.stages[1].outcome, "skipped", "a failed stage ends inspection");

    // The next object on the same host is scanned normally.
    let next = host
        .run(
            &[stage(&bridge, &[], clamav_grant())],
            object("staging", "eicar.com", samples::eicar(), None),
        )
        .await;
    assert_eq!(next.result(), "infected", "{behaviour}: the host must go on");
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_stopped_by_the_wasm_time_limit() {
    let took = assert_stopped(
        "spin",
        &[],
        Grants::default(),
        "timeout: the plugin's code ran longer than 500 ms",
    )
    .await;
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_blocked_in_a_host_call_is_stopped_by_the_stage_timeout() {
    assert_stopped(
        "sleep",
        &[],
        Grants::default(),
        "timeout: the stage took longer than 3000 ms",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_hits_the_memory_limit() {
    assert_stopped(
        "hog",
        &[],
        Grants::default(),
        "memory limit exceeded: asked to grow memory to",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_reported_as_a_trap() {
    assert_stopped(
        "trap",
        &[],
        Grants::default(),
        "trap: wasm trap: wasm `unreachable` instruction executed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_outputs_are_refused() {
    assert_stopped(
        "oversized",
        &[],
        Grants::default(),
        "malformed output: blocked reason is 8388608 bytes",
    )
    .await;
    assert_stopped(
        "many-findings",
        &[],
        Grants::default(),
        "malformed output: 10000 findings",
    )
    .await;
    assert_stopped(
        "no-findings",
        &[],
        Grants::default(),
        "malformed output: an infected verdict must name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_filesystem_is_not_there() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "secret").unwrap();
    let path = secret.path().to_str().unwrap();
    assert_stopped("read-file", &[("path", path)], Grants::default(), "read failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_network_is_not_there() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_stopped("connect", &[("addr", &addr)], Grants::default(), "connect failed").await;
    assert!(listener.accept().is_err(), "nothing may have connected to {addr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_is_empty() {
    // SAFETY: set before any plugin runs; tests only read it.
    unsafe { std::env::set_var("BUCKETSCAN_TEST_SECRET", "hunter2") };
    let host = TestHost::with_clamd(limits());
    let hostile = host.plugin("test_plugin_hostile").await;
    let report = host
        .run(
            &[stage(&hostile, &[("behaviour", "env")], Grants::default())],
            object("b", "k", Vec::new(), None),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean, "{:?}", report.verdict);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capability_that_was_not_granted_fails_the_stage() {
    assert_stopped(
        "scan-without-grant",
        &[],
        Grants::default(),
        "capability `clamav` not granted: the stage has no `clamav = true` grant",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_error_is_capped_and_cannot_forge_log_lines() {
    // A 4 MiB error message with a newline and a forged log line in it.
    let host = TestHost::with_clamd(limits());
    let hostile = host.plugin("test_plugin_hostile").await;
    let report = host
        .run(
            &[stage(&hostile, &[("behaviour", "error-flood")], Grants::default())],
            object("staging", "victim.txt", samples::clean_text(), None),
        )
        .await;
    let Verdict::Error { message } = &report.verdict else {
        panic!("{:?}", report.verdict)
    };
    assert!(message.len() <= 2048, "{} bytes", message.len());
    assert!(
        message.contains("plugin hostile@6.6.6 failed: plugin error: eeee"),
        "{message}"
    );
    assert!(!message.contains('\n'), "no line breaks from the plugin reach the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_flooding_the_log_is_cut_off_at_its_budget() {
    // 10 000 lines of 8 KiB with line breaks and colour codes: the stage
    // still ends normally (its decision counts), the log gets the budget.
    let dir = tempfile::tempdir().unwrap();
    let file = samples::write(dir.path(), "victim.txt", &samples::clean_text());
    let out = std::process::Command::new(bucketscan_tests::bucketscan_bin())
        .args(["plugin", "run"])
        .arg(bucketscan_tests::component("test_plugin_hostile"))
        .args(["--set", "behaviour=log-flood", "--file"])
        .arg(&file)
        .env("BUCKETSCAN_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let lines = log.lines().filter(|l| l.contains("stage=")).count();
    assert!(lines <= 101, "{lines} log lines from one stage");
    assert!(log.contains("log budget of this stage"), "{log}");
    assert!(!log.contains("\x1b[31m"), "colour codes are cleaned");
    assert!(log.len() < 200 * 1024, "{} bytes of log", log.len());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("unscannable"), "continue from the only stage: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compile_cache_others_could_write_is_not_trusted() {
    use bucketscan_engine::engine::CacheUse;
    use bucketscan_engine::{Engine, Plugin};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let limits = EngineConfig {
        cache_dir: Some(cache.clone()),
        ..EngineConfig::default()
    };
    let component = bucketscan_tests::component("test_plugin_noop");
    let load = || async {
        let host = Engine::new(&limits).unwrap();
        Plugin::load(&host, "noop", &component, None).await.unwrap().cache
    };
    // A private directory: written once, then used.
    assert_eq!(load().await, CacheUse::Miss);
    assert_eq!(load().await, CacheUse::Hit);
    // Writable by others: anyone could have replaced the native code.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(load().await, CacheUse::Untrusted);
    // Private again, but an entry writable by others is ignored.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    assert_eq!(load().await, CacheUse::Miss, "the tampered entry was compiled anew");
}

/// Grants HTTP to loopback, as a webhook receiver on this machine needs.
fn loopback_http() -> Grants {
    Grants {
        http: vec!["127.0.0.1".into()],
        http_private: vec!["127.0.0.0/8".parse().unwrap()],
        ..Grants::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handles_hoarded_in_the_host_table_hit_a_limit() {
    // Each `stage.object()` is an entry in the host's resource table,
    // outside the plugin's memory limit: the stage may hold 1024.
    assert_stopped(
        "object-flood",
        &[],
        Grants::default(),
        "call limit: more than 1024 handles",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_built_in_the_host_are_capped_and_need_a_grant() {
    // Without any `http` grant a request cannot even be built.
    assert_stopped(
        "request-flood",
        &[],
        Grants::default(),
        "capability `http` not granted: the stage has no `http` grant",
    )
    .await;
    // With one, the bytes a stage may put into requests are capped.
    assert_stopped(
        "request-flood",
        &[],
        loopback_http(),
        "call limit: more than 8388608 bytes put into HTTP requests",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_host_header_is_refused_before_anything_is_sent() {
    let receiver = bucketscan_tests::webhook::Receiver::start(bucketscan_tests::webhook::Behaviour::default());
    let url = receiver.url("/fronted");
    assert_stopped(
        "host-header",
        &[("url", &url)],
        loopback_http(),
        "send refused: not allowed: header `Host` is set by the host only",
    )
    .await;
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
}

#[tokio::test(flavor = "multi_thread")]
async fn asking_clamd_again_gets_the_same_answer_without_another_scan() {
    // A thousand scans of a 5 MiB object would keep clamd busy for the
    // whole stage; the stage's one answer comes back instead, well within
    // the 500 ms Wasm limit and the 3 s stage timeout.
    let host = TestHost::with_clamd(limits());
    let hostile = host.plugin("test_plugin_hostile").await;
    let report = host
        .run(
            &[stage(&hostile, &[("behaviour", "scan-flood")], clamav_grant())],
            object("staging", "big.txt", samples::pseudo_random_text(5 << 20, 7), None),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean, "{:?}", report.stages);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_reporting_success_past_a_failed_storage_call_fails_its_stage() {
    // The tagger asks for a tag the agent owns (refused), ignores the
    // refusal and reports success: the host does not believe it.
    let host = TestHost::with_clamd(limits());
    let bridge = host.plugin("clamav_bridge").await;
    let tagger = host.plugin("test_plugin_tagger").await;
    let grants = Grants {
        storage: vec!["staging".into()],
        ..Grants::default()
    };
    let report = host
        .run(
            &[
                stage(&bridge, &[], clamav_grant()),
                stage(
                    &tagger,
                    &[
                        ("tag-key", "bucketscan-result"),
                        ("tag-value", "clean"),
                        ("ignore-errors", "true"),
                    ],
                    grants,
                ),
            ],
            object("staging", "eicar.com", samples::eicar(), None),
        )
        .await;
    let tagger_stage = &report.stages[1];
    assert_eq!(tagger_stage.outcome, "failed", "{:?}", report.stages);
    let error = tagger_stage.error.as_deref().unwrap();
    assert!(
        error.contains("a storage action failed and the plugin reported success"),
        "{error}"
    );
    assert!(!report.outcome.settles(), "the object is retried");
}
