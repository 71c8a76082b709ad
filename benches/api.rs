//! Load test of `bucketscan serve`: N concurrent clients POST files to
//! `/v1/scan` over loopback (keep-alive connections, like a real upload
//! service), side by side with N clients of clamd INSTREAM alone on the
//! same files. Prints p50/p99 latency and throughput, and the API's as
//! ratios to clamd's.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench api
//!
//! Pipeline `uploads`: filetype-filter + clamav-bridge. `[serve]
//! concurrency = 4` on this 2-core machine; the wait queue is large
//! enough that no request is refused, and the one key the clients share
//! may hold all of it (`per-key-concurrency`).

use bucketscan_tests::{clamd, config, free_port, samples, wait_for_port};
use sha2::{Digest, Sha256};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "bsk_benchmark-key-0123456789abcdefghijklmnopqrs";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_s: f64,
}

fn stats(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_s: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

/// `clients` tasks, each sending `each` requests with `send`; every
/// request's latency, and the wall time of all.
async fn load<F, Fut>(clients: usize, each: usize, send: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let send = Arc::new(send);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let send = send.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(each);
                for i in 0..each {
                    let at = Instant::now();
                    send(client * each + i).await;
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all, started.elapsed())
}

async fn run() {
    // clamd's cost per byte grows with its database: the one-line test
    // database is the hardest case for the API's share; a realistic-size
    // one (generated here) is what production runs.
    let tiny = clamd::start_with_stream_max(STREAM_MAX).unwrap();
    let every_row: &[(&str, usize, usize, &[usize])] = &[
        ("10KB", 10 << 10, 400, &[1, 4, 16]),
        ("100KB", 100 << 10, 200, &[1, 4, 16]),
        ("1MB", 1 << 20, 64, &[1, 4, 16]),
    ];
    against(&tiny.address(), "the one-line test database", every_row).await;
    drop(tiny);
    let db = tempfile::tempdir().unwrap();
    bucketscan_tests::signatures::write_realistic_database(db.path()).unwrap();
    let realistic = clamd::start_with_database(db.path(), free_port(), STREAM_MAX).unwrap();
    let label = format!(
        "a realistic-size database ({} hash + {} body signatures)",
        bucketscan_tests::signatures::REALISTIC_HASHES,
        bucketscan_tests::signatures::REALISTIC_BODIES
    );
    // Fewer rows: each request costs clamd several times more here.
    against(
        &realistic.address(),
        &label,
        &[("10KB", 10 << 10, 200, &[1, 4]), ("100KB", 100 << 10, 60, &[1, 4])],
    )
    .await;
}

const STREAM_MAX: u64 = 128 << 20;

/// One `bucketscan serve` on clamd at `address`, loaded row by row:
/// (label, file size, requests, client counts).
async fn against(address: &str, database: &str, rows: &[(&str, usize, usize, &[usize])]) {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
[serve]
concurrency = 4
queue = 256
queue-wait-secs = 120
max-body-bytes = 67108864
# One key stands for every client here: it may hold every slot and place.
per-key-concurrency = 260

[[serve.keys]]
id = "bench"
sha256 = "{}"
pipelines = ["uploads"]

[buckets.uploads]
stages = [
  {{ plugin = "filetype-filter", settings = {{ deny = ["executable"] }} }},
  {{ plugin = "clamav-bridge", grants = {{ clamav = true }} }},
]
"#,
        hex::encode(Sha256::digest(KEY.as_bytes()))
    );
    let config = config::write(dir.path(), address, &body);
    let bin = bucketscan_tests::target_dir().join("release/bucketscan");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p bucketscan",
        bin.display()
    );
    let port = free_port();
    let mut api = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "unused")
        .env("AWS_SECRET_ACCESS_KEY", "unused")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(60), "bucketscan serve");
    let url = format!("http://127.0.0.1:{port}/v1/scan?pipeline=uploads");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    println!(
        "== bucketscan serve (POST /v1/scan) vs clamd INSTREAM alone, same files, N concurrent clients over loopback; clamd on {database}"
    );
    println!(
        "{:>6} {:>3} {:>5}  {:>9} {:>9} {:>8}  {:>9} {:>9} {:>8}  {:>7} {:>7} {:>7}",
        "size", "N", "reqs", "clamd p50", "p99", "req/s", "api p50", "p99", "req/s", "p50 x", "p99 x", "tput x"
    );
    for &(label, size, total, client_counts) in rows {
        let files: Arc<Vec<Vec<u8>>> = Arc::new((0..16).map(|i| samples::pseudo_random_text(size, i + 11)).collect());
        for &clients in client_counts {
            let each = (total / clients).max(1);
            // Warm-up: the first requests compile nothing (cached) but
            // fill connection pools and clamd's caches.
            {
                let (http, url, files) = (http.clone(), url.clone(), files.clone());
                load(clients, 2, move |i| {
                    let (http, url, file) = (http.clone(), url.clone(), files[i % files.len()].clone());
                    async move {
                        http.post(url).bearer_auth(KEY).body(file).send().await.unwrap();
                    }
                })
                .await;
            }
            let address = address.to_owned();
            let clamd_files = files.clone();
            let (latencies, wall) = load(clients, each, move |i| {
                let (address, file) = (address.clone(), clamd_files[i % clamd_files.len()].clone());
                async move {
                    let tcp = clamav_client::tokio::Tcp {
                        host_address: address.as_str(),
                    };
                    let answer = clamav_client::tokio::scan_buffer(&file, tcp, None).await.unwrap();
                    assert!(clamav_client::clean(&answer).unwrap());
                }
            })
            .await;
            let alone = stats(latencies, wall);
            let (api_http, api_url, api_files) = (http.clone(), url.clone(), files.clone());
            let (latencies, wall) = load(clients, each, move |i| {
                let (http, url, file) = (
                    api_http.clone(),
                    api_url.clone(),
                    api_files[i % api_files.len()].clone(),
                );
                async move {
                    let answer = http.post(url).bearer_auth(KEY).body(file).send().await.unwrap();
                    assert_eq!(answer.status(), 200);
                    let report: serde_json::Value = answer.json().await.unwrap();
                    assert_eq!(report["result"], "clean");
                }
            })
            .await;
            let served = stats(latencies, wall);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{label:>6} {clients:>3} {:>5}  {:>7.2}ms {:>7.2}ms {:>8.1}  {:>7.2}ms {:>7.2}ms {:>8.1}  {:>6.2}x {:>6.2}x {:>6.2}x",
                each * clients,
                ms(alone.p50),
                ms(alone.p99),
                alone.per_s,
                ms(served.p50),
                ms(served.p99),
                served.per_s,
                ms(served.p50) / ms(alone.p50),
                ms(served.p99) / ms(alone.p99),
                served.per_s / alone.per_s,
            );
        }
    }
    println!(
        "(p50 x, p99 x: the API's latency over clamd's, lower is better; tput x: the API's throughput over clamd's)"
    );
    let _ = api.kill();
    let _ = api.wait();
}
