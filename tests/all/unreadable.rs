//! Objects S3 will not hand over, and keys S3 will not take: each gets one
//! answer — tagged, published once, acknowledged — instead of a retry loop
//! into the dead-letter queue that an uploader could fill at will.
//!
//! The local server enforces none of it (SSE-C, KMS grants, the 1024-byte
//! key limit), so the recording proxy answers as S3 does; a GLACIER
//! object's GET is refused by the local server itself.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::recorder::Recorder;
use bucketscan_tests::{clamd, samples};
use serde_json::json;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);

async fn result_tags(world: &World, key: &str, agent: &bucketscan_tests::agent::AgentProcess) -> Vec<(String, String)> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let tags = world.tags(STAGING, key).await;
        if tags.iter().any(|(k, _)| k == "bucketscan-result") {
            return tags;
        }
        assert!(Instant::now() < deadline, "no result on {key}:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_s3_will_not_hand_over_get_one_answer_not_a_dead_letter_queue() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    recorder.set_faults(&[
        // SSE-C: GET and HEAD without the customer's key are refused.
        json!({"method": "GET", "path": "/staging/sse-c/", "no_query": "tagging", "status": 400,
               "code": "InvalidRequest", "message": "The object was stored using a form of Server Side Encryption. \
               The correct parameters must be provided to retrieve the object."}),
        json!({"method": "HEAD", "path": "/staging/sse-c/", "status": 400}),
        // A KMS key the agent's role may not use.
        json!({"method": "GET", "path": "/staging/kms/", "no_query": "tagging", "status": 403, "code": "AccessDenied",
               "message": "User is not authorized to perform: kms:Decrypt"}),
    ]);
    let config = world.config(&clamd::shared().address(), "");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);

    world.put("sse-c/secret.txt", samples::eicar(), None, &[], &[]).await;
    world.put("kms/report.txt", samples::clean_text(), None, &[], &[]).await;
    world
        .aws
        .s3
        .put_object()
        .bucket(STAGING)
        .key("archive/old.txt")
        .storage_class(StorageClass::Glacier)
        .body(ByteStream::from(samples::clean_text()))
        .send()
        .await
        .unwrap();

    for (key, reason) in [
        ("sse-c/secret.txt", "customer-key"),
        ("kms/report.txt", "access-denied"),
    ] {
        let tags = result_tags(&world, key, &agent).await;
        assert_eq!(tag(&tags, "bucketscan-result"), Some("unscannable"), "{key}: {tags:?}");
        assert_eq!(tag(&tags, "bucketscan-signature"), Some(reason), "{key}: {tags:?}");
    }
    // Acknowledged: the queue drains, nothing goes to the DLQ, and each
    // object was published exactly once.
    let deadline = Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(Instant::now() < deadline, "events still on the queue:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each was published exactly once, with its reason (the local server
    // refuses to show an archived object's tags: its notification does).
    let notes: Vec<serde_json::Value> = world
        .notifications()
        .await
        .iter()
        .map(|n| serde_json::from_str(n["Message"].as_str().unwrap()).unwrap())
        .collect();
    for (key, reason) in [
        ("sse-c/secret.txt", "customer-key"),
        ("kms/report.txt", "access-denied"),
        ("archive/old.txt", "archived"),
    ] {
        let published: Vec<&serde_json::Value> = notes.iter().filter(|n| n["key"] == key).collect();
        assert_eq!(published.len(), 1, "{key} published {} times", published.len());
        assert_eq!(published[0]["result"], "unscannable", "{key}");
        assert_eq!(published[0]["verdict"]["reason"], reason, "{key}");
        assert!(!world.exists(PRODUCTION, key).await, "{key} was promoted");
    }
    assert!(world.drain(&world.dlq_url).await.is_empty());
    assert!(!recorder.faulted().is_empty(), "the faults were injected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_too_long_to_quarantine_is_quarantined_under_a_shorter_one_and_released_back() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    let config = world.config(&clamd::shared().address(), "");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    // 1020 bytes: a valid S3 key; `staging/` in front of it is not.
    let key = format!("long/{}.txt", "k".repeat(1011));
    assert_eq!(key.len(), 1020);
    let eicar = samples::eicar();
    world.put(&key, eicar.clone(), None, &[], &[]).await;

    let deadline = Instant::now() + WITHIN;
    let quarantined = loop {
        let listed = world.aws.s3.list_objects_v2().bucket(QUARANTINE).send().await.unwrap();
        if let Some(found) = listed.contents().iter().filter_map(|o| o.key()).next() {
            break found.to_owned();
        }
        assert!(Instant::now() < deadline, "never quarantined:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(quarantined.len() <= 1024, "{}", quarantined.len());
    assert!(quarantined.starts_with("staging/long/kkk"), "{quarantined}");
    world.wait_gone(STAGING, &key, WITHIN, &agent).await;
    assert_eq!(
        world
            .tag(QUARANTINE, &quarantined, "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    // `quarantine list` names the full source; `release` puts it back there.
    let listed = world.cli(&[
        "quarantine",
        "list",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let held = &listed.as_array().unwrap()[0];
    assert_eq!(held["source"], format!("s3://staging/{key}"), "{held}");
    let sha256 = held["sha256"].as_str().unwrap().to_owned();
    let released = world.cli(&[
        "release",
        "--config",
        config.to_str().unwrap(),
        &format!("s3://{QUARANTINE}/{quarantined}"),
        "--reason",
        "test sample",
        "--sha256",
        &sha256,
    ]);
    assert!(
        released.status.success(),
        "{}{}",
        String::from_utf8_lossy(&released.stdout),
        String::from_utf8_lossy(&released.stderr)
    );
    assert_eq!(world.body(STAGING, &key).await, eicar, "back under its own key");
}
