//! The webhook plugin through the host's `http` capability, against a real
//! HTTP receiver on loopback that checks the HMAC signature itself.

use bucketscan_core::Verdict;
use bucketscan_core::grants::Grants;
use bucketscan_engine::PipelineStage;
use bucketscan_tests::agent::{QUARANTINE, World};
use bucketscan_tests::host::{TestHost, clamav_grant, object, stage, test_limits};
use bucketscan_tests::webhook::{Behaviour, Receiver, SECRET};
use bucketscan_tests::{clamd, free_port, samples};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The receivers listen on loopback: a private address, reachable only
/// with an explicit `http-private` grant.
fn http_grant() -> Grants {
    Grants {
        http: vec!["127.0.0.1".into()],
        http_private: vec!["127.0.0.0/8".parse().unwrap()],
        ..Grants::default()
    }
}

/// clamav-bridge, then the webhook posting to `urls` signed with SECRET.
async fn pipeline(host: &TestHost, settings: &[(&str, &str)]) -> Vec<PipelineStage> {
    let bridge = host.plugin("clamav_bridge").await;
    let webhook = host.plugin("webhook").await;
    let mut hook = stage(&webhook, settings, http_grant());
    hook.signing_secret = Some(Arc::from(SECRET.as_bytes()));
    vec![stage(&bridge, &[], clamav_grant()), hook]
}

