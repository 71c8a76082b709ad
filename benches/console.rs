//! The console and the results store, side by side:
//!
//! 1. the results page of a bucket with 100,000 recorded results (the
//!    release binary's `bucketscan serve`, a local dev user), p50/p95 over
//!    repeated loads, beside the direct query the page makes, on two local
//!    stores: the local AWS server's DynamoDB (moto, which reads its whole
//!    table for a query on an index) and dynalite (which reads only the
//!    partition, as DynamoDB does); and the overview, which counts a day's
//!    results (10,000 by default), beside one direct count;
//! 2. what recording results costs the agent: its CPU time per object with
//!    `[results]` and without, two agents at once on the same uploads;
//!    and the record path alone, timed in this process, batched as the
//!    agent batched and one result per request.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench console
//!
//! `BUCKETSCAN_BENCH_ROUNDS` sets the runs each way of the CPU part (default
//! 3). `BUCKETSCAN_BENCH_RESULTS` sets how many results are recorded (default
//! 100000); `BUCKETSCAN_BENCH=page|overview|cpu` runs one part.

use bucketscan_core::object::ObjectInfo;
use bucketscan_core::report::ScanReport;
use bucketscan_core::{Finding, Verdict};
use bucketscan_runtime::results::record::{self, Recorded};
use bucketscan_runtime::results::search::Search;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, results, samples};
use std::time::{Duration, Instant};

#[path = "support/dynalite.rs"]
mod dynalite;

const LOADS: usize = 40;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("BUCKETSCAN_BENCH").unwrap_or_default();
    runtime.block_on(async {
        if only.is_empty() || only == "page" {
            results_page().await;
        }
        if only.is_empty() || only == "overview" {
            overview().await;
        }
        if only.is_empty() || only == "cpu" {
            recording_cpu().await;
        }
    });
}

/// `n` results of `bucket` recorded today, one in twenty infected.
async fn seed(dynamodb: &aws_sdk_dynamodb::Client, bucket: &str, n: usize) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let now = time::OffsetDateTime::now_utc();
    let mut batch = Vec::new();
    for i in 0..n {
        let info = ObjectInfo {
            bucket: bucket.into(),
            key: format!("uploads/{:03}/file-{i:06}.pdf", i % 500),
            version_id: Some(format!("v{i}")),
            size: 1000 + i as u64,
            sha256: Some(format!("{i:064x}")),
            ..ObjectInfo::default()
        };
        let verdict = if i % 20 == 0 {
            Verdict::Infected {
                findings: vec![Finding::new("clamav", "Eicar-Test-Signature")],
            }
        } else {
            Verdict::Clean
        };
        let mut report = ScanReport::new(&info, verdict);
        report.duration_ms = 5.0 + (i % 50) as f64;
        let nonce = format!("{i:08x}");
        let recorded = Recorded {
            agent: "bench-agent",
            // Spread over the last 20 hours, newest last.
            at: now - time::Duration::milliseconds(((n - i) as i64) * 72_000_000 / n as i64),
            keep_days: Some(1),
            nonce: &nonce,
            body: bucketscan_runtime::notify::SnsPublisher::body(&report, "bench-agent"),
            config: "0123456789ab",
        };
        let item = record::item(&report, &recorded);
        batch.push(
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build(),
        );
        if batch.len() == 25 || i + 1 == n {
            let written = dynamodb
                .batch_write_item()
                .request_items(results::TABLE, std::mem::take(&mut batch))
                .send()
                .await
                .unwrap();
            let unprocessed = written.unprocessed_items.unwrap_or_default();
            assert!(unprocessed.is_empty(), "the store left writes unprocessed");
        }
    }
}

/// p50 and p95 of `durations`, in ms.
fn percentiles(mut durations: Vec<Duration>) -> (f64, f64) {
    durations.sort();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.95))
}

