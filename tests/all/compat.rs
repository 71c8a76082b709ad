//! Dropping in where GuardDuty or Cloud Storage Security ran: their result
//! tags (`[tags] profile`) and GuardDuty's EventBridge events, delivered
//! through a real rule to an SQS target on the local server.

use aws_sdk_eventbridge::types::Target;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, samples};
use std::time::Duration;

const DETAIL_TYPE: &str = "GuardDuty Malware Protection Object Scan Result";

/// A rule on `bus` as a team wrote it for GuardDuty (only `source`
/// changed: EventBridge keeps `aws.*` for AWS), delivering to a new queue.
async fn guardduty_rule(world: &World, bus: &str, status: &str) -> String {
    let (url, arn) = world.queue(&format!("rule-{}", status.to_lowercase())).await;
    let pattern = serde_json::json!({
        "source": ["bucketscan"],
        "detail-type": [DETAIL_TYPE],
        "detail": { "scanResultDetails": { "scanResultStatus": [status] } },
    });
    let name = format!("scan-{}", status.to_lowercase());
    world
        .aws
        .events
        .put_rule()
        .name(&name)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    world
        .aws
        .events
        .put_targets()
        .rule(&name)
        .event_bus_name(bus)
        .targets(Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn guardduty_tags_and_events_keep_existing_policies_and_rules_working() {
    let world = World::new().await;
    world.aws.events.create_event_bus().name("scans").send().await.unwrap();
    let threats = guardduty_rule(&world, "scans", "THREATS_FOUND").await;
    let clean = guardduty_rule(&world, "scans", "NO_THREATS_FOUND").await;
    let config = world.config(&clamd::shared().address(), "[tags]\nprofile = \"guardduty\"\n");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("[notifications]\n", "[notifications]\nevent-bus = \"scans\"\n");
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);
    world
        .put("in/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("in/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, "staging/in/eicar.txt", Duration::from_secs(30), &agent)
        .await;
    world
        .wait_for(PRODUCTION, "in/notes.txt", Duration::from_secs(30), &agent)
        .await;
    world
        .wait_gone(STAGING, "in/eicar.txt", Duration::from_secs(30), &agent)
        .await;

    // GuardDuty's tag key and values: a bucket policy denying reads unless
    // `GuardDutyMalwareScanStatus` = NO_THREATS_FOUND works unchanged.
    let status = "GuardDutyMalwareScanStatus";
    assert_eq!(
        world.tag(QUARANTINE, "staging/in/eicar.txt", status).await.as_deref(),
        Some("THREATS_FOUND")
    );
    assert_eq!(
        world.tag(PRODUCTION, "in/notes.txt", status).await.as_deref(),
        Some("NO_THREATS_FOUND")
    );
    assert_eq!(world.tag(PRODUCTION, "in/notes.txt", "bucketscan-result").await, None);
    assert!(world.tag(PRODUCTION, "in/notes.txt", "bucketscan-seal").await.is_some());

    // Each rule received only its own event, in GuardDuty's shape.
    let threat_events = world.drain(&threats).await;
    assert_eq!(threat_events.len(), 1, "{threat_events:#?}");
    let event = &threat_events[0];
    assert_eq!(event["detail-type"], DETAIL_TYPE);
    assert_eq!(event["source"], "bucketscan");
    let detail = &event["detail"];
    assert_eq!(detail["scanStatus"], "COMPLETED");
    assert_eq!(detail["resourceType"], "S3_OBJECT");
    assert_eq!(detail["s3ObjectDetails"]["bucketName"], STAGING);
    assert_eq!(detail["s3ObjectDetails"]["objectKey"], "in/eicar.txt");
    assert_eq!(detail["scanResultDetails"]["scanResultStatus"], "THREATS_FOUND");
    assert!(
        detail["scanResultDetails"]["threats"][0]["name"]
            .as_str()
            .unwrap()
            .contains("Eicar"),
        "{detail:#}"
    );
    let clean_events = world.drain(&clean).await;
    assert_eq!(clean_events.len(), 1, "{clean_events:#?}");
    assert_eq!(
        clean_events[0]["detail"]["s3ObjectDetails"]["objectKey"],
        "in/notes.txt"
    );
    assert!(clean_events[0]["detail"]["scanResultDetails"]["threats"].is_null());
    // SNS still gets every result too.
    assert_eq!(world.notifications().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn css_tags_speak_cloud_storage_securitys_values() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "[tags]\nprofile = \"css\"\n");
    let agent = world.start_agent(&config);
    world
        .put("a/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("a/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    // A disguised executable is blocked: CSS readers see `Infected`.
    let exe = std::fs::read("/bin/true").unwrap();
    world.put("a/photo.jpg", exe, Some("image/jpeg"), &[], &[]).await;
    world
        .wait_for(QUARANTINE, "staging/a/eicar.txt", Duration::from_secs(30), &agent)
        .await;
    world
        .wait_for(PRODUCTION, "a/notes.txt", Duration::from_secs(30), &agent)
        .await;
    world
        .wait_for(QUARANTINE, "staging/a/photo.jpg", Duration::from_secs(30), &agent)
        .await;
    let result = |bucket: &'static str, key: &'static str| world.tag(bucket, key, "scan-result");
    assert_eq!(
        result(QUARANTINE, "staging/a/eicar.txt").await.as_deref(),
        Some("Infected")
    );
    assert_eq!(
        result(QUARANTINE, "staging/a/photo.jpg").await.as_deref(),
        Some("Infected")
    );
    assert_eq!(result(PRODUCTION, "a/notes.txt").await.as_deref(), Some("Clean"));
    // A forged `scan-result=Clean` on an upload is never trusted.
    world
        .put(
            "a/forged.txt",
            samples::eicar(),
            Some("text/plain"),
            &[],
            &[("scan-result", "Clean")],
        )
        .await;
    world
        .wait_for(QUARANTINE, "staging/a/forged.txt", Duration::from_secs(30), &agent)
        .await;
    assert_eq!(
        result(QUARANTINE, "staging/a/forged.txt").await.as_deref(),
        Some("Infected")
    );
    assert!(!world.exists(PRODUCTION, "a/forged.txt").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_tells_the_agents_results_from_forged_ones() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    let agent = world.start_agent(&config);
    world.put("mark/eicar.txt", samples::eicar(), None, &[], &[]).await;
    world.put("mark/notes.txt", samples::clean_text(), None, &[], &[]).await;
    world
        .wait_for(QUARANTINE, "staging/mark/eicar.txt", Duration::from_secs(60), &agent)
        .await;
    world
        .wait_for(PRODUCTION, "mark/notes.txt", Duration::from_secs(60), &agent)
        .await;
    // Whoever may publish to the topic (the local server enforces no topic
    // policy; the templates do) posts a "clean" result of their own.
    let forged = serde_json::json!({"bucket": STAGING, "key": "mark/dropper.exe", "result": "clean"}).to_string();
    let attribute = |value: &str| {
        aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .unwrap()
    };
    world
        .aws
        .sns
        .publish()
        .topic_arn(&world.topic_arn)
        .message(&forged)
        .message_attributes("scan-result", attribute("clean"))
        .message_attributes("bucketscan-mark", attribute(&format!("n1-{}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A genuine infected result, marked by the agent, re-sent with its
    // filter attribute saying "clean".
    let genuine = world.notifications().await;
    let infected = genuine
        .iter()
        .find(|n| n["MessageAttributes"]["scan-result"]["Value"] == "infected")
        .expect("the agent published the infected result");
    let mark = infected["MessageAttributes"]["bucketscan-mark"]["Value"]
        .as_str()
        .unwrap();
    world
        .aws
        .sns
        .publish()
        .topic_arn(&world.topic_arn)
        .message(infected["Message"].as_str().unwrap())
        .message_attributes("scan-result", attribute("clean"))
        .message_attributes("bucket", attribute(STAGING))
        .message_attributes("outcome", attribute("done"))
        .message_attributes("bucketscan-mark", attribute(mark))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The README's subscriber check, with the key `notification-key` prints.
    let key = world.cli(&["notification-key", "--config", config.to_str().unwrap()]);
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let envelopes: Vec<serde_json::Value> = genuine.into_iter().chain(world.notifications().await).collect();
    let mut input = String::new();
    let mut keys = Vec::new();
    for envelope in &envelopes {
        let body: serde_json::Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        let claimed = envelope["MessageAttributes"]["scan-result"]["Value"]
            .as_str()
            .unwrap_or_default();
        keys.push(format!("{} {claimed}", body["key"].as_str().unwrap()));
        input.push_str(&envelope.to_string());
        input.push('\n');
    }
    let mut verifier = std::process::Command::new("python3")
        .arg(bucketscan_tests::workspace().join("examples/verify_notification.py"))
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    verifier.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = verifier.wait_with_output().unwrap();
    let verdicts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let by_key: Vec<(&str, &str)> = keys
        .iter()
        .map(String::as_str)
        .zip(verdicts.iter().map(String::as_str))
        .collect();
    assert_eq!(by_key.len(), 4, "{by_key:?}");
    for (key, verdict) in by_key {
        let expected = match key {
            "mark/dropper.exe clean" | "mark/eicar.txt clean" => "FORGED",
            _ => "ok",
        };
        assert_eq!(verdict, expected, "{key}");
    }
}