fn webhook_stage(report: &bucketscan_core::report::ScanReport) -> &bucketscan_core::report::StageReport {
    report
        .stages
        .iter()
        .find(|s| s.plugin == "webhook")
        .expect("webhook stage ran")
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_a_signed_result_with_findings_and_timings() {
    let receiver = Receiver::start(Behaviour::default());
    let host = TestHost::with_clamd(test_limits());
    let stages = pipeline(&host, &[("url", &receiver.url("/scan"))]).await;
    let report = host
        .run(&stages, object("staging", "in/eicar.txt", samples::eicar(), None))
        .await;

    assert!(
        matches!(report.verdict, Verdict::Infected { .. }),
        "{:?}",
        report.verdict
    );
    assert!(report.actions_ok(), "{:?}", report.stages);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0]["signature_valid"], true,
        "the receiver verified the HMAC itself"
    );
    assert_eq!(requests[0]["headers"]["content-type"], "application/json");
    let body = &receiver.signed_bodies()[0];
    assert_eq!(body["bucket"], "staging");
    assert_eq!(body["key"], "in/eicar.txt");
    assert_eq!(body["verdict"], "infected");
    assert_eq!(body["findings"][0]["signature"], "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(body["timings"][0]["plugin"], "clamav_bridge");
    assert_eq!(body["timings"][0]["outcome"], "infected");
    assert!(body["timings"][0]["duration_us"].as_u64().unwrap() > 0);
    assert!(!body["agent"].as_str().unwrap().is_empty());
    assert_eq!(
        webhook_stage(&report).actions,
        vec![format!("webhook {}: 200", receiver.url("/scan"))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_is_retried_until_it_answers() {
    let receiver = Receiver::start(Behaviour {
        fail_first: 2,
        ..Behaviour::default()
    });
    let host = TestHost::with_clamd(test_limits());
    let stages = pipeline(&host, &[("url", &receiver.url("/")), ("attempts", "3")]).await;
    let report = host
        .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
        .await;

    assert_eq!(report.verdict, Verdict::Clean);
    assert_eq!(receiver.requests().len(), 3, "two 503s, then 200");
    assert_eq!(receiver.signed_bodies().len(), 3, "every attempt signed");
    assert!(
        webhook_stage(&report).actions[0].ends_with(": 200"),
        "{:?}",
        webhook_stage(&report)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_changes_nothing_unless_required() {
    let host = TestHost::with_clamd(test_limits());
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let stages = pipeline(&host, &[("url", &dead), ("attempts", "2"), ("timeout-ms", "500")]).await;
    let report = host
        .run(&stages, object("staging", "eicar", samples::eicar(), None))
        .await;
    assert!(matches!(report.verdict, Verdict::Infected { .. }), "the verdict stands");
    assert!(report.actions_ok(), "not required: handling goes on");
    let line = &webhook_stage(&report).actions[0];
    assert!(
        line.starts_with("webhook not delivered: POST") && line.contains("2 attempt(s)"),
        "{line}"
    );

    let stages = pipeline(&host, &[("url", &dead), ("attempts", "1"), ("required", "true")]).await;
    let report = host
        .run(&stages, object("staging", "eicar", samples::eicar(), None))
        .await;
    assert!(matches!(report.verdict, Verdict::Infected { .. }), "the verdict stands");
    assert!(!report.actions_ok(), "required: the object is retried later");
    let error = webhook_stage(&report).error.as_deref().unwrap();
    assert!(error.contains("required webhook not delivered"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_receiver_costs_at_most_its_timeouts() {
    let receiver = Receiver::start(Behaviour {
        delay_ms: 3000,
        ..Behaviour::default()
    });
    let host = TestHost::with_clamd(test_limits());
    let stages = pipeline(
        &host,
        &[("url", &receiver.url("/")), ("attempts", "2"), ("timeout-ms", "300")],
    )
    .await;
    let started = Instant::now();
    let report = host
        .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
        .await;
    let took = started.elapsed();
    assert_eq!(report.verdict, Verdict::Clean);
    assert!(report.actions_ok());
    assert!(
        webhook_stage(&report).actions[0].contains("timed out")
            || webhook_stage(&report).actions[0].contains("timeout"),
        "{:?}",
        webhook_stage(&report)
    );
    // 2 × 300 ms + one 200 ms backoff, far below the receiver's 3 s.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_addresses_and_redirects_are_never_reached() {
    let target = Receiver::start(Behaviour::default());
    let redirecting = Receiver::start(Behaviour {
        redirect_to: Some(target.url("/stolen")),
        ..Behaviour::default()
    });
    let host = TestHost::with_clamd(test_limits());
    let webhook = host.plugin("webhook").await;
    let grants = Grants {
        http: vec!["127.0.0.1".into(), "169.254.169.254".into(), "169.254.170.2".into()],
        // Even a grant of every network never reaches metadata addresses.
        http_private: vec!["0.0.0.0/0".parse().unwrap()],
        ..Grants::default()
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        &redirecting.url("/"),
    ] {
        let stages = vec![stage(&webhook, &[("url", url), ("required", "true")], grants.clone())];
        let report = host
            .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
            .await;
        let error = webhook_stage(&report).error.clone().unwrap_or_default();
        if url.contains("169.254") {
            assert!(
                error.contains("cloud metadata address; always refused"),
                "{url}: {error}"
            );
        } else {
            assert!(error.contains("answered 302"), "{url}: {error}");
        }
    }
    assert_eq!(redirecting.requests().len(), 1);
    assert!(target.requests().is_empty(), "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_outside_the_grant_ends_the_stage() {
    let receiver = Receiver::start(Behaviour::default());
    let host = TestHost::with_clamd(test_limits());
    let webhook = host.plugin("webhook").await;
    let url = receiver.url("/").replace("127.0.0.1", "localhost");
    let stages = vec![stage(&webhook, &[("url", &url)], http_grant())];
    let report = host
        .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
        .await;
    let error = webhook_stage(&report).error.clone().unwrap_or_default();
    assert!(error.contains("capability `http` not granted"), "{error}");
    assert!(receiver.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_posts_every_result_signed_from_a_secret_file() {
    let receiver = Receiver::start(Behaviour::default());
    let world = World::new().await;
    let secret = world.dir.path().join("webhook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let extra = format!(
        r#"
[plugins.webhook]
path = "{webhook}"
[[buckets.staging.stages]]
plugin = "webhook"
settings = {{ url = "{url}" }}
grants = {{ http = ["127.0.0.1"], http-private = ["127.0.0.0/8"] }}
signing-secret = {{ file = "{secret}" }}
"#,
        webhook = bucketscan_tests::component("webhook").display(),
        url = receiver.url("/bucketscan"),
        secret = secret.display(),
    );
    let agent = world.start_agent(&world.config(&clamd::shared().address(), &extra));
    world
        .put("a/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("a/clean.txt", b"just text".to_vec(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, "staging/a/eicar.txt", Duration::from_secs(60), &agent)
        .await;

    let requests = receiver.wait_for_requests(2, Duration::from_secs(60)).await;
    assert_eq!(requests.len(), 2, "{requests:?}\n{}", agent.log());
    let mut bodies = receiver.signed_bodies();
    assert_eq!(bodies.len(), 2, "both signed with the secret from the file");
    bodies.sort_by_key(|b| b["key"].as_str().unwrap().to_owned());
    assert_eq!(
        (bodies[0]["key"].as_str(), bodies[0]["verdict"].as_str()),
        (Some("a/clean.txt"), Some("clean"))
    );
    assert_eq!(
        (bodies[1]["key"].as_str(), bodies[1]["verdict"].as_str()),
        (Some("a/eicar.txt"), Some("infected"))
    );
    let plugins: Vec<&str> = bodies[1]["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(plugins, ["filetype-filter", "clamav-bridge", "promoter", "quarantine"]);
    assert!(bodies[1]["agent"].as_str().unwrap().contains('-'));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_name_is_resolved_and_checked_before_connecting() {
    // `localhost` goes through the host's guarded resolver (literal IPs do
    // not); it resolves to loopback, which this stage opted into, so the
    // post arrives. A name resolving to a metadata address is refused
    // there — covered by the resolver's unit tests, since no such name
    // resolves here.
    let receiver = Receiver::start(Behaviour::default());
    let host = TestHost::with_clamd(test_limits());
    let webhook = host.plugin("webhook").await;
    let grants = Grants {
        http: vec!["localhost".into()],
        http_private: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ..Grants::default()
    };
    let url = receiver.url("/named").replace("127.0.0.1", "localhost");
    let mut hook = stage(&webhook, &[("url", &url), ("required", "true")], grants);
    hook.signing_secret = Some(Arc::from(SECRET.as_bytes()));
    let report = host
        .run(&[hook], object("staging", "ok.txt", b"hello".to_vec(), None))
        .await;
    assert!(report.actions_ok(), "{:?}", report.stages);
    assert_eq!(receiver.signed_bodies().len(), 1);
    assert_eq!(receiver.requests()[0]["path"], "/named");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_name_that_resolves_to_a_private_address_is_refused_without_an_opt_in() {
    // The grant names the host, but not its network: a name whose DNS
    // answer turns out to be loopback (as a hijacked record would) and a
    // literal private address are both refused before any connection.
    let receiver = Receiver::start(Behaviour::default());
    let host = TestHost::with_clamd(test_limits());
    let webhook = host.plugin("webhook").await;
    let grants = Grants {
        http: vec!["localhost".into(), "127.0.0.1".into()],
        ..Grants::default()
    };
    for url in [
        receiver.url("/named").replace("127.0.0.1", "localhost"),
        receiver.url("/literal"),
    ] {
        let stages = vec![stage(&webhook, &[("url", &url), ("required", "true")], grants.clone())];
        let report = host
            .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
            .await;
        let error = webhook_stage(&report).error.clone().unwrap_or_default();
        assert!(error.contains("is a private address"), "{url}: {error}");
        assert!(
            !report.outcome.settles(),
            "a required webhook that could not post is retried"
        );
    }
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_streaming_an_endless_body_costs_the_agent_a_capped_read() {
    // The answer never ends; the host reads at most 64 KiB of it and hangs
    // up. Were the body read whole, the 20 s timeout would fail the stage.
    let receiver = Receiver::start(Behaviour {
        endless: true,
        ..Behaviour::default()
    });
    let host = TestHost::with_clamd(test_limits());
    let webhook = host.plugin("webhook").await;
    let settings = [
        ("url", receiver.url("/endless")),
        ("required", "true".into()),
        ("timeout-ms", "20000".into()),
        ("attempts", "1".into()),
    ];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stages = vec![stage(&webhook, &settings, http_grant())];
    let report = host
        .run(&stages, object("staging", "ok.txt", b"hello".to_vec(), None))
        .await;
    let stage = webhook_stage(&report);
    assert_eq!(stage.error, None, "{stage:?}");
    assert!(report.actions_ok(), "{:?}", report.stages);
    let sent = receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let sent = sent
        .iter()
        .find_map(|r| r["endless_sent"].as_u64())
        .expect("the receiver logs when it is cut off");
    assert!(
        sent < 1 << 30,
        "the receiver was cut off after {sent} bytes, long before its 8 GiB"
    );
}
