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
//!    `[results]` and without, on the same uploads.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench console
//!
//! `BUCKETSCAN_BENCH_RESULTS` sets how many results are recorded (default
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
    println!("{:<40} {:>10}", "", "ms");
    println!("{:<40} {count:>10.1}", "one direct count (`clean`)");
    println!(
        "{:<40} {first:>10.1}  ({:.2}x the count)",
        "overview, counted (5 counts + sample)",
        first / count
    );
    println!(
        "{:<40} {cached50:>10.1}  (p95 {cached95:.1})",
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
    const ROUNDS: usize = 3;
    println!("== what recording results costs the agent: CPU per object, {OBJECTS} uploads (1 KiB to 64 KiB)");
    println!("   ({ROUNDS} runs each, alternating; \"net\" takes off what the idle agent spends in as long)");
    let mut runs: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for recording in [false, true] {
            runs[recording as usize].push(cpu_per_object(recording, OBJECTS).await);
        }
    }
    let median = |runs: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (raw_without, net_without) = (median(&runs[0], |r| r.0), median(&runs[0], |r| r.1));
    let (raw_with, net_with) = (median(&runs[1], |r| r.0), median(&runs[1], |r| r.1));
    println!("{:<34} {:>12} {:>12}", "", "CPU ms/obj", "net ms/obj");
    println!(
        "{:<34} {raw_without:>12.2} {net_without:>12.2}",
        "agent without [results] (median)"
    );
    println!(
        "{:<34} {raw_with:>12.2} {net_with:>12.2}",
        "agent with [results] (median)"
    );
    println!(
        "{:<34} {:>12.3} {:>12.3}",
        "with / without",
        raw_with / raw_without,
        net_with / net_without
    );
    println!("   every run: without {:?}, with {:?} (raw, net ms)", runs[0], runs[1]);
}

/// One run: the agent's CPU ms per object over `objects` uploads, as
/// measured and net of its idle rate.
async fn cpu_per_object(recording: bool, objects: usize) -> (f64, f64) {
    let world = World::new().await;
    let extra = if recording {
        results::create_table(&world.aws.dynamodb).await;
        format!("[results]\ntable = \"{}\"\n", results::TABLE)
    } else {
        String::new()
    };
    let config = world.config(&clamd::shared().address(), &extra);
    let agent = world.start_agent(&config);
    // Ready; then what it spends idle (polling, timers), per second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_from = (cpu_seconds(agent.child.id()), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rate = (cpu_seconds(agent.child.id()) - idle_from.0) / idle_from.1.elapsed().as_secs_f64();
    let (before, started) = (cpu_seconds(agent.child.id()), Instant::now());
    for i in 0..objects {
        let size = 1024 << (i % 7);
        let bytes = samples::pseudo_random_text(size, i as u64);
        world
            .put(&format!("cpu/{i}.txt"), bytes, Some("text/plain"), &[], &[])
            .await;
    }
    for i in 0..objects {
        world
            .wait_for(PRODUCTION, &format!("cpu/{i}.txt"), Duration::from_secs(120), &agent)
            .await;
    }
    let spent = cpu_seconds(agent.child.id()) - before;
    let net = spent - idle_rate * started.elapsed().as_secs_f64();
    assert!(!world.exists(QUARANTINE, "cpu/0.txt").await);
    if recording {
        let stored = results::reader(&world.aws.dynamodb)
            .search(&Search {
                bucket: Some(STAGING.into()),
                limit: objects * 2,
                ..Search::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), objects, "every result recorded once");
    }
    let per = |cpu: f64| cpu / objects as f64 * 1000.0;
    (per(spent), per(net))
}
