//! Failures between two steps of one object's handling: a request that
//! never answers, a caller that hangs up mid-scan, a shutdown while a job
//! runs. Each must end with the object contained and published — by the
//! next try, by the server that owns the scan, or by the agents the scan
//! was handed to — never dropped halfway.

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::recorder::Recorder;
use bucketscan_tests::{clamd, free_port, samples, wait_for_port};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);
const KEY: &str = "bsk_test-interrupted-key-0123456789abcdefghijkl";

fn with_agent_settings(config: &std::path::Path, settings: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\n{settings}\n"));
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_whose_request_never_answers_is_handled_by_the_next_try() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    // The first GET of the object hangs for good.
    recorder.set_faults(&[
        json!({"method": "GET", "path": "/staging/stall/report.txt", "no_query": "tagging",
                                 "stall": 600, "times": 1}),
    ]);
    let config = world.config(&clamd::shared().address(), "");
    with_agent_settings(&config, "object-timeout-secs = 3");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    world
        .put("stall/report.txt", samples::clean_text(), None, &[], &[])
        .await;
    world.wait_for(PRODUCTION, "stall/report.txt", WITHIN, &agent).await;
    assert!(!recorder.faulted().is_empty(), "the GET was stalled");
    assert!(agent.log().contains("object-timeout-secs"), "{}", agent.log());
}

/// Found by the soak: a GET that S3 holds without answering kept its object
/// until `object-timeout-secs` (an hour by default). The SDK's first-byte
/// timeout now gives up on it and retries, within the same try.
#[tokio::test]
async fn a_request_held_without_an_answer_is_retried_after_the_first_byte_timeout() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    recorder.set_faults(&[
        json!({"method": "GET", "path": "/staging/held/report.txt", "no_query": "tagging",
                                 "stall": 600, "times": 1}),
    ]);
    let config = world.config(&clamd::shared().address(), "");
    with_agent_settings(&config, "first-byte-timeout-secs = 11");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    world
        .put("held/report.txt", samples::clean_text(), None, &[], &[])
        .await;
    world.wait_for(PRODUCTION, "held/report.txt", WITHIN, &agent).await;
    assert_eq!(recorder.faulted().len(), 1, "the first GET was held");
    let gets = recorder
        .to_object(STAGING, "held/report.txt")
        .into_iter()
        .filter(|r| r["method"] == "GET" && !r["query"].as_str().unwrap_or_default().contains("tagging"))
        .count();
    assert!(gets >= 2, "held once, then fetched again: {gets} GETs");
    assert!(
        !agent.log().contains("object-timeout-secs"),
        "the object did not wait for its deadline: {}",
        agent.log()
    );
}

/// `bucketscan serve` in this world, through `recorder`, with one key and
/// a request timeout of 2 s.
fn serve(world: &World, recorder: &Recorder, stop_timeout_secs: u64) -> (AgentProcess, u16, std::path::PathBuf) {
    serve_with_env(world, recorder, stop_timeout_secs, &[])
}

fn serve_with_env(
    world: &World,
    recorder: &Recorder,
    stop_timeout_secs: u64,
    extra_env: &[(&str, &str)],
) -> (AgentProcess, u16, std::path::PathBuf) {
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(KEY.as_bytes()));
    let config = world.config(
        &clamd::shared().address(),
        &format!(
            "[serve]\nrequest-timeout-secs = 2\n[[serve.keys]]\nid = \"ops\"\nsha256 = \"{digest}\"\nbuckets = [\"staging\"]\n"
        ),
    );
    let port = free_port();
    let mut env = world.env();
    env.push(("AWS_ENDPOINT_URL".into(), recorder.endpoint()));
    env.extend(extra_env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    let api = world.spawn_agent(
        vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--stop-timeout-secs".into(),
            stop_timeout_secs.to_string(),
        ],
        env,
    );
    wait_for_port(port, WITHIN, "bucketscan serve");
    (api, port, config)
}

