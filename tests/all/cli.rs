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
        text.contains("plugin clamav-bridge: inspector clamav-bridge@0.1.0, contract 0.1.1, imports [clamav]"),
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
    assert_eq!(json["contract"], "bucketscan:plugin@0.1.1");
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
