//! The `bucketscan` binary: check, plugin inspect, plugin run.

use bucketscan_tests::{bucketscan_bin, clamd, component, config, samples};
use serde_json::Value;
use std::process::{Command, Output};

fn bucketscan(args: &[&str]) -> Output {
    Command::new(bucketscan_bin()).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BUCKETS: &str = r#"
[buckets.staging]
[[buckets.staging.stages]]
plugin = "filetype-filter"
settings = { block-mismatch = true }
[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
"#;

#[test]
fn check_loads_every_plugin_and_lists_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let path = config::write(dir.path(), &clamd::shared().address(), BUCKETS);
    let out = bucketscan(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("plugin clamav-bridge: inspector clamav-bridge@0.1.0, contract 0.2.2, imports [clamav]"),
        "{text}"
    );
    assert!(
        text.contains("pipeline bucket `staging`: filetype-filter -> clamav-bridge"),
        "{text}"
    );
}

#[test]
fn check_names_file_line_and_field_of_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = config::write(
        dir.path(),
        "127.0.0.1:1",
        &BUCKETS.replace("plugin = \"clamav-bridge\"", "plugin = \"clamav\""),
    );
    let out = bucketscan(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().position(|l| l == "plugin = \"clamav\"").unwrap() + 1;
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:{line}:", path.display())), "{err}");
    assert!(
        err.contains("stage 2 (`clamav`): plugin `clamav` is not declared under [plugins]"),
        "{err}"
    );
}

#[test]
fn inspect_shows_name_version_contract_and_capabilities() {
    let out = bucketscan(&[
        "plugin",
        "inspect",
        component("clamav_bridge").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["name"], "clamav-bridge");
    assert_eq!(json["version"], "0.1.0");
    assert_eq!(json["kind"], "inspector");
    assert_eq!(json["contract"], "bucketscan:plugin@0.2.2");
    assert_eq!(json["capabilities"], serde_json::json!(["clamav"]));
}

#[test]
fn plugin_run_reports_verdict_findings_and_timings_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let eicar = samples::write(dir.path(), "eicar.com", &samples::eicar());
    let out = bucketscan(&[
        "plugin",
        "run",
        component("clamav_bridge").to_str().unwrap(),
        "--file",
        eicar.to_str().unwrap(),
        "--clamd",
        &clamd::shared().address(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "infected exits 1: {}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["result"], "infected");
    assert_eq!(json["verdict"]["verdict"], "infected");
    assert_eq!(json["findings"][0]["signature"], "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(json["stages"][0]["plugin"], "clamav-bridge");
    assert!(json["stages"][0]["duration_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn plugin_run_takes_settings_and_runs_whole_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    let disguised = samples::write(dir.path(), "invoice.pdf", &exe);
    let out = bucketscan(&[
        "plugin",
        "run",
        component("filetype_filter").to_str().unwrap(),
        "--file",
        disguised.to_str().unwrap(),
        "--set",
        "block-mismatch=true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("blocked (extension claims pdf but the content is executable"),
        "{}",
        stdout(&out)
    );

    let path = config::write(dir.path(), &clamd::shared().address(), BUCKETS);
    let clean = samples::write(dir.path(), "notes.txt", &samples::clean_text());
    let out = bucketscan(&[
        "plugin",
        "run",
        "--config",
        path.to_str().unwrap(),
        "--bucket",
        "staging",
        "--file",
        clean.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("s3://staging/notes.txt: clean"), "{text}");
    assert!(text.contains("filetype-filter") && text.contains("continue"), "{text}");
}

#[test]
fn the_example_config_checks() {
    let example = bucketscan_tests::workspace().join("examples/bucketscan.toml");
    let out = bucketscan(&["check", "--config", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("pipeline bucket `staging` prefix `reports/`: clamav-bridge"));
}

/// The agent's staging pipeline with a topic, for dry runs.
fn agent_pipeline(clamd_address: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let body = format!(
        r#"
[notifications]
topic-arn = "arn:aws:sns:us-east-1:123456789012:results"
[plugins.promoter]
path = "{promoter}"
[plugins.quarantine]
path = "{quarantine}"
[buckets.production]
[buckets.quarantine]
[buckets.staging]
[[buckets.staging.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.staging.stages]]
plugin = "promoter"
on = ["clean"]
settings = {{ bucket = "production" }}
grants = {{ storage = ["production"] }}
[[buckets.staging.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = {{ mode = "move", bucket = "quarantine" }}
grants = {{ storage = ["quarantine", "staging"] }}
"#,
        promoter = component("promoter").display(),
        quarantine = component("quarantine").display(),
    );
    config::write(dir, clamd_address, &body)
}

#[test]
fn a_dry_run_shows_exactly_what_the_agent_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = agent_pipeline(&clamd::shared().address(), dir.path());
    let eicar = samples::write(dir.path(), "eicar.txt", &samples::eicar());
    let run = |file: &std::path::Path, tags: &[&str]| {
        let mut args = vec![
            "plugin",
            "run",
            "--config",
            path.to_str().unwrap(),
            "--bucket",
            "staging",
            "--output",
            "json",
            "--file",
            file.to_str().unwrap(),
        ];
        for tag in tags {
            args.extend(["--tag", tag]);
        }
        let out = bucketscan(&args);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|err| panic!("{err}: {}{}", stdout(&out), stderr(&out)))
    };
    // Infected, with a forged clean result among its tags: the dry run
    // records the real result, quarantines, publishes, then deletes — in
    // the agent's order.
    let report = run(&eicar, &["bucketscan-result=clean", "team=finance"]);
    assert_eq!(report["result"], "infected");
    let host: Vec<&str> = report["host_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        host,
        [
            "would remove result tags on s3://staging/eicar.txt that no agent wrote",
            "would tag s3://staging/eicar.txt bucketscan-result=infected",
            "would publish `infected` to arn:aws:sns:us-east-1:123456789012:results",
            "would delete s3://staging/eicar.txt (after the result was published)",
        ],
        "{report:#}"
    );
    let tags = report["tags"]["tags"].as_array().unwrap();
    assert!(tags.contains(&serde_json::json!(["team", "finance"])), "{tags:?}");
    assert!(
        !tags.contains(&serde_json::json!(["bucketscan-result", "clean"])),
        "{tags:?}"
    );
    let quarantine = &report["stages"][2]["actions"][0];
    assert_eq!(
        quarantine,
        "would copy s3://staging/eicar.txt -> s3://quarantine/staging/eicar.txt; the source is deleted once the result is published"
    );
    assert_eq!(report["outcome"]["status"], "done");

    // clamd down: an error, which the agent would record and retry, with no
    // action run — the dry run says the same.
    let down = agent_pipeline(&format!("127.0.0.1:{}", bucketscan_tests::free_port()), dir.path());
    let out = bucketscan(&[
        "plugin",
        "run",
        "--config",
        down.to_str().unwrap(),
        "--bucket",
        "staging",
        "--file",
        eicar.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("would tag s3://staging/eicar.txt bucketscan-result=error"),
        "{text}"
    );
    assert!(text.contains("not settled (an agent would retry)"), "{text}");
    assert!(text.contains("not applicable"), "{text}");
    assert!(
        !text.contains("would copy") && !text.contains("would publish"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_network_names_the_endpoint_this_machine_cannot_reach() {
    let world = bucketscan_tests::agent::World::new().await;
    let config = world.config("127.0.0.1:9", "");
    let check = |extra: &[(&str, String)]| {
        Command::new(bucketscan_bin())
            .args(["check", "--config", config.to_str().unwrap(), "--network"])
            .args(["--network-timeout-secs", "5"])
            .envs(world.env())
            .envs(extra.iter().map(|(k, v)| (*k, v.clone())))
            .output()
            .unwrap()
    };
    let out = check(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for line in [
        "sts       GetCallerIdentity",
        "sqs       GetQueueAttributes",
        "sns       GetTopicAttributes",
        "s3        HeadBucket staging",
    ] {
        assert!(
            text.contains(&format!("ok                     {line}")),
            "{line}:\n{text}"
        );
    }

    // SQS behind an endpoint nothing answers on, as in a private subnet
    // without its interface endpoint: named, and the check fails.
    let nowhere = format!("http://127.0.0.1:{}", bucketscan_tests::free_port());
    let out = check(&[("AWS_ENDPOINT_URL_SQS", nowhere.clone())]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "UNREACHABLE            sqs       GetQueueAttributes {}",
            world.queue_url
        )),
        "{text}"
    );
    assert!(text.contains(&format!("via {nowhere}")), "{text}");
    assert!(text.contains("cannot reach sqs: in private subnets"), "{text}");
    assert!(
        text.contains("ok                     s3        HeadBucket staging"),
        "{text}"
    );
}