fn object_scan_request(port: u16, key: &str, prefer_async: bool) -> String {
    let body = json!({"bucket": "staging", "key": key}).to_string();
    let prefer = if prefer_async { "Prefer: respond-async\r\n" } else { "" };
    format!(
        "POST /v1/objects/scan HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n{prefer}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn published(world: &World, key: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let found = world.notifications().await.iter().any(|n| {
            let message = n["Message"].as_str().unwrap();
            let parsed = serde_json::from_str::<serde_json::Value>(message);
            parsed.unwrap_or_else(|err| panic!("{err}: {message}"))["key"] == key
        });
        if found {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_times_out_or_hangs_up_mid_scan_does_not_stop_it() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    // Publishing takes 5 s: the request times out (2 s) and the caller is
    // gone long before the alert goes.
    recorder.set_faults(&[json!({"method": "POST", "body": "Action=Publish", "delay": 5})]);
    let (api, port, _) = serve(&world, &recorder, 20);
    world.put("hangup/eicar.txt", samples::eicar(), None, &[], &[]).await;
    // Answered 504 while the scan waits on SNS...
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(object_scan_request(port, "hangup/eicar.txt", false).as_bytes())
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).ok();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    // ...and a second caller hangs up mid-scan.
    world.put("hangup/eicar-2.txt", samples::eicar(), None, &[], &[]).await;
    {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(object_scan_request(port, "hangup/eicar-2.txt", false).as_bytes())
            .unwrap();
        // Long enough for the scan to tag the object and reach the publish.
        std::thread::sleep(Duration::from_millis(1500));
    } // hung up
    for key in ["hangup/eicar.txt", "hangup/eicar-2.txt"] {
        world
            .wait_for(QUARANTINE, &format!("staging/{key}"), Duration::from_secs(30), &api)
            .await;
        assert!(published(&world, key, Duration::from_secs(30)).await, "{}", api.log());
        // The move's second half, which comes only after the alert: done.
        world.wait_gone(STAGING, key, Duration::from_secs(30), &api).await;
    }
    assert!(!recorder.faulted().is_empty(), "the publish was delayed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_on_demand_scan_whose_move_fails_answers_with_what_it_found() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    // Every write into the quarantine fails; the SDK does not retry.
    recorder.set_faults(&[json!({"method": "PUT", "path": "/quarantine/", "status": 500, "code": "InternalError"})]);
    let (api, port, _) = serve_with_env(&world, &recorder, 20, &[("AWS_MAX_ATTEMPTS", "1")]);
    world
        .put("failed-move/eicar.txt", samples::eicar(), None, &[], &[])
        .await;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(object_scan_request(port, "failed-move/eicar.txt", false).as_bytes())
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).ok();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}\n{}", api.log());
    let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "not_finished", "{body:#}");
    // What the pass found and did before the move failed travels with it.
    let report = &body["report"];
    assert_eq!(report["result"], "infected", "{body:#}");
    assert_eq!(report["outcome"]["status"], "retry", "{body:#}");
    assert_eq!(report["key"], "failed-move/eicar.txt");
    // Nothing was lost: the object is where it was, and the alert went out.
    assert!(!recorder.faulted().is_empty(), "the copy failed");
    assert!(
        published(&world, "failed-move/eicar.txt", WITHIN).await,
        "{}",
        api.log()
    );
    assert!(world.exists(STAGING, "failed-move/eicar.txt").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_hands_unfinished_scans_to_the_agents() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    // SNS hangs: the job cannot finish before the server's stop timeout.
    recorder.set_faults(&[json!({"method": "POST", "body": "Action=Publish", "stall": 600})]);
    let (mut api, port, config) = serve(&world, &recorder, 2);
    world.put("shutdown/eicar.txt", samples::eicar(), None, &[], &[]).await;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(object_scan_request(port, "shutdown/eicar.txt", true).as_bytes())
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = std::io::Read::read(&mut stream, &mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = api.terminate(Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{}", api.log());
    assert!(api.log().contains("handed to"), "{}", api.log());

    // The agents take it from the queue and finish it.
    recorder.set_faults(&[]);
    let agent = world.start_agent(&config);
    world
        .wait_for(QUARANTINE, "staging/shutdown/eicar.txt", WITHIN, &agent)
        .await;
    assert!(published(&world, "shutdown/eicar.txt", WITHIN).await, "{}", agent.log());
}
