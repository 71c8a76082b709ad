//! The clamav-bridge plugin against a real clamd.

use bucketscan_core::{UnscannableReason, Verdict};
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::{clamd, free_port, samples};

fn signature(verdict: &Verdict) -> String {
    verdict
        .findings()
        .iter()
        .map(|f| f.signature.clone())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn eicar_generated_at_test_time_is_infected() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let report = host
        .run(
            &[stage(&bridge, &[], clamav_grant())],
            object("staging", "eicar.com", samples::eicar(), None),
        )
        .await;
    assert_eq!(report.result(), "infected", "{report:#?}");
    assert_eq!(signature(&report.verdict), "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(report.findings()[0].engine, "clamav");
    let engine = report.stages[0].engine_version.as_deref().unwrap();
    assert!(engine.starts_with("ClamAV "), "{engine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clamav_testfiles_sample_is_infected_also_inside_a_zip() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    for name in ["clam.exe", "clam.zip"] {
        let bytes = std::fs::read(samples::clamav_testfile(name)).unwrap();
        let report = host
            .run(
                &[stage(&bridge, &[], clamav_grant())],
                object("staging", name, bytes, None),
            )
            .await;
        assert_eq!(report.result(), "infected", "{name}: {report:#?}");
        assert_eq!(signature(&report.verdict), "Clamav.Test.File.UNOFFICIAL", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_files_are_clean() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(std::iter::repeat_n(7u8, 4096));
    for (key, bytes) in [
        ("notes.txt", samples::clean_text()),
        ("pixel.png", png),
        ("empty", Vec::new()),
    ] {
        let report = host
            .run(
                &[stage(&bridge, &[], clamav_grant())],
                object("staging", key, bytes, None),
            )
            .await;
        assert_eq!(report.verdict, Verdict::Clean, "{key}: {report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clamd_unreachable_is_an_error_never_clean() {
    let host = TestHost::new(test_limits(), &format!("127.0.0.1:{}", free_port()));
    let bridge = host.plugin("clamav_bridge").await;
    let report = host
        .run(
            &[stage(&bridge, &[], clamav_grant())],
            object("staging", "notes.txt", samples::clean_text(), None),
        )
        .await;
    match &report.verdict {
        Verdict::Error { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_over_the_stream_limit_are_unscannable_not_clean() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let big = vec![b'a'; clamd::STREAM_MAX_BYTES as usize + 1];
    let report = host
        .run(
            &[stage(&bridge, &[], clamav_grant())],
            object("staging", "big.txt", big, None),
        )
        .await;
    assert!(
        matches!(
            report.verdict,
            Verdict::Unscannable {
                reason: UnscannableReason::TooLarge,
                ..
            }
        ),
        "{:?}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_size_policy_skips_the_scan_and_says_so() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let report = host
        .run(
            &[stage(&bridge, &[("max-size", "1KB")], clamav_grant())],
            object(
                "staging",
                "eicar-in-big.txt",
                [samples::eicar(), vec![b' '; 2048]].concat(),
                None,
            ),
        )
        .await;
    match &report.verdict {
        Verdict::Unscannable {
            reason: UnscannableReason::TooLarge,
            detail,
        } => {
            assert!(detail.contains("max-size of 1024 bytes"), "{detail}")
        }
        other => panic!("expected unscannable, got {other:?}"),
    }
    assert!(
        report.stages[0].engine_version.is_none(),
        "clamd must not have been asked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_archives_are_unscannable_by_default() {
    // A zip whose only entry has the "encrypted" flag set: clamd raises
    // Heuristics.Encrypted.Zip with AlertEncrypted.
    let zip = samples::encrypted_zip();
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let report = host
        .run(
            &[stage(&bridge, &[], clamav_grant())],
            object("staging", "secret.zip", zip.clone(), None),
        )
        .await;
    match &report.verdict {
        Verdict::Unscannable {
            reason: UnscannableReason::Encrypted,
            detail,
        } => {
            assert!(detail.contains("Heuristics.Encrypted"), "{detail}")
        }
        other => panic!("expected unscannable (encrypted), got {other:?}"),
    }
    let report = host
        .run(
            &[stage(&bridge, &[("encrypted", "blocked")], clamav_grant())],
            object("staging", "secret.zip", zip, None),
        )
        .await;
    assert_eq!(report.result(), "blocked", "{:?}", report.verdict);
}

/// A minimal zip with one "encrypted" stored entry (ZipCrypto flag set).

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_signature_gate_makes_objects_unscannable_never_clean() {
    use bucketscan_engine::clamd::SignatureGate;
    use bucketscan_engine::config::ClamavConfig;
    use bucketscan_engine::{Clamd, Services};
    use std::sync::{Arc, Mutex};

    /// A gate a test opens and closes.
    struct Gate(Mutex<Result<(), String>>);
    impl SignatureGate for Gate {
        fn check(&self) -> Result<(), bucketscan_engine::clamd::Untrusted> {
            self.0
                .lock()
                .unwrap()
                .clone()
                .map_err(bucketscan_engine::clamd::Untrusted)
        }
    }

    let gate = Arc::new(Gate(Mutex::new(Err("the newest database was built 240 h ago".into()))));
    let mut host = TestHost::with_clamd(test_limits());
    let clamd = Clamd::new(&ClamavConfig {
        address: clamd::shared().address(),
        ..ClamavConfig::default()
    })
    .with_gate(gate.clone());
    host.services = Arc::new(Services::new(clamd));
    let bridge = host.plugin("clamav_bridge").await;
    let stages = [stage(&bridge, &[], clamav_grant())];
    let report = host
        .run(&stages, object("staging", "eicar.txt", samples::eicar(), None))
        .await;
    match &report.verdict {
        Verdict::Unscannable {
            reason: UnscannableReason::StaleSignatures,
            detail,
        } => assert!(detail.contains("240 h ago"), "{detail}"),
        other => panic!("closed gate: {other:?}"),
    }
    *gate.0.lock().unwrap() = Ok(());
    let report = host
        .run(&stages, object("staging", "eicar.txt", samples::eicar(), None))
        .await;
    assert_eq!(report.result(), "infected", "open gate: scanned");
}

#[tokio::test(flavor = "multi_thread")]
async fn md5_twins_are_told_apart_by_their_sha256() {
    let host = TestHost::with_clamd(test_limits());
    let bridge = host.plugin("clamav_bridge").await;
    let stages = [stage(&bridge, &[], clamav_grant())];
    let (clean, infected) = samples::md5_collision();
    let report = host.run(&stages, object("b", "twin-a", clean, None)).await;
    assert_eq!(report.result(), "clean", "{:?}", report.verdict);
    // clamd would answer the twin from its clean cache (keyed by MD5) if
    // the cache were on: the test clamd runs with `DisableCache yes`, as
    // deploy/clamd.conf does.
    let report = host.run(&stages, object("b", "twin-b", infected, None)).await;
    assert_eq!(report.result(), "infected", "{:?}", report.verdict);
}
