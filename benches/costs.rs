//! What a sweep item and a retro item cost: every AWS request the agent
//! and `scan --enqueue` make, counted by a recording proxy in front of the
//! local AWS server, per object, and priced at list prices.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench costs
//!
//! A sweep of N clean 16 KiB objects (queued, scanned, promoted), then a
//! new signature database that rescans the same N where they live
//! (retro items: clean again). Signature syncs and long polls are
//! per-task, not per-object: shown apart, left out of the totals.

use bucketscan_tests::agent::{PRODUCTION, World, health, wait_until};
use bucketscan_tests::recorder::{Recorder, operation};
use bucketscan_tests::signatures::{self, test_database};
use bucketscan_tests::{free_port, results, samples};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

const OBJECTS: usize = 40;
const WITHIN: Duration = Duration::from_secs(300);

/// US East list prices, USD per request (or per unit), December 2026.
const S3_PUT_CLASS: f64 = 0.005 / 1000.0; // PUT, COPY, POST, LIST (tagging writes too)
const S3_GET_CLASS: f64 = 0.0004 / 1000.0; // GET, HEAD and all other
const SQS_REQUEST: f64 = 0.40 / 1e6;
const SNS_PUBLISH: f64 = 0.50 / 1e6;
const DYNAMODB_WRU: f64 = 0.625 / 1e6;
const DYNAMODB_RRU: f64 = 0.125 / 1e6;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// Requests by operation, and DynamoDB write units (a result is written to
/// the table and its three full-copy indexes, 1 KB units each, plus the
/// keys-only sweep index).
#[derive(Default)]
struct Tally {
    requests: BTreeMap<String, usize>,
    write_units: usize,
    /// Per task, not per object: signature syncs, long polls.
    per_task: usize,
}

fn tally(requests: &[serde_json::Value]) -> Tally {
    let mut tally = Tally::default();
    for request in requests {
        let op = operation(request);
        let path = request["path"].as_str().unwrap_or_default();
        if path.starts_with("/signatures") || op == "SQS ReceiveMessage" {
            tally.per_task += 1;
            continue;
        }
        if op == "DynamoDB PutItem" {
            let kb = (request["length"].as_u64().unwrap_or(0) as usize).div_ceil(1024).max(1);
            tally.write_units += 4 * kb + 1;
        } else if op == "DynamoDB UpdateItem" {
            tally.write_units += 1;
        }
        *tally.requests.entry(op).or_default() += 1;
    }
    tally
}

fn price(op: &str) -> f64 {
    match op {
        "S3 GetObject" | "S3 HeadObject" | "S3 GetObjectTagging" => S3_GET_CLASS,
        "S3 DeleteObject" => 0.0,
        op if op.starts_with("S3 ") => S3_PUT_CLASS,
        op if op.starts_with("SQS ") => SQS_REQUEST,
        "SNS Publish" => SNS_PUBLISH,
        "DynamoDB GetItem" | "DynamoDB Query" => DYNAMODB_RRU,
        // Writes are priced by their units below.
        _ => 0.0,
    }
}

/// Prints requests per object and the cost of a million objects.
fn report(name: &str, tally: &Tally) -> f64 {
    println!("== {name}: requests per object ({OBJECTS} objects)");
    let mut cost = 0.0;
    for (op, count) in &tally.requests {
        let per_object = *count as f64 / OBJECTS as f64;
        cost += per_object * price(op);
        println!("{op:>28} {per_object:>8.2}");
    }
    let units = tally.write_units as f64 / OBJECTS as f64;
    cost += units * DYNAMODB_WRU;
    println!("{:>28} {units:>8.2}", "DynamoDB write units");
    println!(
        "{:>28} {:>8}  (signature syncs, long polls: per task, not counted)",
        "apart", tally.per_task
    );
    println!("   per 1,000,000 objects: ${:.2} in requests", cost * 1e6);
    cost
}

async fn run() {
    let world = World::new().await;
    let (config, sweeps, _clamd, _db) = signatures::retro_world(&world, 5).await;
    for i in 0..OBJECTS {
        world
            .put(
                &format!("backlog/{i:03}.txt"),
                samples::pseudo_random_text(16 << 10, i as u64 + 1),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    world.purge_events().await;

    let recorder = Recorder::start(&world.moto.endpoint());
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = world.start_agent_with_env(
        &config,
        &[
            ("AWS_ENDPOINT_URL", &recorder.endpoint()),
            ("BUCKETSCAN_HEALTH_ADDR", &addr),
        ],
    );
    wait_until("ready", &agent, || health(&addr, true).0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A sweep: queued through the proxy too.
    let before = recorder.requests().len();
    let out = std::process::Command::new(bucketscan_tests::bucketscan_bin())
        .args([
            "scan",
            "--config",
            config.to_str().unwrap(),
            "s3://staging/backlog/",
            "--enqueue",
        ])
        .args(["--sweep-id", "cost", "--rate", "1000"])
        .envs(world.env())
        .env("AWS_ENDPOINT_URL", recorder.endpoint())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + WITHIN;
    for i in 0..OBJECTS {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:03}.txt"), WITHIN, &agent)
            .await;
    }
    settle(&world, &sweeps, deadline).await;
    let sweep = tally(&recorder.requests()[before..]);

    // A new database: the same objects rescanned where they live.
    let before = recorder.requests().len();
    signatures::upload(
        &world,
        "clamav/daily.cud",
        test_database(
            2,
            SystemTime::now(),
            "0123456789abcdef0123456789abcdef:12:Other.Thing\n",
        ),
    )
    .await;
    let store = results::reader(&world.aws.dynamodb);
    for i in 0..OBJECTS {
        let key = format!("backlog/{i:03}.txt");
        while store.history(PRODUCTION, &key, 5).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "{key} not rescanned:\n{}", agent.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    settle(&world, &sweeps, deadline).await;
    let retro = tally(&recorder.requests()[before..]);

    let sweep_cost = report("sweep item (queued, scanned, promoted)", &sweep);
    let retro_cost = report("retro item (walked, rescanned in production, clean)", &retro);
    println!(
        "== 1,000,000 objects (requests do not grow with size below 5 GiB): sweep ${:.2}, retro-scan ${:.2}, in requests",
        sweep_cost * 1e6,
        retro_cost * 1e6
    );
}

/// The sweep queue drained and the last acknowledgements landed.
async fn settle(world: &World, sweeps: &str, deadline: Instant) {
    while world.depth_of(sweeps).await > 0 {
        assert!(Instant::now() < deadline, "the sweep queue never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}
