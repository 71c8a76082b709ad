//! The same contract from other languages: plugins written in Python
//! (componentize-py), JavaScript (componentize-js) and C (clang +
//! wit-bindgen's C output), built by `scripts/build-plugins`, run by the
//! host over real objects next to the Rust plugins — and `bucketscan plugin
//! new` scaffolds that build and pass their own tests.

use bucketscan_core::Verdict;
use bucketscan_core::grants::Grants;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, World};
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::{bucketscan_bin, clamd, component, samples, target_dir, workspace};
use std::process::Command;
use std::time::Duration;

fn findings(verdict: &Verdict) -> Vec<String> {
    match verdict {
        Verdict::Infected { findings } => findings
            .iter()
            .map(|f| format!("{}:{}", f.engine, f.signature))
            .collect(),
        other => panic!("expected infected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_byte_rules_find_patterns_across_read_boundaries() {
    let host = TestHost::with_clamd(test_limits());
    let rules = host.plugin("byte_rules_py").await;
    let bridge = host.plugin("clamav_bridge").await;
    let settings = [("rule.macro", "text:AutoOpen"), ("rule.mz-stub", "hex:4d 5a 90 00")];
    let stages = [
        stage(&rules, &settings, Grants::default()),
        stage(&bridge, &[], clamav_grant()),
    ];

    // A pattern split across the plugin's 1 MiB reads is still found.
    let mut straddling = samples::pseudo_random_text(2 << 20, 1);
    straddling.splice((1 << 20) - 3..(1 << 20) + 5, b"AutoOpen".iter().copied());
    let report = host.run(&stages, object("b", "doc.bin", straddling, None)).await;
    assert_eq!(findings(&report.verdict), ["byte-rules:macro"]);

    let report = host
        .run(
            &stages,
            object("b", "stub", b"xx\x4d\x5a\x90\x00yy AutoOpen".to_vec(), None),
        )
        .await;
    assert_eq!(findings(&report.verdict), ["byte-rules:macro", "byte-rules:mz-stub"]);

    // No pattern: no objection, and ClamAV decides.
    let report = host
        .run(&stages, object("b", "ok.txt", b"plain words".to_vec(), None))
        .await;
    assert_eq!(report.verdict, Verdict::Clean);
    assert_eq!(report.stages[0].outcome, "continue");
    let report = host.run(&stages, object("b", "eicar", samples::eicar(), None)).await;
    assert_eq!(findings(&report.verdict), ["clamav:Eicar-Test-Signature.UNOFFICIAL"]);

    // Over its size limit: unscannable, never clean.
    let small = [("rule.macro", "text:AutoOpen"), ("max-scan-bytes", "1KB")];
    let report = host
        .run(
            &[stage(&rules, &small, Grants::default())],
            object("b", "big", vec![b'a'; 4096], None),
        )
        .await;
    assert_eq!(report.verdict.result_name(), "unscannable", "{:?}", report.verdict);

    // A bad setting is an error that names it.
    let bad = [("rule.x", "base64:QUJD")];
    let report = host
        .run(
            &[stage(&rules, &bad, Grants::default())],
            object("b", "x", b"ABC".to_vec(), None),
        )
        .await;
    assert!(
        report
            .verdict
            .to_string()
            .contains("setting `rule.x`: expected `hex:...` or `text:...`"),
        "{}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_size_policy_blocks_by_size_type_and_extension() {
    let host = TestHost::with_clamd(test_limits());
    let policy = host.plugin("size_policy_js").await;
    let settings = [
        ("max-size", "1KB"),
        ("min-size", "1"),
        ("allow-content-types", r#"["text/", "image/"]"#),
        ("deny-extensions", r#"["exe", "js"]"#),
    ];
    let stages = [stage(&policy, &settings, Grants::default())];
    let cases: [(&str, Vec<u8>, Option<&str>, &str); 5] = [
        (
            "big.txt",
            vec![b'a'; 2048],
            Some("text/plain"),
            "2048 bytes is over max-size 1KB",
        ),
        (
            "empty.txt",
            Vec::new(),
            Some("text/plain"),
            "0 bytes is under min-size 1",
        ),
        (
            "doc.pdf",
            b"%PDF".to_vec(),
            Some("application/pdf"),
            "content type `application/pdf` is not allowed",
        ),
        (
            "setup.EXE",
            b"MZ".to_vec(),
            Some("image/png"),
            "extension `.exe` is denied",
        ),
        ("a/b/ok.txt", b"fine".to_vec(), Some("text/plain"), ""),
    ];
    for (key, bytes, content_type, reason) in cases {
        let report = host.run(&stages, object("b", key, bytes, content_type)).await;
        if reason.is_empty() {
            assert_eq!(report.stages[0].outcome, "continue", "{key}: {:?}", report.verdict);
        } else {
            assert_eq!(report.verdict, Verdict::Blocked { reason: reason.into() }, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn c_entropy_check_blocks_random_bytes_that_claim_to_be_text() {
    let host = TestHost::with_clamd(test_limits());
    let entropy = host.plugin("entropy_c").await;
    assert_eq!(entropy.contract.to_string(), "0.2.2");
    let stages = [stage(
        &entropy,
        &[
            ("max-entropy", "7.5"),
            ("text-types", r#"["text/", "application/json"]"#),
        ],
        Grants::default(),
    )];
    let mut state = 0x9e3779b97f4a7c15u64;
    let random: Vec<u8> = (0..65536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();

    let report = host
        .run(&stages, object("b", "notes.txt", random.clone(), Some("text/plain")))
        .await;
    match &report.verdict {
        Verdict::Blocked { reason } => assert!(
            reason.starts_with("entropy ") && reason.contains("bits/byte over 7.50, but it claims `text/plain`"),
            "{reason}"
        ),
        other => panic!("expected blocked, got {other:?}"),
    }
    // The same bytes as what they are, and real text as text: no objection.
    let report = host
        .run(
            &stages,
            object("b", "blob.bin", random, Some("application/octet-stream")),
        )
        .await;
    assert_eq!(report.stages[0].outcome, "continue", "{:?}", report.verdict);
    let report = host
        .run(
            &stages,
            object(
                "b",
                "notes.txt",
                samples::pseudo_random_text(65536, 2),
                Some("text/plain"),
            ),
        )
        .await;
    assert_eq!(report.stages[0].outcome, "continue", "{:?}", report.verdict);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_runs_python_javascript_and_c_plugins_on_s3_objects() {
    let world = World::new().await;
    let extra = format!(
        r#"
[plugins.byte-rules]
path = "{py}"
[plugins.size-policy]
path = "{js}"
[plugins.entropy]
path = "{c}"
[[buckets.staging.prefixes]]
prefix = "polyglot/"
[[buckets.staging.prefixes.stages]]
plugin = "size-policy"
settings = {{ deny-extensions = ["js"] }}
[[buckets.staging.prefixes.stages]]
plugin = "entropy"
[[buckets.staging.prefixes.stages]]
plugin = "byte-rules"
settings = {{ "rule.macro" = "text:AutoOpen" }}
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.staging.prefixes.stages]]
plugin = "promoter"
on = ["clean"]
settings = {{ bucket = "production" }}
grants = {{ storage = ["production"] }}
[[buckets.staging.prefixes.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = {{ mode = "move", bucket = "quarantine" }}
grants = {{ storage = ["quarantine", "staging"] }}
"#,
        py = component("byte_rules_py").display(),
        js = component("size_policy_js").display(),
        c = component("entropy_c").display(),
    );
    let agent = world.start_agent(&world.config(&clamd::shared().address(), &extra));
    world
        .put("polyglot/readme.txt", b"hello".to_vec(), Some("text/plain"), &[], &[])
        .await;
    world
        .put(
            "polyglot/payload.js",
            b"alert(1)".to_vec(),
            Some("text/javascript"),
            &[],
            &[],
        )
        .await;
    world
        .put(
            "polyglot/macro.doc",
            b"..AutoOpen..".to_vec(),
            Some("application/msword"),
            &[],
            &[],
        )
        .await;

    let within = Duration::from_secs(120); // first use compiles the Python and JS runtimes
    world.wait_for(PRODUCTION, "polyglot/readme.txt", within, &agent).await;
    world
        .wait_for(QUARANTINE, "staging/polyglot/payload.js", within, &agent)
        .await;
    world
        .wait_for(QUARANTINE, "staging/polyglot/macro.doc", within, &agent)
        .await;
    let result = world
        .tag(QUARANTINE, "staging/polyglot/macro.doc", "bucketscan-result")
        .await;
    assert_eq!(result.as_deref(), Some("infected"));
    let signature = world
        .tag(QUARANTINE, "staging/polyglot/macro.doc", "bucketscan-signature")
        .await;
    assert_eq!(signature.as_deref(), Some("macro"));
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/polyglot/payload.js", "bucketscan-result")
            .await
            .as_deref(),
        Some("blocked")
    );
}

/// Where scripts/setup installed each toolchain, for the scaffolds' builds.
fn toolchain_env(command: &mut Command) -> &mut Command {
    let tools = target_dir().join("tools");
    let path = format!(
        "{}:{}:{}",
        tools.join("venv/bin").display(),
        bucketscan_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .env("PATH", path)
        .env("BUCKETSCAN", bucketscan_bin())
        .env(
            "COMPONENTIZE_JS",
            tools.join("node/node_modules/@bytecodealliance/componentize-js/src/componentize.js"),
        )
        // Rust scaffolds share one target dir across runs (not the
        // workspace's: its lock is held by the outer cargo).
        .env("CARGO_TARGET_DIR", target_dir().join("tmp/scaffold-target"))
}

#[test]
fn scaffolded_plugins_build_and_pass_their_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("deny-{lang}-suffixes");
        let out = Command::new(bucketscan_bin())
            .args(["plugin", "new", "--lang", lang, &name, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let root = dir.path().join(&name);
        for file in ["package.wit", "stage.wit", "worlds.wit"] {
            assert_eq!(
                std::fs::read_to_string(root.join("wit").join(file)).unwrap(),
                std::fs::read_to_string(workspace().join("wit").join(file)).unwrap(),
                "{file}"
            );
        }
        assert!(!root.join("wit/released").exists(), "only the newest contract");

        let out = toolchain_env(&mut Command::new(root.join("test.sh"))).output().unwrap();
        assert!(
            out.status.success(),
            "{lang} scaffold test failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("ok: {name} blocks report.block")), "{stdout}");
        assert!(stdout.contains("contract:     bucketscan:plugin@0.2.2"), "{stdout}");
    }
    // A second scaffold into the same place is refused, not overwritten.
    let out = Command::new(bucketscan_bin())
        .args(["plugin", "new", "--lang", "rust", "deny-rust-suffixes", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"));
    let out = Command::new(bucketscan_bin())
        .args(["plugin", "new", "--lang", "js", "Bad_Name"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin name `Bad_Name`: use lowercase letters"));
}

#[test]
fn scaffolds_without_their_toolchain_say_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    // A PATH with the basics and nothing of the plugin toolchains (no
    // componentize-py, and node without componentize-js in reach).
    let path = "/usr/bin:/bin";
    for (lang, expected) in [
        ("python", "pip install componentize-py==0.25.1"),
        ("js", "npm install @bytecodealliance/componentize-js@0.23.0"),
    ] {
        let name = format!("bare-{lang}");
        let out = Command::new(bucketscan_bin())
            .args(["plugin", "new", "--lang", lang, &name, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(dir.path().join(&name).join("build.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{lang}: {stderr}");
        assert!(stderr.contains(expected), "{lang}: {stderr}");
        assert!(!stderr.contains("command not found"), "{lang}: {stderr}");
    }
    // And test.sh says where bucketscan is when it is not on PATH.
    let out = Command::new(dir.path().join("bare-python/test.sh"))
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("target/debug/bucketscan"), "{stderr}");
}
