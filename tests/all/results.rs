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
    let metrics = reqwest::get(format!("http://{health}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metrics
        .lines()
        .find_map(|line| line.strip_prefix("bucketscan_results_write_failures_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(failures.parse::<f64>().unwrap() >= 1.0, "{metrics}");

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
