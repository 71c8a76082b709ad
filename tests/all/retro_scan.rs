//! Retro-scans through the real parts: two agents on one queue, real
//! clamd with databases synced from the signature bucket, the results
//! table of the template. Bytes promoted clean under database 1 are found
//! in production by database 2, contained there, and the alert says so;
//! the fleet walks the results once.

use aws_sdk_dynamodb::types::AttributeValue;
use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World, health, wait_until};
use bucketscan_tests::signatures::{self, test_database};
use bucketscan_tests::{free_port, results};
use std::time::{Duration, SystemTime};

const WITHIN: Duration = Duration::from_secs(60);

/// Moves every recorded result of `staging/KEY` `days` into the past.
async fn age_results(world: &World, key: &str, days: i64) {
    let dynamodb = &world.aws.dynamodb;
    let items = dynamodb
        .query()
        .table_name(results::TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("object#{STAGING}#{key}")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert!(!items.is_empty(), "no result recorded for {key}");
    let then = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    let record = bucketscan_runtime::results::record::timestamp(then);
    let day = bucketscan_runtime::results::record::day_of(then);
    for item in items {
        dynamodb
            .update_item()
            .table_name(results::TABLE)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .update_expression("SET recorded_at = :at, bucket_day = :bd, result_day = :rd")
            .expression_attribute_values(":at", AttributeValue::S(record.clone()))
            .expression_attribute_values(":bd", AttributeValue::S(format!("{STAGING}#{day}")))
            .expression_attribute_values(":rd", AttributeValue::S(format!("clean#{day}")))
            .send()
            .await
            .unwrap();
    }
}

fn start_ready(world: &World, config: &std::path::Path) -> AgentProcess {
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = world.start_agent_with_env(config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    wait_until("ready", &agent, || health(&addr, true).0);
    agent
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_database_finds_in_production_what_an_older_one_promoted_and_the_fleet_walks_once() {
    let world = World::new().await;
    // Containing a copy where it lives moves it out of production: the
    // quarantine stage is granted that bucket too.
    let (config, sweeps, _clamd, _db) = signatures::retro_world(&world, 1).await;
    let first = start_ready(&world, &config);
    let second = start_ready(&world, &config);

    // Unknown to database 1: promoted clean. An older clean result sits
    // outside the window.
    let novel = b"quarterly figures, with a payload nobody has a signature for yet\n".to_vec();
    world
        .put("novel.txt", novel.clone(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("old.txt", b"an old clean file\n".to_vec(), Some("text/plain"), &[], &[])
        .await;
    world.wait_for(PRODUCTION, "novel.txt", WITHIN, &first).await;
    world.wait_for(PRODUCTION, "old.txt", WITHIN, &first).await;
    let old_engine = world.tag(PRODUCTION, "old.txt", "bucketscan-engine").await;
    assert!(old_engine.is_some());
    let deadline = std::time::Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(std::time::Instant::now() < deadline, "uploads not handled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    age_results(&world, "old.txt", 10).await;
    world.notifications().await;

    // Database 2 knows the novel bytes.
    let line = format!("{:x}:{}:Retro.Test.Novel\n", md5::compute(&novel), novel.len());
    signatures::upload(&world, "clamav/daily.cud", test_database(2, SystemTime::now(), &line)).await;

    world
        .wait_for(QUARANTINE, &format!("{PRODUCTION}/novel.txt"), WITHIN, &first)
        .await;
    world.wait_gone(PRODUCTION, "novel.txt", WITHIN, &first).await;
    assert_eq!(
        world
            .tag(QUARANTINE, &format!("{PRODUCTION}/novel.txt"), "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    let alerts = world.notifications_for(&["novel.txt"], WITHIN, &first).await;
    let alert = &alerts["novel.txt"];
    assert_eq!(alert["bucket"], PRODUCTION, "{alert}");
    assert_eq!(alert["result"], "infected", "{alert}");
    assert!(
        alert["findings"][0]["signature"]
            .as_str()
            .unwrap()
            .starts_with("Retro.Test.Novel"),
        "{alert}"
    );
    let retro = &alert["retro"];
    assert_eq!(retro["origin_bucket"], STAGING, "{alert}");
    assert_eq!(retro["origin_key"], "novel.txt", "{alert}");
    let (now, before) = (
        retro["database"].as_str().unwrap(),
        retro["previous_engine"].as_str().unwrap(),
    );
    assert!(now.contains("/2/") && before.contains("/1/"), "{alert}");
    assert!(retro["clean_since"].as_str().unwrap().starts_with("20"), "{alert}");

    // Outside the window: left alone.
    assert!(world.exists(PRODUCTION, "old.txt").await);
    assert_eq!(world.tag(PRODUCTION, "old.txt", "bucketscan-engine").await, old_engine);

    // One walk for the fleet: one agent queued the item, the claim is done.
    let walks: usize = [&first, &second]
        .iter()
        .map(|agent| {
            agent
                .log()
                .lines()
                .filter(|l| l.contains("retro-scan queued") && l.contains("queued=1"))
                .count()
        })
        .sum();
    assert_eq!(walks, 1, "{}\n---\n{}", first.log(), second.log());
    let claim = world
        .aws
        .dynamodb
        .get_item()
        .table_name(results::TABLE)
        .key("pk", AttributeValue::S(format!("claim#retro-scan#{STAGING}#{}", now)))
        .key("sk", AttributeValue::S("claim".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the walk's claim");
    assert_eq!(claim["state"], AttributeValue::S("done".into()));
    let rescans = results::reader(&world.aws.dynamodb)
        .history(PRODUCTION, "novel.txt", 10)
        .await
        .unwrap();
    assert_eq!(rescans.len(), 1, "{rescans:#?}");

    // Whoever else can write to the sweep queue cannot route an object
    // through another bucket's pipeline: a retro item without the fleet's
    // mark (here, one forged for the old clean file) is ignored.
    let copy = bucketscan_core::report::CopyRef {
        bucket: PRODUCTION.into(),
        key: "old.txt".into(),
        version_id: None,
        etag: None,
    };
    let retro = bucketscan_core::report::RetroScan {
        database: now.to_owned(),
        previous_engine: None,
        clean_since: "2026-12-01T00:00:00.000Z".into(),
        origin_bucket: STAGING.into(),
        origin_key: "old.txt".into(),
    };
    let forged = bucketscan_runtime::events::retro_item_message(
        &copy,
        &retro,
        "forged",
        &bucketscan_core::seal::Sealer::new(b"not the fleet's seal key".to_vec()),
    );
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&sweeps)
        .message_body(forged)
        .send()
        .await
        .unwrap();
    wait_until("the forged item refused", &first, || {
        [&first, &second]
            .iter()
            .any(|agent| agent.log().contains("without a valid mark from the fleet's seal key"))
    });
    assert_eq!(world.tag(PRODUCTION, "old.txt", "bucketscan-engine").await, old_engine);
    assert!(world.exists(PRODUCTION, "old.txt").await);
}
