//! Member accounts (`[organization]`, `[accounts]`, deploy/member-account.yaml):
//! a bucket of a second account is protected by its tag alone. Its S3
//! events go through the local server's EventBridge along the templates'
//! own rules (member default bus → central bus → queue), and the agent
//! scans them through the account's role; an untagged bucket's events and
//! an event that names a bucket of another account are not scanned.

use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration, Tag, Tagging};
use bucketscan_tests::agent::{World, wait_until};
use bucketscan_tests::recorder::Recorder;
use bucketscan_tests::task::Stack;
use bucketscan_tests::{clamd, samples};
use serde_json::Value;
use std::time::{Duration, Instant};

const MEMBER: &str = "222222222222";
const CENTRAL: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::222222222222:role/bucketscan-scanner";
const EXTERNAL_ID: &str = "org-external-id-0123";
const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_member_accounts_tagged_bucket_is_scanned_through_its_role_and_nothing_else_is() {
    let world = World::new().await;
    let member_credentials = world.aws.sts_assume_role(ROLE, "setup", EXTERNAL_ID).await;
    let member = world.moto.s3_with(&member_credentials).await;
    for bucket in ["member-tagged", "member-untagged"] {
        member.create_bucket().bucket(bucket).send().await.unwrap();
        let eventbridge = NotificationConfiguration::builder()
            .event_bridge_configuration(EventBridgeConfiguration::builder().build())
            .build();
        let put = member.put_bucket_notification_configuration().bucket(bucket);
        put.notification_configuration(eventbridge).send().await.unwrap();
    }
    let tag = Tag::builder().key("bucketscan:protect").value("true").build().unwrap();
    let tagging = Tagging::builder().tag_set(tag).build().unwrap();
    let put_tagging = member
        .put_bucket_tagging()
        .bucket("member-tagged")
        .tagging(tagging.clone());
    put_tagging.send().await.unwrap();
    // A bucket of the central account, tagged too: a member must not be
    // able to get it scanned through its own role.
    world
        .aws
        .s3
        .create_bucket()
        .bucket("central-private")
        .send()
        .await
        .unwrap();
    let central_tagging = world
        .aws
        .s3
        .put_bucket_tagging()
        .bucket("central-private")
        .tagging(tagging);
    central_tagging.send().await.unwrap();
    let central_object = world.aws.s3.put_object().bucket("central-private").key("secret.txt");
    central_object.body(samples::eicar().into()).send().await.unwrap();

    let intake = wire_eventbridge(&world, &member_credentials).await;
    let uploads = [
        ("member-tagged", "eicar.txt", samples::eicar()),
        ("member-tagged", "notes.txt", samples::clean_text()),
        ("member-untagged", "eicar.txt", samples::eicar()),
    ];
    for (bucket, key, body) in &uploads {
        let put = member.put_object().bucket(*bucket).key(*key).body(body.clone().into());
        put.send().await.unwrap();
    }
    let events = wait_for_messages(&world, &intake, uploads.len()).await;
    for event in &events {
        assert_eq!(
            (event["source"].as_str(), event["detail-type"].as_str()),
            (Some("aws.s3"), Some("Object Created")),
            "{event}"
        );
    }

    // moto re-puts a forwarded event under the central account; EventBridge
    // keeps the account that owns the bucket. Restore it, then hand the
    // events over as the central rule would, with two forgeries: one names
    // the central account's bucket as the member's, one comes from an
    // account with no [accounts] entry.
    let mut relayed: Vec<Value> = events
        .into_iter()
        .map(|mut event| {
            event["account"] = MEMBER.into();
            event
        })
        .collect();
    let mut forged = relayed[0].clone();
    forged["detail"]["bucket"]["name"] = "central-private".into();
    forged["detail"]["object"]["key"] = "secret.txt".into();
    let mut stranger = relayed[0].clone();
    stranger["account"] = "333333333333".into();
    stranger["detail"]["object"]["key"] = "from-a-stranger.txt".into();
    relayed.extend([forged, stranger]);
    for event in &relayed {
        let send = world.aws.sqs.send_message().queue_url(&world.queue_url);
        send.message_body(event.to_string()).send().await.unwrap();
    }

    // Real S3 answers a request naming the wrong owner with 403; the local
    // server does not check, so the proxy in front of it does.
    let recorder = Recorder::start(&world.moto.endpoint());
    recorder.set_faults(&[serde_json::json!({
        "path": "/central-private",
        "header": ["x-amz-expected-bucket-owner", MEMBER],
        "status": 403, "code": "AccessDenied",
    })]);
    let extra = format!(
        "[organization]\nrole-name = \"bucketscan-scanner\"\nexternal-id = \"{EXTERNAL_ID}\"\n\
         [accounts.\"{MEMBER}\"]\n[[accounts.\"{MEMBER}\".stages]]\nplugin = \"clamav-bridge\"\ngrants = {{ clamav = true }}\n"
    );
    let config = world.config(&clamd::shared().address(), &extra);
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);

    let result = |bucket: &'static str, key: &'static str| {
        let member = member.clone();
        async move {
            let tags = member
                .get_object_tagging()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            tags.tag_set()
                .iter()
                .find(|t| t.key() == "bucketscan-result")
                .map(|t| t.value().to_owned())
        }
    };
    let deadline = Instant::now() + WITHIN;
    while result("member-tagged", "eicar.txt").await.as_deref() != Some("infected")
        || result("member-tagged", "notes.txt").await.as_deref() != Some("clean")
    {
        assert!(
            Instant::now() < deadline,
            "no results in member-tagged:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alerts = world.notifications_for(&["eicar.txt"], WITHIN, &agent).await;
    assert_eq!(
        alerts["eicar.txt"]["bucket"], "member-tagged",
        "{:#}",
        alerts["eicar.txt"]
    );
    assert_eq!(alerts["eicar.txt"]["result"], "infected");

    wait_until("the untagged and stranger events handled", &agent, || {
        let log = agent.log();
        log.contains("bucket `member-untagged` of account 222222222222 is not tagged bucketscan:protect=true")
            && log.contains("account 333333333333: the account has no [accounts] entry")
    });
    assert_eq!(
        result("member-untagged", "eicar.txt").await,
        None,
        "an untagged bucket was scanned"
    );

    // Every request to the member's buckets went through its role and
    // named it as the owner; the central bucket was never read, and its
    // event waits for a retry (a role missing must not lose uploads).
    let requests = recorder.requests();
    let to_member: Vec<&Value> = requests
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or_default().starts_with("/member-"))
        .collect();
    assert!(!to_member.is_empty());
    for request in &to_member {
        assert_eq!(request["headers"]["x-amz-expected-bucket-owner"], MEMBER, "{request}");
    }
    assert!(
        !requests.iter().any(|r| r["path"] == "/central-private/secret.txt"),
        "the central bucket's object was read through the member's event"
    );
    assert!(
        !recorder.faulted().is_empty(),
        "the forged event's tag read was never refused"
    );
    assert!(
        agent.log().contains("reading the tags of bucket `central-private`"),
        "{}",
        agent.log()
    );
    let (visible, in_flight) = world.queue_counts().await;
    let dead = world.depth_of(&world.dlq_url).await;
    assert_eq!(
        visible + in_flight + dead,
        1,
        "the forged event is kept for retries, nothing else is left"
    );
    assert!(
        world.moto.agent_assumed(ROLE, EXTERNAL_ID),
        "{:#?}",
        world.moto.state("sts")["AssumedRole"]
    );
}

