//! Deleting the stack leaves nothing behind: the staging bucket's
//! notification that the stack (or `bucketscan protect`) added goes with
//! it, and every other notification of the bucket stays. The custom
//! resource's code is read from deploy/bucketscan.yaml and run as Lambda
//! would, against the local AWS server (tests/support/custom_resource.py).

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration, TopicConfiguration};
use bucketscan_tests::agent::{World, queue_arn};
use bucketscan_tests::task::template;
use bucketscan_tests::{target_dir, workspace};
use serde_json::{Value, json};
use std::process::Command;

const BUCKET: &str = "protected-uploads";

#[tokio::test(flavor = "multi_thread")]
async fn protect_then_stack_delete_removes_ours_and_keeps_every_other_notification() {
    let world = World::new().await;
    let s3 = &world.aws.s3;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let ours = queue_arn(&world.aws, &world.queue_url).await;
    let (_, audit_queue) = world.queue("audit").await;
    let topic = world.aws.sns.create_topic().name("theirs").send().await.unwrap();
    let theirs = NotificationConfiguration::builder()
        .topic_configurations(
            TopicConfiguration::builder()
                .id("theirs")
                .topic_arn(topic.topic_arn().unwrap())
                .events(Event::from("s3:ObjectRemoved:*"))
                .build()
                .unwrap(),
        )
        .queue_configurations(
            QueueConfiguration::builder()
                .id("audit")
                .queue_arn(&audit_queue)
                .events(Event::from("s3:ObjectCreated:*"))
                .build()
                .unwrap(),
        )
        .build();
    let put = s3.put_bucket_notification_configuration().bucket(BUCKET);
    put.notification_configuration(theirs).send().await.unwrap();

    let out = world.cli(&["protect", "--bucket", BUCKET, "--queue", &world.queue_url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(queue_ids(&world).await, ["audit", "bucketscan"]);

    let answer = run_custom_resource(&world, "Delete", BUCKET, &ours);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("bucketscan-notification:{BUCKET}")
    );
    let left = s3
        .get_bucket_notification_configuration()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(queue_ids(&world).await, ["audit"], "ours is gone, theirs stays");
    assert_eq!(left.topic_configurations()[0].id(), Some("theirs"));
    // (EventBridge delivery is kept the same way, passed back as read; the
    // local server never reports it, so it is not checked here.)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stack_owns_its_notification_from_create_to_delete() {
    let world = World::new().await;
    let s3 = &world.aws.s3;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let ours = queue_arn(&world.aws, &world.queue_url).await;

    // Create, then an update: one notification, to our queue.
    for request in ["Create", "Update"] {
        let answer = run_custom_resource(&world, request, BUCKET, &ours);
        assert_eq!(answer["Status"], "SUCCESS", "{request}: {answer}");
    }
    let config = s3
        .get_bucket_notification_configuration()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let queues = config.queue_configurations();
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert_eq!(
        (queues[0].id(), queues[0].queue_arn()),
        (Some("bucketscan"), ours.as_str())
    );

    // Another stack's notification of the same name, to its own queue, is
    // not this stack's to remove.
    let (_, other_stack) = world.queue("other-stack").await;
    let other = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .id("bucketscan")
                .queue_arn(&other_stack)
                .events(Event::from("s3:ObjectCreated:*"))
                .build()
                .unwrap(),
        )
        .build();
    let put = s3.put_bucket_notification_configuration().bucket(BUCKET);
    put.notification_configuration(other).send().await.unwrap();
    let answer = run_custom_resource(&world, "Delete", BUCKET, &ours);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(queue_ids(&world).await, ["bucketscan"]);

    // A bucket that is gone has nothing to remove: the delete goes on. A
    // create on it fails, saying which bucket and why.
    let answer = run_custom_resource(&world, "Delete", "deleted-already", &ours);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let answer = run_custom_resource(&world, "Create", "deleted-already", &ours);
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("s3://deleted-already: ") && reason.contains("NoSuchBucket"),
        "{reason}"
    );
}

async fn queue_ids(world: &World) -> Vec<String> {
    let config = world.aws.s3.get_bucket_notification_configuration().bucket(BUCKET);
    let mut ids: Vec<String> = config
        .send()
        .await
        .unwrap()
        .queue_configurations()
        .iter()
        .map(|q| q.id().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The template's StagingNotification custom resource, run for one
/// request: CloudFormation's answer as the handler sent it.
fn run_custom_resource(world: &World, request: &str, bucket: &str, queue_arn: &str) -> Value {
    let template = template("bucketscan.yaml");
    let code = template["Resources"]["StagingNotificationFunction"]["Properties"]["Code"]["ZipFile"]
        .as_str()
        .expect("the function's code is inline");
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.py");
    std::fs::write(&index, code).unwrap();
    let event = json!({
        "RequestType": request,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/bucketscan/1",
        "RequestId": "request-1",
        "LogicalResourceId": "StagingNotification",
        "ResourceType": "Custom::BucketscanStagingNotification",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f", "Bucket": bucket, "QueueArn": queue_arn},
    });
    let out = Command::new(target_dir().join("tools/venv/bin/python"))
        .arg(workspace().join("tests/support/custom_resource.py"))
        .args(["--code", index.to_str().unwrap(), "--event", &event.to_string()])
        .envs(world.moto.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
