//! Attacks from outside the agent, end to end against the local AWS server
//! and clamd: what an uploader controls (bytes, key, tags, size, timing),
//! what a failing notification does, what a second agent sees. Each test
//! names the attack; each asserts containment — the infected bytes end
//! quarantined, the alert is published, no object holding unscanned or
//! infected bytes carries a clean result, nothing is lost.
//!
//! (Long by design: one catalogue of attacks, each test short and
//! independent, read top to bottom as the threat model.)

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::recorder::Recorder;
use bucketscan_tests::{clamd, samples};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);

/// A `slow/` prefix whose objects stay in flight about 3 s (a sleeping
/// first stage), then are scanned, promoted when clean and quarantined
/// otherwise.
fn slow_and_contained(world: &World) -> PathBuf {
    let slow = r#"
[[buckets.staging.prefixes]]
prefix = "slow/"
[[buckets.staging.prefixes.stages]]
plugin = "hostile"
settings = { behaviour = "sleep", sleep-ms = "3000" }
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.staging.prefixes.stages]]
plugin = "promoter"
on = ["clean"]
settings = { bucket = "production" }
grants = { storage = ["production"] }
[[buckets.staging.prefixes.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = { mode = "move", bucket = "quarantine" }
grants = { storage = ["quarantine", "staging"] }
"#;
    world.config(&clamd::shared().address(), slow)
}

/// Rewrites the `[agent]` section of `config` to start with `settings`.
fn with_agent_settings(config: &PathBuf, settings: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\n{settings}\n"));
    std::fs::write(config, text).unwrap();
}

async fn wait_for_log(agent: &AgentProcess, needle: &str) {
    let deadline = Instant::now() + WITHIN;
    while !agent.log().contains(needle) {
        assert!(Instant::now() < deadline, "`{needle}` never logged:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the sleeping first stage of the `slow/` pipeline runs for
/// `key`: the agent has read the object's bytes by then.
async fn wait_until_read(agent: &AgentProcess, key: &str) {
    let deadline = Instant::now() + WITHIN;
    let needle = format!("key=\"{key}\"");
    while !agent
        .log()
        .lines()
        .any(|line| line.contains("sleeping") && line.contains(&needle))
    {
        assert!(Instant::now() < deadline, "{key} was never read:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The notification published for `key`, waiting for it.
async fn notification_for(world: &World, key: &str, agent: &AgentProcess) -> serde_json::Value {
    world
        .notifications_for(&[key], WITHIN, agent)
        .await
        .remove(key)
        .expect("found")
}

/// Percent-encodes everything but letters and digits (a tagging header).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn own_tags(n: usize) -> Vec<(String, String)> {
    (1..=n).map(|i| (format!("o{i}"), format!("v{i}"))).collect()
}

fn as_refs(tags: &[(String, String)]) -> Vec<(&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infected_upload_with_a_full_tag_set_and_a_forged_clean_result_is_quarantined_and_alerted() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    // Ten tags, S3's maximum: eight of its own and two forged results.
    let mut tags = own_tags(8);
    tags.push(("bucketscan-result".into(), "clean".into()));
    tags.push(("bucketscan-seal".into(), format!("s1-{}", "0".repeat(32))));
    world
        .put("attack/tags.txt", samples::eicar(), None, &[], &as_refs(&tags))
        .await;

    let quarantined = "staging/attack/tags.txt";
    world.wait_for(QUARANTINE, quarantined, WITHIN, &agent).await;
    let on_copy = world.tags(QUARANTINE, quarantined).await;
    let tag = |name: &str| on_copy.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(tag("bucketscan-result"), Some("infected"), "{on_copy:?}");
    assert_eq!(tag("bucketscan-signature"), Some("Eicar-Test-Signature.UNOFFICIAL"));
    assert!(
        tag("bucketscan-seal").is_some_and(|s| s.starts_with("w1-")),
        "{on_copy:?}"
    );
    assert_eq!(tag("bucketscan-quarantine"), Some("move"), "the plugin's tag is kept");
    assert_eq!(on_copy.len(), 10);
    // Own tags kept in order while they fit; the rest are named on the copy.
    for (k, v) in &own_tags(4) {
        assert_eq!(tag(k), Some(v.as_str()), "{on_copy:?}");
    }
    let head = world
        .aws
        .s3
        .head_object()
        .bucket(QUARANTINE)
        .key(quarantined)
        .send()
        .await
        .unwrap();
    let recorded = head.metadata().unwrap()["bucketscan-dropped-tags"].clone();
    assert_eq!(recorded, "o5=v5&o6=v6&o7=v7&o8=v8");

    world.wait_gone(STAGING, "attack/tags.txt", WITHIN, &agent).await;
    assert!(!world.exists(PRODUCTION, "attack/tags.txt").await, "never promoted");
    let alert = notification_for(&world, "attack/tags.txt", &agent).await;
    assert_eq!(alert["result"], "infected");
    let dropped: Vec<String> = alert["dropped_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dropped, ["o6", "o7", "o8", "o5"], "{alert:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_upload_whose_own_tags_fill_every_slot_is_held_not_promoted_and_reported() {
    let world = World::new().await;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), ""));
    let tags = own_tags(10);
    world
        .put("attack/full.txt", samples::clean_text(), None, &[], &as_refs(&tags))
        .await;

    let alert = notification_for(&world, "attack/full.txt", &agent).await;
    assert_eq!(alert["result"], "clean");
    let held = alert["held"].as_str().unwrap();
    assert!(held.contains("10 tags of its own"), "{held}");
    assert!(!world.exists(PRODUCTION, "attack/full.txt").await, "held: not promoted");
    assert_eq!(
        world.tags(STAGING, "attack/full.txt").await,
        tags,
        "its own tags are untouched"
    );
    wait_for_log(&agent, "held: the object has 10 tags of its own").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_clean_result_is_removed_before_the_scan_and_never_seen_again() {
    let world = World::new().await;
    let agent = world.start_agent(&slow_and_contained(&world));
    world
        .put(
            "slow/forged.txt",
            samples::eicar(),
            None,
            &[],
            &[("bucketscan-result", "clean"), ("team", "x")],
        )
        .await;
    wait_until_read(&agent, "slow/forged.txt").await;
    // While the (slow) scan runs, the forged result is already gone.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let tags = world.tags(STAGING, "slow/forged.txt").await;
        if !tags.iter().any(|(k, _)| k == "bucketscan-result") {
            assert!(tags.contains(&("team".into(), "x".into())), "other tags stay: {tags:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the forged result is still there: {tags:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world
        .wait_for(QUARANTINE, "staging/slow/forged.txt", WITHIN, &agent)
        .await;
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/slow/forged.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overwrite_during_the_scan_is_never_tagged_promoted_or_deleted_as_the_scanned_bytes() {
    let world = World::new().await;
    let agent = world.start_agent(&slow_and_contained(&world));
    // A clean upload; while it is scanned, the same key gets EICAR.
    world.put("slow/swap.txt", samples::clean_text(), None, &[], &[]).await;
    wait_until_read(&agent, "slow/swap.txt").await;
    world.put("slow/swap.txt", samples::eicar(), None, &[], &[]).await;

    world
        .wait_for(QUARANTINE, "staging/slow/swap.txt", WITHIN, &agent)
        .await;
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/slow/swap.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    // Give both events time to settle, then: the clean scan promoted
    // nothing (its bytes were gone), and no clean result sits on EICAR.
    let deadline = Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(Instant::now() < deadline, "events left:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!world.exists(PRODUCTION, "slow/swap.txt").await, "{}", agent.log());
    if world.exists(STAGING, "slow/swap.txt").await {
        assert_ne!(
            world
                .tag(STAGING, "slow/swap.txt", "bucketscan-result")
                .await
                .as_deref(),
            Some("clean")
        );
    }
    assert!(
        agent.log().contains("was overwritten during its scan"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_md5_twin_swapped_in_during_the_scan_is_never_promoted() {
    // Two files with one MD5 — one S3 ETag — on an unversioned bucket: the
    // clean one is scanned, its infected twin replaces it before the
    // promotion. The ETag conditions cannot tell them apart; the SHA-256
    // of the copy can.
    let world = World::new().await;
    let agent = world.start_agent(&slow_and_contained(&world));
    let (clean, infected) = samples::md5_collision();
    world.put("slow/twin", clean, None, &[], &[]).await;
    wait_until_read(&agent, "slow/twin").await;
    world.put("slow/twin", infected.clone(), None, &[], &[]).await;

    world.wait_for(QUARANTINE, "staging/slow/twin", WITHIN, &agent).await;
    let deadline = Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(Instant::now() < deadline, "events left:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !world.exists(PRODUCTION, "slow/twin").await,
        "the twin was promoted:\n{}",
        agent.log()
    );
    let quarantined = world
        .aws
        .s3
        .get_object()
        .bucket(QUARANTINE)
        .key("staging/slow/twin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        quarantined.body.collect().await.unwrap().into_bytes().as_ref(),
        infected.as_slice()
    );
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/slow/twin", "bucketscan-signature")
            .await
            .as_deref(),
        Some("Bucketscan.Test.Md5Collision.UNOFFICIAL")
    );
    assert!(agent.log().contains("are not the bytes scanned"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_event_still_gets_what_the_key_holds_now_checked() {
    // A bucket without notifications, so only the test's events arrive:
    // EICAR sits there with a forged clean result, and the only event names
    // bytes the key no longer holds. The agent scans what is there.
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket("quiet").send().await.unwrap();
    let extra = r#"
[buckets.quiet]
[[buckets.quiet.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.quiet.stages]]
plugin = "quarantine"
on = ["infected"]
settings = { mode = "move", bucket = "quarantine" }
grants = { storage = ["quarantine", "quiet"] }
"#;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), extra));
    world
        .aws
        .s3
        .put_object()
        .bucket("quiet")
        .key("doc.txt")
        .body(samples::eicar().into())
        .tagging("bucketscan-result=clean")
        .send()
        .await
        .unwrap();
    let stale = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"quiet"},"object":{"key":"doc.txt","eTag":"00000000000000000000000000000000"}}}]}"#;
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&world.queue_url)
        .message_body(stale)
        .send()
        .await
        .unwrap();
    world.wait_for(QUARANTINE, "quiet/doc.txt", WITHIN, &agent).await;
    assert_eq!(
        world
            .tag(QUARANTINE, "quiet/doc.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_versioned_bucket_each_event_acts_on_its_own_version() {
    let world = World::new().await;
    let s3 = &world.aws.s3;
    // A versioned bucket without notifications: moto's events carry no
    // version ID, so the test sends them as S3 would.
    s3.create_bucket().bucket("vstaging").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("vstaging")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let extra = r#"
[buckets.vstaging]
[[buckets.vstaging.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.vstaging.stages]]
plugin = "promoter"
on = ["clean"]
settings = { bucket = "production" }
grants = { storage = ["production"] }
[[buckets.vstaging.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = { mode = "move", bucket = "quarantine" }
grants = { storage = ["quarantine", "vstaging"] }
"#;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), extra));
    let put = |bytes: Vec<u8>| async {
        let out = s3
            .put_object()
            .bucket("vstaging")
            .key("doc.txt")
            .body(bytes.into())
            .send()
            .await
            .unwrap();
        (
            out.version_id().unwrap().to_owned(),
            out.e_tag().unwrap().trim_matches('"').to_owned(),
        )
    };
    let clean = samples::clean_text();
    let (v1, e1) = put(clean.clone()).await;
    let (v2, e2) = put(samples::eicar()).await;
    // The SDK retries a PUT whose answer was lost, which leaves one more
    // version no event names: the agent must leave such versions alone.
    let versions_before = versions_of(s3, "vstaging").await;
    for (version, etag) in [(&v1, &e1), (&v2, &e2)] {
        let event = format!(
            r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"vstaging"}},"object":{{"key":"doc.txt","versionId":"{version}","eTag":"{etag}"}}}}}}]}}"#
        );
        world
            .aws
            .sqs
            .send_message()
            .queue_url(&world.queue_url)
            .message_body(event)
            .send()
            .await
            .unwrap();
    }

    world.wait_for(PRODUCTION, "doc.txt", WITHIN, &agent).await;
    world.wait_for(QUARANTINE, "vstaging/doc.txt", WITHIN, &agent).await;
    let promoted = s3.get_object().bucket(PRODUCTION).key("doc.txt").send().await.unwrap();
    let promoted = promoted.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        promoted.as_ref(),
        clean.as_slice(),
        "the clean version was promoted, not the newer one"
    );
    let v1_tags = s3
        .get_object_tagging()
        .bucket("vstaging")
        .key("doc.txt")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    let result = v1_tags
        .tag_set()
        .iter()
        .find(|t| t.key() == "bucketscan-result")
        .map(|t| t.value());
    assert_eq!(result, Some("clean"));
    // The infected version is gone (moved); every other one stays. (A PUT
    // the SDK retried after a slow answer may still land a version after
    // `versions_before` was listed: more versions are no deletion.)
    // A move copies, then deletes: the quarantined copy shows first.
    let deadline = Instant::now() + WITHIN;
    let mut after = versions_of(s3, "vstaging").await;
    while after.contains(&v2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = versions_of(s3, "vstaging").await;
    }
    assert!(!after.contains(&v2), "the infected version was moved out: {after:?}");
    let kept: Vec<&String> = versions_before.iter().filter(|v| **v != v2).collect();
    assert!(kept.contains(&&v1));
    assert!(
        kept.iter().all(|v| after.contains(v)),
        "only the infected version was deleted: before {versions_before:?}, after {after:?}"
    );
}

async fn versions_of(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let versions = s3.list_object_versions().bucket(bucket).send().await.unwrap();
    let mut ids: Vec<String> = versions
        .versions()
        .iter()
        .filter_map(|v| v.version_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn when_sns_fails_after_a_move_the_alert_goes_out_before_the_source_is_deleted() {
    let world = World::new().await;
    // The topic does not exist yet: every publish fails.
    let late_topic = "arn:aws:sns:us-east-1:123456789012:late-topic";
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&world.topic_arn, late_topic);
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);
    world.put("late/alert.txt", samples::eicar(), None, &[], &[]).await;

    // The copy is made, but the source stays until the alert is out.
    world
        .wait_for(QUARANTINE, "staging/late/alert.txt", WITHIN, &agent)
        .await;
    wait_for_log(
        &agent,
        "publishing to arn:aws:sns:us-east-1:123456789012:late-topic: SNS Publish",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        world.exists(STAGING, "late/alert.txt").await,
        "not deleted before the alert"
    );
    assert_eq!(
        world
            .tag(STAGING, "late/alert.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );

    // SNS comes back: the redelivered event publishes, then deletes.
    let topic = world.aws.sns.create_topic().name("late-topic").send().await.unwrap();
    assert_eq!(topic.topic_arn(), Some(late_topic));
    let subscriber = world
        .aws
        .sqs
        .create_queue()
        .queue_name("late-subscriber")
        .send()
        .await
        .unwrap();
    let subscriber_url = subscriber.queue_url().unwrap().to_owned();
    world
        .aws
        .sns
        .subscribe()
        .topic_arn(late_topic)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-1:123456789012:late-subscriber")
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    let alert = loop {
        let out = world
            .aws
            .sqs
            .receive_message()
            .queue_url(&subscriber_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(message) = out.messages().first() {
            let envelope: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
            break serde_json::from_str::<serde_json::Value>(envelope["Message"].as_str().unwrap()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no alert after SNS came back:\n{}",
            agent.log()
        );
    };
    assert_eq!(alert["key"], "late/alert.txt");
    assert_eq!(alert["result"], "infected");
    let deadline = Instant::now() + WITHIN;
    while world.exists(STAGING, "late/alert.txt").await {
        assert!(Instant::now() < deadline, "never deleted:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_object_is_never_downloaded_and_a_small_spool_budget_only_delays_others() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    let config = world.config(&clamd::shared().address(), "");
    with_agent_settings(&config, "max-object-bytes = 2097152\nspool-budget-bytes = 2097152");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);

    // Over the limit and no container: unscannable, tagged so, never
    // promoted, never downloaded.
    let huge = samples::pseudo_random_text(3 << 20, 7);
    world.put("big/huge.txt", huge, Some("text/plain"), &[], &[]).await;
    let deadline = Instant::now() + WITHIN;
    while world.tag(STAGING, "big/huge.txt", "bucketscan-result").await.as_deref() != Some("unscannable") {
        assert!(Instant::now() < deadline, "no result:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        world
            .tag(STAGING, "big/huge.txt", "bucketscan-signature")
            .await
            .as_deref(),
        Some("too-large")
    );
    assert!(!world.exists(PRODUCTION, "big/huge.txt").await);
    let gets: Vec<serde_json::Value> = recorder
        .to_object(STAGING, "big/huge.txt")
        .into_iter()
        .filter(|r| r["method"] == "GET" && !r["query"].as_str().unwrap_or_default().contains("tagging"))
        .collect();
    // Only its first block, to see it is no container to walk.
    assert!(
        gets.iter().all(|r| r["headers"]["range"] == "bytes=0-511"),
        "the oversized object was downloaded: {gets:?}"
    );

    // Objects that fit the budget one at a time: each waits its turn
    // (a retry), none is lost.
    let keys: Vec<String> = (0..4).map(|i| format!("big/part-{i}.txt")).collect();
    for (i, key) in keys.iter().enumerate() {
        world
            .put(
                key,
                samples::pseudo_random_text(1536 << 10, i as u64 + 11),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    for key in &keys {
        world.wait_for(PRODUCTION, key, WITHIN, &agent).await;
    }
    assert!(agent.log().contains("spool budget"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_recognise_each_others_writes_and_scan_every_foreign_upload() {
    let world = World::new().await;
    // The quarantine bucket is watched too, by the same queue, with a
    // pipeline of its own: without recognising the agents' own copies the
    // fleet would scan (and act on) each of them again.
    world.watch(QUARANTINE).await;
    let extra = r#"
[[buckets.quarantine.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.quarantine.stages]]
plugin = "tagger"
settings = { tag-key = "rescanned", tag-value = "yes" }
grants = { storage = ["quarantine"] }
"#;
    let config = world.config(&clamd::shared().address(), extra);
    let first = world.start_agent(&config);
    let second = world.start_agent(&config);
    for i in 0..4 {
        world
            .put(&format!("fleet/{i}.txt"), samples::eicar(), None, &[], &[])
            .await;
    }
    for i in 0..4 {
        world
            .wait_for(QUARANTINE, &format!("staging/fleet/{i}.txt"), WITHIN, &first)
            .await;
    }
    let deadline = Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(
            Instant::now() < deadline,
            "events left:\n{}\n{}",
            first.log(),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs = format!("{}{}", first.log(), second.log());
    assert!(logs.contains("written by a bucketscan agent"), "{logs}");
    for i in 0..4 {
        let key = format!("staging/fleet/{i}.txt");
        assert_eq!(
            world.tag(QUARANTINE, &key, "rescanned").await,
            None,
            "{key} was scanned again:\n{logs}"
        );
    }

    // A foreign upload to a key an agent wrote — even carrying that copy's
    // tags, seal included — is other bytes: it is scanned.
    let copied_tags = world.tags(QUARANTINE, "staging/fleet/0.txt").await;
    world
        .aws
        .s3
        .put_object()
        .bucket(QUARANTINE)
        .key("staging/fleet/0.txt")
        .body(samples::clean_text().into())
        .tagging(
            copied_tags
                .iter()
                .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    while world
        .tag(QUARANTINE, "staging/fleet/0.txt", "rescanned")
        .await
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the foreign upload was not scanned:\n{}\n{}",
            first.log(),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/fleet/0.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("clean"),
        "its real result replaced the copied one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_to_buckets_with_a_known_owner_carry_expected_bucket_owner() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "[buckets.staging]\n",
            "[buckets.staging]\nexpected-owner = \"123456789012\"\n",
        )
        .replace(
            "[buckets.production]\n",
            "[buckets.production]\nexpected-owner = \"123456789012\"\n",
        );
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    world.put("owned.txt", samples::clean_text(), None, &[], &[]).await;
    world.wait_for(PRODUCTION, "owned.txt", WITHIN, &agent).await;

    let to_staging = recorder.to_object(STAGING, "owned.txt");
    assert!(!to_staging.is_empty());
    for request in &to_staging {
        assert_eq!(
            request["headers"]["x-amz-expected-bucket-owner"], "123456789012",
            "{request}"
        );
    }
    let copy = recorder
        .to_object(PRODUCTION, "owned.txt")
        .into_iter()
        .find(|r| r["method"] == "PUT" && r["headers"]["x-amz-copy-source"].is_string())
        .expect("a CopyObject to production");
    assert_eq!(copy["headers"]["x-amz-expected-bucket-owner"], "123456789012", "{copy}");
    assert_eq!(
        copy["headers"]["x-amz-source-expected-bucket-owner"], "123456789012",
        "{copy}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantine_into_a_missing_bucket_fails_and_keeps_the_object_contained() {
    // S3 answers 404 for a missing bucket as for a missing key. The
    // quarantine must not read it as "the object is gone, nothing left to
    // contain": the stage fails, the event stays for a retry, the object
    // stays tagged infected where it is, and the alert still goes out.
    let world = World::new().await;
    let lost = r#"
[buckets.no-such-bucket]
[[buckets.staging.prefixes]]
prefix = "lost/"
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.staging.prefixes.stages]]
plugin = "quarantine"
on = ["infected"]
settings = { mode = "move", bucket = "no-such-bucket" }
grants = { storage = ["no-such-bucket", "staging"] }
"#;
    let agent = world.start_agent(&world.config(&clamd::shared().address(), lost));
    world.put("lost/eicar.txt", samples::eicar(), None, &[], &[]).await;

    // The alert goes out though containment failed, and says so.
    let alert = notification_for(&world, "lost/eicar.txt", &agent).await;
    assert_eq!(alert["result"], "infected");
    assert_eq!(alert["outcome"]["status"], "retry", "{alert}");
    assert!(
        alert["outcome"]["reason"].as_str().unwrap().contains("NoSuchBucket"),
        "{alert}"
    );
    assert!(world.exists(STAGING, "lost/eicar.txt").await, "{}", agent.log());
    assert_eq!(
        world
            .tag(STAGING, "lost/eicar.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    assert!(
        !agent.log().contains("nothing to quarantine"),
        "a missing bucket passed as a gone object:\n{}",
        agent.log()
    );
    assert!(world.queue_depth().await > 0, "the event stays for a retry");
}