/// The member's rule and the central bus and rule, with the event
/// patterns of the templates, the central rule delivering to a queue the
/// test reads; returns that queue's URL.
async fn wire_eventbridge(world: &World, member_credentials: &aws_sdk_s3::config::Credentials) -> String {
    let central = Stack::with_parameters("bucketscan.yaml", &[("OrganizationId", "o-a1b2c3d4e5")]).materialize();
    let member_stack = Stack::with_parameters(
        "member-account.yaml",
        &[
            ("AgentTaskRoleArn", "arn:aws:iam::123456789012:role/task"),
            ("ExternalId", EXTERNAL_ID),
        ],
    )
    .materialize();
    let pattern = |template: &Value, rule: &str| template["Resources"][rule]["Properties"]["EventPattern"].to_string();
    let (intake_url, intake_arn) = world.queue("organization-intake").await;
    let events = &world.aws.events;
    let bus = events
        .create_event_bus()
        .name("bucketscan-organization")
        .send()
        .await
        .unwrap();
    let bus_arn = bus.event_bus_arn().unwrap().to_owned();
    assert!(bus_arn.contains(CENTRAL));
    let rule = events
        .put_rule()
        .name("to-queue")
        .event_bus_name("bucketscan-organization");
    rule.event_pattern(pattern(&central, "OrganizationObjectCreatedRule"))
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(intake_arn)
        .build()
        .unwrap();
    let targets = events
        .put_targets()
        .rule("to-queue")
        .event_bus_name("bucketscan-organization");
    targets.targets(target).send().await.unwrap();

    let member_events = world.moto.events_with(member_credentials).await;
    let forward = member_events.put_rule().name("bucketscan-forward");
    forward
        .event_pattern(pattern(&member_stack, "ForwardObjectCreatedRule"))
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("central-bus")
        .arn(bus_arn)
        .role_arn("arn:aws:iam::222222222222:role/forward")
        .build()
        .unwrap();
    member_events
        .put_targets()
        .rule("bucketscan-forward")
        .targets(target)
        .send()
        .await
        .unwrap();
    intake_url
}

async fn wait_for_messages(world: &World, url: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WITHIN;
    let mut all = Vec::new();
    while all.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} events arrived: {all:#?}",
            all.len()
        );
        all.extend(world.take_all(url).await);
    }
    all
}