async fn results_page() {
    let n: usize = std::env::var("BUCKETSCAN_BENCH_RESULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let world = World::new().await;
    println!("== the console on {n} recorded results of one bucket");
    println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p95 ms");
    page_beside_query(&world, "moto", &world.aws.dynamodb, Vec::new(), n).await;
    let dynalite = dynalite::Dynalite::start();
    let env = vec![("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), dynalite.endpoint())];
    page_beside_query(&world, "dynalite", &dynalite.client().await, env, n).await;
}

/// Seeds `n` results into the table of `dynamodb`, then loads the
/// results page (`bucketscan serve` reaching that store through `env`)
/// and makes its query directly, in turns; prints both.
async fn page_beside_query(
    world: &World,
    store_name: &str,
    dynamodb: &aws_sdk_dynamodb::Client,
    env: Vec<(String, String)>,
    n: usize,
) {
    results::create_table(dynamodb).await;
    let started = Instant::now();
    seed(dynamodb, STAGING, n).await;
    let seeded = started.elapsed().as_secs_f64();
    let (port, _console) = serve_console(world, env);
    let http = reqwest::Client::new();
    let page = |path: &str| format!("http://127.0.0.1:{port}/console/{path}");
    let store = results::reader(dynamodb);
    let direct = Search {
        bucket: Some(STAGING.into()),
        limit: 200,
        ..Search::default()
    };

    let mut page_times = Vec::new();
    let mut query_times = Vec::new();
    for _ in 0..LOADS {
        let started = Instant::now();
        let answer = http
            .get(page(&format!("results?bucket={STAGING}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body = answer.text().await.unwrap();
        page_times.push(started.elapsed());
        assert_eq!(body.matches("<tr>").count(), 201, "200 rows and the header");
        let started = Instant::now();
        assert_eq!(store.search(&direct).await.unwrap().len(), 200);
        query_times.push(started.elapsed());
    }
    let (page50, page95) = percentiles(page_times);
    let (query50, query95) = percentiles(query_times);
    println!("{store_name} (seeded in {seeded:.0} s):");
    println!("{:<44} {query50:>9.1} {query95:>9.1}", "  direct query (200 newest)");
    println!(
        "{:<44} {page50:>9.1} {page95:>9.1}",
        "  results page (same query, HTML)"
    );
    println!(
        "{:<44} {:>9.2} {:>9.2}",
        "  page / query",
        page50 / query50,
        page95 / query95
    );
}

/// The overview, which counts every result of the last 24 hours, on
/// `BUCKETSCAN_BENCH_OVERVIEW_RESULTS` (default 10000) beside one direct
/// count of them: moto reads its whole table for every page of a query,
/// so this is kept smaller than the results page's.
async fn overview() {
    let n: usize = std::env::var("BUCKETSCAN_BENCH_OVERVIEW_RESULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let world = World::new().await;
    results::create_table(&world.aws.dynamodb).await;
    seed(&world.aws.dynamodb, STAGING, n).await;
    println!("== the overview on {n} results of the last 24 hours");
    let (port, _console) = serve_console(&world, Vec::new());
    let store = results::reader(&world.aws.dynamodb);
    let http = reqwest::Client::new();
    let infected = n.div_ceil(20);
    let load = || async {
        let started = Instant::now();
        let body = http
            .get(format!("http://127.0.0.1:{port}/console/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains(&format!("id=\"count-infected\">{infected}<")),
            "the overview counts every result"
        );
        started.elapsed()
    };
    // The first view counts; the next ones (within 30 s) show its counts.
    let first = load().await;
    let mut cached = Vec::new();
    for _ in 0..10 {
        cached.push(load().await);
    }
    let started = Instant::now();
    let clean = Search {
        result: Some("clean".into()),
        ..Search::default()
    };
    assert_eq!(store.count(&clean).await.unwrap(), (n - infected, true));
    let count = started.elapsed().as_secs_f64() * 1000.0;
    let first = first.as_secs_f64() * 1000.0;
    let (cached50, cached95) = percentiles(cached);
    println!("{:<52} {:>10}", "", "ms");
    println!("{:<52} {count:>10.1}", "one direct count (`clean`)");
    println!(
        "{:<52} {first:>10.1}  ({:.2}x the count)",
        "overview, counted (5 counts + sample)",
        first / count
    );
    println!(
        "{:<52} {cached50:>10.1}  (p95 {cached95:.1})",
        "overview within 30 s (counts kept)"
    );
}

/// `bucketscan serve` with the console for a dev user, on `[results]`,
/// with `env` besides the world's: its port and process.
fn serve_console(world: &World, env: Vec<(String, String)>) -> (u16, bucketscan_tests::agent::AgentProcess) {
    let config = world.config(
        &clamd::shared().address(),
        &format!("[results]\ntable = \"{}\"\n", results::TABLE),
    );
    let mut all = world.env();
    all.extend(env);
    let (console, port) = world.spawn_serve(&config, &["--console-dev-user", "bench"], all);
    bucketscan_tests::wait_for_port(port, Duration::from_secs(60), "bucketscan serve");
    (port, console)
}

/// The agent's CPU seconds (user + system) so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

async fn recording_cpu() {
    const OBJECTS: usize = 300;
    let rounds: usize = std::env::var("BUCKETSCAN_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    println!("== what recording results costs the agent: CPU per object, {OBJECTS} uploads (1 KiB to 64 KiB)");
    println!("   (two agents at once, one with [results] and one without, each on a local AWS server of its own,");
    println!("   the same uploads interleaved: what slows the machine slows both; {rounds} rounds; \"net\" takes off");
    println!("   what each idle agent spends in as long)");
    let mut rounds_seen = Vec::new();
    for round in 1..=rounds {
        let pair = side_by_side(OBJECTS).await;
        println!(
            "   round {round}: without {:.2} ms (net {:.2}), with {:.2} ms (net {:.2}): {:.3}x; {} write requests",
            pair.without.0,
            pair.without.1,
            pair.with.0,
            pair.with.1,
            pair.with.0 / pair.without.0,
            pair.requests
        );
        rounds_seen.push(pair);
    }
    let median = |pick: &dyn Fn(&Pair) -> f64| {
        let mut values: Vec<f64> = rounds_seen.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (raw_without, net_without) = (median(&|p| p.without.0), median(&|p| p.without.1));
    let (raw_with, net_with) = (median(&|p| p.with.0), median(&|p| p.with.1));
    let requests = median(&|p| p.requests);
    println!("{:<52} {:>12} {:>12}", "", "CPU ms/obj", "net ms/obj");
    println!(
        "{:<52} {raw_without:>12.2} {net_without:>12.2}",
        "agent without [results] (median)"
    );
    println!(
        "{:<52} {raw_with:>12.2} {net_with:>12.2}",
        "agent with [results] (median)"
    );
    println!(
        "{:<52} {:>12.3} {:>12.3}",
        "with / without (median of the rounds)",
        median(&|p| p.with.0 / p.without.0),
        median(&|p| p.with.1 / p.without.1)
    );
    // The record path alone, where nothing else moves: at the batch size
    // the agent formed, and one result per request as before batching.
    let batch = match requests.is_nan() {
        true => 1,
        false => (OBJECTS as f64 / requests).round().max(1.0) as usize,
    };
    for (label, writers, wait_ms) in [
        (format!("batches of {batch}, as the agent formed"), batch, 5),
        ("one result per request".to_owned(), 1, 0),
    ] {
        let record = record_cpu(3_000, writers, wait_ms).await;
        println!(
            "{:<52} {record:>12.3}   ({:.1}% of the agent's {raw_without:.2} ms without)",
            format!("the record alone, {label}"),
            record / raw_without * 100.0
        );
    }
}

/// One round: each agent's CPU ms per object (as measured, net of idle),
/// and the write requests of the one recording.
struct Pair {
    without: (f64, f64),
    with: (f64, f64),
    requests: f64,
}

/// An agent on a world of its own, for [`side_by_side`].
struct Measured {
    world: World,
    agent: bucketscan_tests::agent::AgentProcess,
    health: String,
    recording: bool,
}

impl Measured {
    async fn start(recording: bool) -> Self {
        let world = World::new().await;
        let extra = if recording {
            results::create_table(&world.aws.dynamodb).await;
            format!("[results]\ntable = \"{}\"\n", results::TABLE)
        } else {
            String::new()
        };
        let config = world.config(&clamd::shared().address(), &extra);
        let health = format!("127.0.0.1:{}", bucketscan_tests::free_port());
        let agent = world.start_agent_with_env(
            &config,
            &[
                ("BUCKETSCAN_HEALTH_ADDR", &health),
                ("BUCKETSCAN_METRICS", "prometheus"),
            ],
        );
        Self {
            world,
            agent,
            health,
            recording,
        }
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(self.agent.child.id())
    }

    /// Waits until every upload is promoted and the queue is empty
    /// (promoted is not finished: the record, the staging deletes and
    /// the acknowledgements come after); the CPU seconds then.
    async fn finished(&self, objects: usize) -> (f64, Instant) {
        for i in 0..objects {
            self.world
                .wait_for(
                    PRODUCTION,
                    &format!("cpu/{i}.txt"),
                    Duration::from_secs(180),
                    &self.agent,
                )
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.world.queue_depth().await > 0 {
            assert!(Instant::now() < deadline, "messages left:\n{}", self.agent.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (self.cpu(), Instant::now())
    }

    /// Every result recorded exactly once, and nothing quarantined; the
    /// write requests it took.
    async fn check(&self, objects: usize) -> f64 {
        assert!(!self.world.exists(QUARANTINE, "cpu/0.txt").await);
        if !self.recording {
            return 0.0;
        }
        let stored = results::reader(&self.world.aws.dynamodb)
            .search(&Search {
                bucket: Some(STAGING.into()),
                limit: objects * 2,
                ..Search::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), objects, "every result recorded once");
        write_requests(&self.health).await
    }
}

/// Both agents at once on the same uploads (see [`recording_cpu`]).
async fn side_by_side(objects: usize) -> Pair {
    let agents = [Measured::start(false).await, Measured::start(true).await];
    // Ready; then what each spends idle (polling, timers), per second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_from = (agents.each_ref().map(Measured::cpu), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_for = idle_from.1.elapsed().as_secs_f64();
    let idle_rate = [0, 1].map(|a| (agents[a].cpu() - idle_from.0[a]) / idle_for);
    let (before, started) = (agents.each_ref().map(Measured::cpu), Instant::now());
    for i in 0..objects {
        let size = 1024 << (i % 7);
        let bytes = samples::pseudo_random_text(size, i as u64);
        for measured in &agents {
            measured
                .world
                .put(&format!("cpu/{i}.txt"), bytes.clone(), Some("text/plain"), &[], &[])
                .await;
        }
    }
    let (without, with) = tokio::join!(agents[0].finished(objects), agents[1].finished(objects));
    let per_object = |a: usize, (after, at): (f64, Instant)| {
        let spent = after - before[a];
        let net = spent - idle_rate[a] * (at - started).as_secs_f64();
        (spent / objects as f64 * 1000.0, net / objects as f64 * 1000.0)
    };
    agents[0].check(objects).await;
    Pair {
        without: per_object(0, without),
        with: per_object(1, with),
        requests: agents[1].check(objects).await,
    }
}

/// The agent's record path alone (`ResultsStore::record`: the item, the
/// batch, the SDK's request), timed as this process's CPU per result:
/// `records` results of a three-stage promotion, `writers` at a time, a
/// batch waiting `wait_ms` for more.
async fn record_cpu(records: usize, writers: usize, wait_ms: u64) -> f64 {
    use bucketscan_runtime::results::{ResultsConfig, ResultsStore};
    let world = World::new().await;
    results::create_table(&world.aws.dynamodb).await;
    let config = ResultsConfig {
        table: results::TABLE.into(),
        keep_days: 400,
        batch_wait_ms: wait_ms,
    };
    let store = std::sync::Arc::new(ResultsStore::new(
        world.aws.dynamodb.clone(),
        config,
        "bench-agent".into(),
    ));
    let writers = std::sync::Arc::new(tokio::sync::Semaphore::new(writers));
    let before = process_cpu_seconds();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..records {
        let writer = writers.clone().acquire_owned().await.unwrap();
        let store = store.clone();
        tasks.spawn(async move {
            store.record(&promoted_report(i), false).await.unwrap();
            drop(writer);
        });
    }
    tasks.join_all().await;
    let spent = process_cpu_seconds() - before;
    println!(
        "   {records} results in {} write requests, in-process",
        store.requests.get()
    );
    spent / records as f64 * 1000.0
}

/// A clean upload's report as the agent above publishes it: scanned by
/// clamd, typed, promoted.
fn promoted_report(i: usize) -> ScanReport {
    use bucketscan_core::pipeline::StageKind;
    use bucketscan_core::report::{CopyRef, StageOutcome, StageReport};
    use bucketscan_core::verdict::ResultName;
    let info = ObjectInfo {
        bucket: STAGING.into(),
        key: format!("cpu/{i}.txt"),
        version_id: Some(format!("3HL4kqtJlcpXroDTDmJ{i:013}")),
        etag: Some(format!("{i:032x}")),
        size: 1024 << (i % 7),
        sha256: Some(format!("{i:064x}")),
        ..ObjectInfo::default()
    };
    let mut report = ScanReport::new(&info, Verdict::Clean);
    let stage = |plugin: &str, kind, outcome, actions: Vec<String>| StageReport {
        plugin: plugin.into(),
        plugin_version: "0.4.0".into(),
        kind,
        outcome,
        actions,
        error: None,
        cause: None,
        engine_version: Some("ClamAV 1.4.3/27000/Thu Dec  3 09:00:00 2026".into()),
        rule_sets: Vec::new(),
        duration_ms: 3.2,
    };
    report.stages = vec![
        stage(
            "clamav-bridge",
            StageKind::Inspector,
            StageOutcome::Verdict(ResultName::Clean),
            Vec::new(),
        ),
        stage("file-type", StageKind::Inspector, StageOutcome::Continue, Vec::new()),
        stage(
            "promoter",
            StageKind::Action,
            StageOutcome::Done,
            vec![format!("copied to s3://{PRODUCTION}/cpu/{i}.txt")],
        ),
    ];
    report.copies = vec![CopyRef {
        bucket: PRODUCTION.into(),
        key: format!("cpu/{i}.txt"),
        version_id: None,
        etag: info.etag.clone(),
    }];
    report.host_actions = vec![format!("tagged s3://{STAGING}/cpu/{i}.txt")];
    report.duration_ms = 41.0;
    report
}

/// This process's CPU seconds (user + system) so far.
fn process_cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The agent's `bucketscan_results_write_requests_total` (NaN from an
/// agent older than the counter).
async fn write_requests(health: &str) -> f64 {
    let metrics = bucketscan_tests::agent::metrics(health).await;
    bucketscan_tests::agent::metric_value(&metrics, "bucketscan_results_write_requests_total").unwrap_or(f64::NAN)
}
