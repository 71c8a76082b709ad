//! The agent end to end: S3 events from moto's S3 through SQS, real clamd,
//! real plugin components, results back on S3 and SNS.
//!
//! (Long by design: one test per agent behaviour, each independent; the
//! shared world lives in `tests/support/agent.rs`.)

use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World, wait_until};
use bucketscan_tests::signatures::{self, test_database};
use bucketscan_tests::{clamd, free_port, samples};
use std::time::Duration;
use std::time::SystemTime;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn eicar_uploaded_to_staging_ends_in_quarantine_with_tags() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    world
        .put(
            "uploads/eicar.txt",
            samples::eicar(),
            Some("text/plain"),
            &[],
            &[("team", "finance")],
        )
        .await;

    let quarantined = "staging/uploads/eicar.txt";
    world.wait_for(QUARANTINE, quarantined, WITHIN, &agent).await;
    let tags = world.tags(QUARANTINE, quarantined).await;
    let tag = |name: &str| tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(tag("bucketscan-result"), Some("infected"), "{tags:?}");
    assert_eq!(tag("bucketscan-signature"), Some("Eicar-Test-Signature.UNOFFICIAL"));
    assert_eq!(tag("team"), Some("finance"), "the object's own tags are kept");
    assert!(tag("bucketscan-engine").unwrap().starts_with("ClamAV"));
    assert_eq!(tag("bucketscan-quarantine"), Some("move"));
    // Moved out of staging (the delete comes after the alert).
    world.wait_gone(STAGING, "uploads/eicar.txt", WITHIN, &agent).await;
    assert!(!world.exists(PRODUCTION, "uploads/eicar.txt").await, "never promoted");

    let notifications = world.notifications().await;
    let infected = notifications
        .iter()
        .find(|n| n["MessageAttributes"]["scan-result"]["Value"] == "infected")
        .unwrap_or_else(|| panic!("no infected notification in {notifications:?}"));
    assert_eq!(infected["MessageAttributes"]["bucket"]["Value"], STAGING);
    let body: serde_json::Value = serde_json::from_str(infected["Message"].as_str().unwrap()).unwrap();
    assert_eq!(body["key"], "uploads/eicar.txt");
    assert_eq!(body["findings"][0]["signature"], "Eicar-Test-Signature.UNOFFICIAL");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_file_ends_in_production_with_its_metadata_and_tags() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    let key = "reports/Q3 résumé+final.txt";
    world
        .put(
            key,
            samples::clean_text(),
            Some("text/plain"),
            &[("owner", "alice")],
            &[("team", "finance")],
        )
        .await;
    world.wait_for(PRODUCTION, key, WITHIN, &agent).await;

    let head = world
        .aws
        .s3
        .head_object()
        .bucket(PRODUCTION)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.metadata().unwrap().get("owner").map(String::as_str), Some("alice"));
    assert_eq!(world.tag(PRODUCTION, key, "team").await.as_deref(), Some("finance"));
    assert_eq!(
        world.tag(PRODUCTION, key, "bucketscan-result").await.as_deref(),
        Some("clean")
    );
    assert_eq!(
        world.tag(STAGING, key, "bucketscan-result").await.as_deref(),
        Some("clean")
    );
    assert!(!world.exists(QUARANTINE, &format!("staging/{key}")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_keeps_its_tags_when_promoted() {
    let etag = multipart_upload_is_promoted_with_its_tags("").await;
    assert!(
        !etag.contains('-'),
        "below the threshold the copy is one CopyObject: {etag}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_above_the_threshold_use_upload_part_copy_and_keep_tags() {
    // The same object, with the single-copy limit lowered from 5 GiB to
    // 5 MiB so the UploadPartCopy path runs on a small object. (Staging is
    // versioned here: a copy in parts has no SHA-256 of the whole object to
    // check, so its source must be pinned by a version — see
    // `an_unversioned_object_copied_in_parts_is_not_promoted_unchecked`.)
    let etag = multipart_upload_is_promoted_with_its_tags(
        "multipart-copy-threshold-bytes = 5242880\nmultipart-copy-part-bytes = 5242880\n",
    )
    .await;
    assert!(etag.ends_with("-2\""), "a two-part copy has a two-part ETag: {etag}");
}

/// Uploads a two-part object to staging, waits for its promotion, checks
/// tags and size, and returns the production copy's ETag.
async fn multipart_upload_is_promoted_with_its_tags(agent_settings: &str) -> String {
    let world = World::new().await;
    world.version(STAGING).await;
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\n{agent_settings}"));
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);
    let key = "big/multipart.txt";
    // Two parts: 5 MiB (S3's minimum for all but the last) and a small tail.
    let first = vec![b'a'; 5 << 20];
    let tail = samples::clean_text();
    world.put_multipart(key, &[&first, &tail], Some("team=finance")).await;
    world.wait_for(PRODUCTION, key, WITHIN, &agent).await;
    assert_eq!(world.tag(PRODUCTION, key, "team").await.as_deref(), Some("finance"));
    assert_eq!(
        world.tag(PRODUCTION, key, "bucketscan-result").await.as_deref(),
        Some("clean")
    );
    let head = world
        .aws
        .s3
        .head_object()
        .bucket(PRODUCTION)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some((first.len() + tail.len()) as i64));
    head.e_tag().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unversioned_object_copied_in_parts_is_not_promoted_unchecked() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[agent]\n",
        "[agent]\nmultipart-copy-threshold-bytes = 5242880\nmultipart-copy-part-bytes = 5242880\n",
    );
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);
    let first = vec![b'a'; 5 << 20];
    world
        .put_multipart("big/unchecked.txt", &[&first, &samples::clean_text()], None)
        .await;
    let deadline = std::time::Instant::now() + WITHIN;
    while !agent.log().contains("turn on versioning for this bucket") {
        assert!(std::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The event comes back and each attempt copies and removes again:
    // stop the agent (an attempt in flight finishes) before looking.
    let mut agent = agent;
    agent.terminate(Duration::from_secs(30)).expect("exits");
    assert!(
        !world.exists(PRODUCTION, "big/unchecked.txt").await,
        "the unchecked copy was removed:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disguised_executable_is_blocked_and_quarantined() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    world.put("invoice.pdf", exe, Some("application/pdf"), &[], &[]).await;
    world.wait_for(QUARANTINE, "staging/invoice.pdf", WITHIN, &agent).await;
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/invoice.pdf", "bucketscan-result")
            .await
            .as_deref(),
        Some("blocked")
    );
    assert!(!world.exists(PRODUCTION, "invoice.pdf").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_and_deleted_objects_do_not_stop_the_agent() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&world.queue_url)
        .message_body("this is not JSON")
        .send()
        .await
        .unwrap();
    let gone = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"staging"},"object":{"key":"never%20existed.txt","size":3}}}]}"#;
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&world.queue_url)
        .message_body(gone)
        .send()
        .await
        .unwrap();
    world.put("after.txt", samples::clean_text(), None, &[], &[]).await;
    world.wait_for(PRODUCTION, "after.txt", WITHIN, &agent).await;
    let log = agent.log();
    assert!(log.contains("not an S3 event: invalid JSON"), "{log}");
    assert!(log.contains("s3://staging/never existed.txt no longer exists"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_clamd_down_nothing_is_promoted_or_acknowledged_until_it_returns() {
    let world = World::new().await;
    let port = free_port();
    let agent = world.start_agent(&world.config(&format!("127.0.0.1:{port}"), ""));
    world.put("waiting.txt", samples::clean_text(), None, &[], &[]).await;

    // Not ready: the agent does not even receive the event, so it does
    // not burn its receive count on the way to the DLQ.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !world.exists(PRODUCTION, "waiting.txt").await,
        "promoted without a scan"
    );
    assert!(world.exists(STAGING, "waiting.txt").await, "nothing deleted");
    assert_eq!(world.tag(STAGING, "waiting.txt", "bucketscan-result").await, None);
    let (visible, in_flight) = world.queue_counts().await;
    assert!(
        visible >= 1 && in_flight == 0,
        "the event waits on the queue, unreceived: {visible} {in_flight}"
    );
    let log = agent.log();
    assert!(
        log.contains("not ready, not receiving: clamd") && log.contains("unreachable"),
        "{log}"
    );

    let _clamd = clamd::start_on(port, clamd::STREAM_MAX_BYTES).unwrap();
    world.wait_for(PRODUCTION, "waiting.txt", WITHIN, &agent).await;
    assert_eq!(
        world
            .tag(PRODUCTION, "waiting.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("clean")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_scan_loses_nothing() {
    let world = World::new().await;
    // A slow first stage keeps the object in flight long enough to kill
    // the agent while it holds the message.
    let config = world.slow_config(&clamd::shared().address());
    let mut first = world.start_agent(&config);
    world
        .put("slow/report.txt", samples::clean_text(), None, &[], &[])
        .await;
    let deadline = std::time::Instant::now() + WITHIN;
    while !first.log().contains("slow/report.txt") || world.queue_depth().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never picked the message up:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill_hard();
    assert!(!world.exists(PRODUCTION, "slow/report.txt").await);

    let second = world.start_agent(&config);
    world.wait_for(PRODUCTION, "slow/report.txt", WITHIN, &second).await;
    // The message goes once the object is fully handled, just after the copy.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world.queue_depth().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the message was never deleted:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `bucketscan` with the local AWS server's environment.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_scans_existing_objects_and_skips_them_the_second_time() {
    let world = World::new().await;
    // Objects that were there before any agent: put them in production,
    // which has no notification, and sweep it with a scan-only pipeline.
    let extra = "[[buckets.production.stages]]\nplugin = \"clamav-bridge\"\ngrants = { clamav = true }\n";
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[buckets.production]\n", &format!("[buckets.production]\n{extra}"));
    std::fs::write(&config, text).unwrap();
    for (key, body) in [
        ("old/a.txt", samples::clean_text()),
        ("old/b.txt", samples::eicar()),
        ("other/c.txt", samples::clean_text()),
    ] {
        world
            .aws
            .s3
            .put_object()
            .bucket(PRODUCTION)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let sweep = |extra_args: &[&str]| {
        let mut args = vec![
            "scan",
            "--config",
            config.to_str().unwrap(),
            "s3://production/old/",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra_args);
        let out = world.cli(&args);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "{err}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        json
    };
    let first = sweep(&[]);
    assert_eq!(
        first["summary"],
        serde_json::json!({"clean": 1, "infected": 1}),
        "{first:#}"
    );
    assert_eq!(first["objects"][1]["detail"], "Eicar-Test-Signature.UNOFFICIAL");
    assert_eq!(
        world.tag(PRODUCTION, "old/a.txt", "bucketscan-result").await.as_deref(),
        Some("clean")
    );
    assert!(
        world
            .tag(PRODUCTION, "other/c.txt", "bucketscan-result")
            .await
            .is_none(),
        "outside the prefix"
    );

    let second = sweep(&[]);
    assert_eq!(second["summary"], serde_json::json!({"skipped": 2}), "{second:#}");
    let third = sweep(&["--rescan"]);
    assert_eq!(
        third["summary"],
        serde_json::json!({"clean": 1, "infected": 1}),
        "{third:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn protect_and_unprotect_touch_only_our_notification() {
    let world = World::new().await;
    // The production bucket already notifies someone else.
    let other_topic = world
        .aws
        .sns
        .create_topic()
        .name("someone-else")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    world
        .aws
        .s3
        .put_bucket_notification_configuration()
        .bucket(PRODUCTION)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .topic_configurations(
                    aws_sdk_s3::types::TopicConfiguration::builder()
                        .id("theirs")
                        .topic_arn(&other_topic)
                        .events(aws_sdk_s3::types::Event::from("s3:ObjectRemoved:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = world.cli(&[
        "protect",
        "--bucket",
        PRODUCTION,
        "--queue",
        &world.queue_url,
        "--prefix",
        "in/",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = world
        .aws
        .s3
        .get_bucket_notification_configuration()
        .bucket(PRODUCTION)
        .send()
        .await
        .unwrap();
    assert_eq!(config.topic_configurations().len(), 1, "theirs is kept");
    assert_eq!(config.queue_configurations().len(), 1);
    assert_eq!(config.queue_configurations()[0].id(), Some("bucketscan"));

    let out = world.cli(&["unprotect", "--bucket", PRODUCTION]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = world
        .aws
        .s3
        .get_bucket_notification_configuration()
        .bucket(PRODUCTION)
        .send()
        .await
        .unwrap();
    assert!(config.queue_configurations().is_empty(), "ours is gone");
    assert_eq!(
        config.topic_configurations()[0].id(),
        Some("theirs"),
        "theirs is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_uploaded_to_s3_makes_a_clean_sample_detected_without_restarts() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let extra = signatures::synced_config(&clamd, 1, 60);
    let agent = world.start_agent(&world.config(&clamd.address(), &extra));
    let sample = b"a file that becomes malware once the new signature is out\n".to_vec();
    world.put("before.txt", sample.clone(), None, &[], &[]).await;
    world.wait_for(PRODUCTION, "before.txt", WITHIN, &agent).await;

    // A new build of the database with one more signature.
    let line = format!("{}:{}:Bucketscan.Test.Update\n", md5_hex(&sample), sample.len());
    signatures::upload(&world, "clamav/daily.cud", test_database(2, SystemTime::now(), &line)).await;

    // clamd reloads in the background and the agent stops receiving until
    // it proved the new build is loaded: every copy uploaded after the
    // update is caught.
    let deadline = std::time::Instant::now() + WITHIN;
    for attempt in 0.. {
        assert!(
            std::time::Instant::now() < deadline,
            "never detected after the update:\n{}",
            agent.log()
        );
        let key = format!("after-{attempt}.txt");
        world.put(&key, sample.clone(), None, &[], &[]).await;
        let quarantined = format!("staging/{key}");
        loop {
            if world.exists(QUARANTINE, &quarantined).await {
                let signature = world.tag(QUARANTINE, &quarantined, "bucketscan-signature").await;
                assert_eq!(signature.as_deref(), Some("Bucketscan.Test.Update.UNOFFICIAL"));
                wait_until("the new build proven", &agent, || {
                    agent
                        .log()
                        .contains("clamd runs the synced signatures database=daily.cud version=2")
                });
                return;
            }
            if world.exists(PRODUCTION, &key).await {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no outcome for {key}:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_in_a_linked_account_is_scanned_through_its_role() {
    let world = World::new().await;
    // The linked account (222222222222 in moto) owns the bucket; only the
    // role's credentials see it in its bucket list.
    let role = "arn:aws:iam::222222222222:role/bucketscan-scan";
    let assumed = world.aws.sts_assume_role(role, "setup", "shared-secret").await;
    let linked = world.moto.s3_with(&assumed).await;
    linked.create_bucket().bucket("linked-uploads").send().await.unwrap();
    linked
        .put_object()
        .bucket("linked-uploads")
        .key("eicar.txt")
        .body(samples::eicar().into())
        .send()
        .await
        .unwrap();

    let extra = format!(
        "[buckets.linked-uploads]\nrole-arn = \"{role}\"\nexternal-id = \"shared-secret\"\n\
         [[buckets.linked-uploads.stages]]\nplugin = \"clamav-bridge\"\ngrants = {{ clamav = true }}\n"
    );
    let config = world.config(&clamd::shared().address(), &extra);
    let out = world.cli(&[
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://linked-uploads",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(json["summary"], serde_json::json!({"infected": 1}), "{json:#}");
    let tags = linked
        .get_object_tagging()
        .bucket("linked-uploads")
        .key("eicar.txt")
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "bucketscan-result" && t.value() == "infected")
    );

    // The agent got its credentials from STS for exactly that role, with
    // the external ID the trust policy asks for.
    assert!(
        world.moto.agent_assumed(role, "shared-secret"),
        "{:#?}",
        world.moto.state("sts")["AssumedRole"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_can_tag_in_place_or_delete_and_promotion_can_move() {
    for (mode, promote_move) in [("tag", true), ("delete", false)] {
        let world = World::new().await;
        let config = world.config(&clamd::shared().address(), "");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("mode = \"move\", bucket = \"quarantine\"", &format!("mode = \"{mode}\""))
            .replace(
                "settings = { bucket = \"production\" }\ngrants = { storage = [\"production\"] }",
                &format!(
                    "settings = {{ bucket = \"production\", delete-source = {promote_move} }}\ngrants = {{ storage = [\"production\", \"staging\"] }}"
                ),
            );
        std::fs::write(&config, text).unwrap();
        let agent = world.start_agent(&config);
        world.put("bad.txt", samples::eicar(), None, &[], &[]).await;
        world.put("good.txt", samples::clean_text(), None, &[], &[]).await;
        world.wait_for(PRODUCTION, "good.txt", WITHIN, &agent).await;
        // The copy shows up in production a moment before delete-source
        // removes the original: wait for the move to complete.
        let deadline = std::time::Instant::now() + WITHIN;
        while promote_move && world.exists(STAGING, "good.txt").await && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            world.exists(STAGING, "good.txt").await,
            !promote_move,
            "{mode}: delete-source={promote_move}"
        );

        let deadline = std::time::Instant::now() + WITHIN;
        loop {
            let done = match mode {
                "tag" => {
                    world.exists(STAGING, "bad.txt").await
                        && world.tag(STAGING, "bad.txt", "bucketscan-quarantine").await.as_deref() == Some("tag")
                }
                _ => !world.exists(STAGING, "bad.txt").await,
            };
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{mode}: no quarantine:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if mode == "tag" {
            assert_eq!(
                world.tag(STAGING, "bad.txt", "bucketscan-result").await.as_deref(),
                Some("infected")
            );
        }
        assert!(
            !world.exists(QUARANTINE, "staging/bad.txt").await,
            "{mode}: nothing moved"
        );
        assert!(!world.exists(PRODUCTION, "bad.txt").await);
    }
}
