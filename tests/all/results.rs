//! The results store under failure: while the table cannot be written, an
//! infected upload is still contained (quarantine copy, source tagged),
//! but its event is not acknowledged and the source is not deleted; once
//! the table is back, the retried event records the result and finishes.
//! Nothing is lost and nothing is recorded twice as done.

use bucketscan_tests::agent::{QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, results, samples};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_results_table_that_cannot_be_written_holds_the_event_until_it_can() {
    let world = World::new().await;
    let extra = format!("[results]\ntable = \"{}\"\n", results::TABLE);
    let config = world.config(&clamd::shared().address(), &extra);
    let health = format!("127.0.0.1:{}", bucketscan_tests::free_port());
    let agent = world.start_agent_with_env(
        &config,
        &[
            ("BUCKETSCAN_HEALTH_ADDR", &health),
            ("BUCKETSCAN_METRICS", "prometheus"),
        ],
    );
    world.put("held/eicar.txt", samples::eicar(), None, &[], &[]).await;

    // Contained at once: the copy in quarantine exists before the record.
    world
        .wait_for(QUARANTINE, "staging/held/eicar.txt", WITHIN, &agent)
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert!(
            world.exists(STAGING, "held/eicar.txt").await,
            "deleted before its result was recorded:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(agent.log().contains(results::TABLE), "{}", agent.log());
    let failures = metric(&health, "bucketscan_results_write_failures_total").await;
    assert!(failures >= 1.0, "{failures}");

    results::create_table(&world.aws.dynamodb).await;
    let deadline = Instant::now() + WITHIN;
    while world.exists(STAGING, "held/eicar.txt").await {
        assert!(Instant::now() < deadline, "never finished:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let store = results::reader(&world.aws.dynamodb);
    let history = store.history(STAGING, "held/eicar.txt", 10).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].result, "infected");
}

/// Results of scans that finish together (eight at once): each is
/// recorded exactly once, with its own key and result.
#[tokio::test(flavor = "multi_thread")]
async fn results_that_finish_together_are_each_recorded_once() {
    use bucketscan_tests::agent::PRODUCTION;
    let world = World::new().await;
    results::create_table(&world.aws.dynamodb).await;
    let extra = format!("[results]\ntable = \"{}\"\n", results::TABLE);
    let config = world.config(&clamd::shared().address(), &extra);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("concurrency = 2\n"), "{text}");
    let text = text.replace("concurrency = 2\n", "concurrency = 8\n");
    std::fs::write(&config, text).unwrap();
    let health = format!("127.0.0.1:{}", bucketscan_tests::free_port());
    let agent = world.start_agent_with_env(
        &config,
        &[
            ("BUCKETSCAN_HEALTH_ADDR", &health),
            ("BUCKETSCAN_METRICS", "prometheus"),
        ],
    );
    const UPLOADS: usize = 40;
    for i in 0..UPLOADS {
        let bytes = if i % 8 == 0 {
            samples::eicar()
        } else {
            samples::pseudo_random_text(2048, i as u64)
        };
        world.put(&format!("many/{i}.txt"), bytes, None, &[], &[]).await;
    }
    for i in 0..UPLOADS {
        let (bucket, key) = if i % 8 == 0 {
            (QUARANTINE, format!("staging/many/{i}.txt"))
        } else {
            (PRODUCTION, format!("many/{i}.txt"))
        };
        world.wait_for(bucket, &key, WITHIN, &agent).await;
    }
    let store = results::reader(&world.aws.dynamodb);
    for i in 0..UPLOADS {
        let key = format!("many/{i}.txt");
        let history = results::recorded(&store, STAGING, &key, 1).await;
        assert_eq!(history.len(), 1, "{key}: {history:?}\n{}", agent.log());
        let expected = if i % 8 == 0 { "infected" } else { "clean" };
        assert_eq!(history[0].result, expected, "{key}");
        assert_eq!(history[0].key, key);
    }
    // Written in batches: fewer requests than results.
    let requests = metric(&health, "bucketscan_results_write_requests_total").await;
    println!("{UPLOADS} results in {requests} write requests");
    assert!(requests >= 1.0 && requests < UPLOADS as f64, "{requests}");
}

/// A counter's value on the agent's `/metrics`.
async fn metric(health: &str, name: &str) -> f64 {
    let metrics = bucketscan_tests::agent::metrics(health).await;
    bucketscan_tests::agent::metric_value(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Results that wait together are written in one batch; one the table
/// refuses (a partition key over DynamoDB's 2,048 bytes, which no S3 key
/// can make but a bug could) fails alone: the others are recorded, each
/// writer hears its own outcome.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_the_table_refuses_fails_alone_in_its_batch() {
    use bucketscan_core::Verdict;
    use bucketscan_core::object::ObjectInfo;
    use bucketscan_core::report::ScanReport;
    use bucketscan_runtime::results::{ResultsConfig, ResultsStore};
    let world = World::new().await;
    results::create_table(&world.aws.dynamodb).await;
    let config = ResultsConfig {
        table: results::TABLE.into(),
        keep_days: 1,
        batch_wait_ms: 1_000,
    };
    let store = std::sync::Arc::new(ResultsStore::new(
        world.aws.dynamodb.clone(),
        config,
        "batch-test".into(),
    ));
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..10 {
        let info = ObjectInfo {
            bucket: if i == 3 { "b".repeat(3_000) } else { STAGING.into() },
            key: format!("batch/{i}.txt"),
            size: 1,
            ..ObjectInfo::default()
        };
        let store = store.clone();
        writes.spawn(async move { (i, store.record(&ScanReport::new(&info, Verdict::Clean), false).await) });
    }
    let mut written = writes.join_all().await;
    written.sort_by_key(|(i, _)| *i);
    let written: Vec<_> = written.into_iter().map(|(_, outcome)| outcome).collect();
    for (i, outcome) in written.iter().enumerate() {
        assert_eq!(outcome.is_err(), i == 3, "{i}: {outcome:?}");
    }
    assert!(written[3].as_ref().unwrap_err().contains("2048"), "{:?}", written[3]);
    for i in (0..10).filter(|i| *i != 3) {
        let history = store.history(STAGING, &format!("batch/{i}.txt"), 10).await.unwrap();
        assert_eq!(history.len(), 1, "batch/{i}.txt: {history:?}");
    }
    // One batch refused as a whole, then each alone.
    assert_eq!(store.requests.get(), 11);
}
