//! Config-driven pipelines: inspectors, then actions with storage grants,
//! with the real components and dry-run storage.

use bucketscan_core::Verdict;
use bucketscan_engine::{Engine, LoadedPipelines};
use bucketscan_runtime::config::Config;
use bucketscan_tests::host::{TestHost, object, test_limits};
use bucketscan_tests::{clamd, config, samples};

const PIPELINE: &str = r#"
[buckets.production]
[buckets.elsewhere]

[buckets.staging]
[[buckets.staging.stages]]
plugin = "filetype-filter"
settings = { deny = ["executable"], block-mismatch = true }

[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }

[[buckets.staging.stages]]
plugin = "tagger"
on = ["clean"]
settings = { copy-to = "production" }
grants = { storage = ["staging", "production"] }

[[buckets.staging.prefixes]]
prefix = "leaky/"
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.staging.prefixes.stages]]
plugin = "tagger"
settings = { copy-to = "elsewhere" }
grants = { storage = ["staging"] }
"#;

async fn load(body: &str) -> (TestHost, LoadedPipelines, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = config::write(dir.path(), &clamd::shared().address(), body);
    let config = Config::load_file(&path).unwrap().pipelines();
    let host = TestHost::with_clamd(test_limits());
    let loaded = LoadedPipelines::load(&host.host, config).await.unwrap();
    (host, loaded, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_object_runs_the_clean_actions_with_their_grants() {
    let (host, loaded, _dir) = load(PIPELINE).await;
    let (scope, stages) = loaded.pipeline_for("staging", "docs/notes.txt").unwrap();
    assert_eq!(scope, "bucket `staging`");
    let (report, writes) = host
        .run_recorded(
            &stages,
            object("staging", "docs/notes.txt", samples::clean_text(), None),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert!(report.actions_ok());
    let tagger = &report.stages[2];
    assert_eq!(tagger.outcome, "done");
    assert_eq!(
        tagger.actions,
        vec![
            "would tag s3://staging/docs/notes.txt reviewed=clean",
            "would copy s3://staging/docs/notes.txt -> s3://production/docs/notes.txt",
            "tagged clean",
            "copied to production",
        ]
    );
    // The result tags, the plugin's tag, the copy, then the copy's result.
    assert_eq!(writes.len(), 4, "{writes:#?}");
    assert!(writes[0].contains("\"bucketscan-result\", \"clean\""), "{writes:#?}");
    // An unversioned source is pinned by its ETag only: the copy is tagged
    // clean once its bytes were checked, never before.
    assert!(
        writes[2].starts_with("copy") && !writes[2].contains("bucketscan-result"),
        "{writes:#?}"
    );
    // The copy carries the verdict's tags, whatever the plugin asked,
    // sealed as written by an agent.
    assert!(writes[3].contains("\"bucketscan-result\", \"clean\""), "{writes:#?}");
    assert!(writes[3].contains("\"bucketscan-seal\", \"w1-"), "{writes:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infected_object_never_reaches_a_clean_only_action() {
    let (host, loaded, _dir) = load(PIPELINE).await;
    let (_, stages) = loaded.pipeline_for("staging", "download.txt").unwrap();
    let (report, writes) = host
        .run_recorded(&stages, object("staging", "download.txt", samples::eicar(), None))
        .await;
    assert_eq!(report.result(), "infected");
    assert_eq!(report.stages[2].outcome, "not applicable");
    assert_eq!(writes.len(), 1, "only the result tags: {writes:?}");
    assert!(writes[0].contains("\"bucketscan-result\", \"infected\""), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_bucket_outside_the_grant_fails_the_action() {
    let (host, loaded, _dir) = load(PIPELINE).await;
    let (scope, stages) = loaded.pipeline_for("staging", "leaky/notes.txt").unwrap();
    assert_eq!(scope, "bucket `staging` prefix `leaky/`");
    let (report, writes) = host
        .run_recorded(
            &stages,
            object("staging", "leaky/notes.txt", samples::clean_text(), None),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean);
    assert!(!report.actions_ok());
    assert!(
        !report.outcome.settles(),
        "a failed action leaves the event for a retry"
    );
    let error = report.stages[1].error.as_deref().unwrap();
    assert!(
        error.contains("capability `storage` not granted: bucket `elsewhere` is not in the stage's storage grant"),
        "{error}"
    );
    // The result tags and the plugin's tag (granted) happened before the
    // refused copy; nothing else.
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert!(writes[1].contains("\"reviewed\", \"clean\""), "{writes:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_is_refused_on_inspectors_with_the_config_line() {
    let body = "[buckets.staging]\n[[buckets.staging.stages]]\nplugin = \"clamav-bridge\"\non = [\"clean\"]\n";
    let dir = tempfile::tempdir().unwrap();
    let path = config::write(dir.path(), &clamd::shared().address(), body);
    let host = Engine::new(&test_limits()).unwrap();
    let err = LoadedPipelines::load(&host, Config::load_file(&path).unwrap().pipelines())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{}:", path.display())), "{err}");
    assert!(
        err.contains("`on` applies to action stages only, and `clamav-bridge@0.1.0` is an inspector"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_plugin_file_is_refused_by_its_sha256_pin() {
    let pinned = "0".repeat(64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let component = bucketscan_tests::component("clamav_bridge");
    std::fs::write(
        &path,
        format!(
            "[plugins.clamav-bridge]\npath = \"{}\"\nsha256 = \"{pinned}\"\n",
            component.display()
        ),
    )
    .unwrap();
    let host = Engine::new(&test_limits()).unwrap();
    let err = LoadedPipelines::load(&host, Config::load_file(&path).unwrap().pipelines())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("plugin `clamav-bridge`"), "{err}");
    assert!(err.contains(&format!("the config pins {pinned}")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_needs_a_grant_on_the_bucket_it_deletes_from() {
    let body = r#"
[plugins.quarantine]
path = "QUARANTINE"
[buckets.quarantine]
[buckets.staging]
[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.staging.stages]]
plugin = "quarantine"
on = ["infected"]
settings = { mode = "move", bucket = "quarantine" }
grants = { storage = ["quarantine"] }
"#
    .replace(
        "QUARANTINE",
        &bucketscan_tests::component("quarantine").display().to_string(),
    );
    let (host, loaded, _dir) = load(&body).await;
    let (_, stages) = loaded.pipeline_for("staging", "eicar.txt").unwrap();
    let (report, writes) = host
        .run_recorded(&stages, object("staging", "eicar.txt", samples::eicar(), None))
        .await;
    assert_eq!(report.result(), "infected");
    let error = report.stages[1].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("capability `storage` not granted: bucket `staging` is not in the stage's storage grant"),
        "{error}"
    );
    assert!(!report.outcome.settles(), "the object stays for a retry");
    assert!(
        !writes.iter().any(|w| w.starts_with("copy") || w.starts_with("delete")),
        "{writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_cannot_write_the_agents_result_tags() {
    // An action tries to mark an infected object clean: in our vocabulary,
    // or in GuardDuty's or CSS's, which readers' policies may trust.
    for (key, value) in [
        ("bucketscan-result", "clean"),
        ("GuardDutyMalwareScanStatus", "NO_THREATS_FOUND"),
        ("scan-result", "Clean"),
    ] {
        let body = format!(
            r#"
[buckets.staging]
[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.staging.stages]]
plugin = "tagger"
settings = {{ tag-key = "{key}", tag-value = "{value}" }}
grants = {{ storage = ["staging"] }}
"#
        );
        let (host, loaded, _dir) = load(&body).await;
        let (_, stages) = loaded.pipeline_for("staging", "eicar.txt").unwrap();
        let (report, writes) = host
            .run_recorded(&stages, object("staging", "eicar.txt", samples::eicar(), None))
            .await;
        let error = report.stages[1].error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!("refused: tag `{key}` is one of the agent's result tags")),
            "{error}"
        );
        assert_eq!(writes.len(), 1, "only the host's own result tags: {writes:?}");
        assert!(writes[0].contains("\"bucketscan-result\", \"infected\""), "{writes:?}");
    }
}
