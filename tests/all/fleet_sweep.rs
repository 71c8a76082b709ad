//! Sweeps as work for the fleet: `bucketscan scan --enqueue` turns a
//! listing into sweep items on the agents' queue, the real agent scans
//! them like uploads, and a sweep resumes after the last key it queued.

use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, samples};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

fn enqueue(world: &World, config: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging/backlog/",
        "--enqueue",
        "--sweep-id",
        "backlog-1",
        "--rate",
        "50",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = world.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enqueued_sweep_is_scanned_by_the_agents_and_resumes_after_its_last_key() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    // Already in the bucket before anyone scanned it: the upload events
    // are thrown away, as for a bucket protected after the fact.
    for i in 0..10 {
        let bytes = if i == 7 {
            samples::eicar()
        } else {
            samples::clean_text()
        };
        world
            .put(&format!("backlog/{i:02}.txt"), bytes, Some("text/plain"), &[], &[])
            .await;
    }
    world.purge_events().await;
    assert_eq!(world.queue_depth().await, 0);

    // Resumed after 04: only 05..09 are queued.
    let done = enqueue(&world, &config, &["--start-after", "backlog/04.txt"]);
    assert_eq!(done["queued"], 5, "{done}");
    assert_eq!(done["last_key"], "backlog/09.txt");
    assert_eq!(done["sweep_id"], "backlog-1");
    assert_eq!(world.queue_depth().await, 5);

    let agent = world.start_agent(&config);
    for i in [5, 6, 8, 9] {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    world
        .wait_for(QUARANTINE, "staging/backlog/07.txt", WITHIN, &agent)
        .await;
    for i in 0..5 {
        let key = format!("backlog/{i:02}.txt");
        assert!(
            world.exists(STAGING, &key).await,
            "{key} was not part of the resumed sweep"
        );
        assert_eq!(world.tag(STAGING, &key, "bucketscan-result").await, None);
    }

    wait_until_handled(&world).await;
    world.notifications().await;

    // The whole prefix again: the four promoted copies' sources are still
    // there with their sealed results, and are skipped (no scan, no
    // alert); the five never scanned are.
    let done = enqueue(&world, &config, &[]);
    assert_eq!(done["queued"], 9, "{done}");
    for i in 0..5 {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    wait_until_handled(&world).await;
    let mut published: Vec<String> = world
        .notifications()
        .await
        .iter()
        .map(|n| {
            let body: serde_json::Value = serde_json::from_str(n["Message"].as_str().unwrap()).unwrap();
            body["key"].as_str().unwrap().to_owned()
        })
        .collect();
    published.sort();
    assert_eq!(
        published,
        [
            "backlog/00.txt",
            "backlog/01.txt",
            "backlog/02.txt",
            "backlog/03.txt",
            "backlog/04.txt"
        ],
        "{}",
        agent.log()
    );
}

/// Every message taken and deleted: each item fully handled.
async fn wait_until_handled(world: &World) {
    let deadline = std::time::Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(std::time::Instant::now() < deadline, "items left on the queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_queue_is_taken_from_beside_uploads() {
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let config = world.config(&clamd::shared().address(), "");
    World::set_agent_field(&config, "sweep-queues", &format!("[\"{sweeps}\"]"));
    for i in 0..12 {
        world
            .put(
                &format!("backlog/{i:02}.txt"),
                samples::clean_text(),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    world
        .put("forged.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world.purge_events().await;
    // Whoever may write to the sweep queue gets no other kind of scan
    // through it: an on-demand scan there is refused.
    let forged = bucketscan_runtime::events::on_demand_message(STAGING, "forged.txt", None);
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&sweeps)
        .message_body(forged)
        .send()
        .await
        .unwrap();

    // Without --queue, a sweep goes to the sweep queue, not the uploads'.
    let done = enqueue(&world, &config, &[]);
    assert_eq!(done["queued"], 12, "{done}");
    assert_eq!(world.queue_depth().await, 0, "nothing on the event queue");

    let agent = world.start_agent(&config);
    world
        .put("fresh/upload.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, "staging/fresh/upload.txt", WITHIN, &agent)
        .await;
    for i in 0..12 {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    assert!(agent.log().contains("sweep_queues=["), "{}", agent.log());
    assert!(
        agent.log().contains("not a sweep item, on a sweep queue"),
        "{}",
        agent.log()
    );
    assert_eq!(world.tag(STAGING, "forged.txt", "bucketscan-result").await, None);
}
