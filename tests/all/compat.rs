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
