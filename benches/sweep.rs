//! `bucketscan scan` against a fast S3 stand-in (`support/s3_standin.rs`,
//! on the `s3s` framework, in memory), side by side with clamd INSTREAM
//! alone on the same objects: throughput as a ratio, and the CPU the
//! agent process spends per object against the CPU clamd spends.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench sweep
//!
//! The agent's CPU is the `bucketscan scan` process's (user + system, from
//! getrusage of the reaped child); clamd's is read from /proc before and
//! after. Pipeline: filetype-filter + clamav-bridge.

#[path = "support/s3_standin.rs"]
mod s3_standin;

use bucketscan_tests::{clamd, config, samples};
use s3_standin::Standin;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const BUCKET: &str = "bench";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// CPU time of reaped children so far.
fn children_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time a running process has used (utime + stime from /proc).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

struct Run {
    wall: Duration,
    agent_cpu: Duration,
    clamd_cpu: Duration,
}

/// `bucketscan scan` over the bucket at `concurrency`.
fn sweep(config: &Path, endpoint: &str, clamd_pid: u32, concurrency: usize, count: usize) -> Run {
    sweep_prefix(config, endpoint, clamd_pid, concurrency, count, "")
}

/// `bucketscan scan` over `prefix` of the bucket.
fn sweep_prefix(config: &Path, endpoint: &str, clamd_pid: u32, concurrency: usize, count: usize, prefix: &str) -> Run {
    let (cpu_before, clamd_before) = (children_cpu(), process_cpu(clamd_pid));
    let started = Instant::now();
    let out = Command::new(bucketscan_tests::bucketscan_release_bin())
        .args([
            "scan",
            "--rescan",
            "--output",
            "json",
            "--concurrency",
            &concurrency.to_string(),
            "--config",
        ])
        .arg(config)
        .arg(format!("s3://{BUCKET}/{prefix}"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        // One key for every run, as a fleet shares one: results sealed by
        // one sweep are trusted by the next.
        .env("BENCH_SEAL_KEY", "a-benchmark-seal-key-0123456789abcdef")
        .output()
        .unwrap();
    let wall = started.elapsed();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clean = report["summary"]["clean"].as_u64().unwrap_or(0) as usize;
    assert_eq!(clean, count, "every object clean: {}", report["summary"]);
    Run {
        wall,
        agent_cpu: children_cpu() - cpu_before,
        clamd_cpu: process_cpu(clamd_pid) - clamd_before,
    }
}

/// clamd INSTREAM alone over the same objects, `concurrency` at a time.
async fn clamd_alone(address: &str, objects: &[Arc<Vec<u8>>], clamd_pid: u32, concurrency: usize) -> Run {
    let clamd_before = process_cpu(clamd_pid);
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for bytes in objects {
        let (bytes, address, permit) = (bytes.clone(), address.to_owned(), permits.clone().acquire_owned().await);
        tasks.push(tokio::spawn(async move {
            let tcp = clamav_client::tokio::Tcp {
                host_address: address.as_str(),
            };
            let answer = clamav_client::tokio::scan_buffer(&bytes, tcp, None).await.unwrap();
            assert!(clamav_client::clean(&answer).unwrap());
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Run {
        wall: started.elapsed(),
        agent_cpu: Duration::ZERO,
        clamd_cpu: process_cpu(clamd_pid) - clamd_before,
    }
}

async fn run() {
    let server = clamd::start_with_stream_max(128 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
[agent]
concurrency = 2
seal-key = {{ env = "BENCH_SEAL_KEY" }}

[buckets.{BUCKET}]
stages = [
  {{ plugin = "filetype-filter", settings = {{ deny = ["executable"] }} }},
  {{ plugin = "clamav-bridge", grants = {{ clamav = true }} }},
]
"#
    );
    let config = config::write(dir.path(), &server.address(), &body);

    println!("== sweep (bucketscan scan, concurrency 2) vs clamd INSTREAM alone (2 at a time), fast S3 stand-in");
    println!(
        "{:>6} {:>6}  {:>11} {:>11} {:>9}  {:>13} {:>13} {:>11}",
        "size", "count", "clamd obj/s", "sweep obj/s", "sweep/cl", "agent CPU/obj", "clamd CPU/obj", "agent/clamd"
    );
    let mut at_100k = None;
    for (label, size, count) in [
        ("10KB", 10usize << 10, 400usize),
        ("100KB", 100 << 10, 200),
        ("1MB", 1 << 20, 60),
        ("10MB", 10 << 20, 8),
    ] {
        let standin = Standin::default();
        let objects: Vec<Arc<Vec<u8>>> = (0..count)
            .map(|i| Arc::new(samples::pseudo_random_text(size, i as u64 + 7)))
            .collect();
        for (i, bytes) in objects.iter().enumerate() {
            standin.insert(BUCKET, &format!("o/{i:05}.txt"), bytes.to_vec());
        }
        let endpoint = standin.clone().serve().await;
        // One warm-up sweep (the compile cache, clamd's first scans).
        sweep(&config, &endpoint, server.pid(), 2, count);
        let alone = clamd_alone(&server.address(), &objects, server.pid(), 2).await;
        let mut swept = sweep(&config, &endpoint, server.pid(), 2, count);
        // What a process costs whatever it sweeps (start, engine, plugins
        // from the cache, the listing): measured on an empty prefix and
        // taken off, so the figure is per object.
        let start = sweep_prefix(&config, &endpoint, server.pid(), 2, 0, "none/");
        swept.agent_cpu = swept.agent_cpu.saturating_sub(start.agent_cpu);
        if size == 10 << 10 {
            println!(
                "       (a sweep process's fixed cost, taken off below: {:.0} ms CPU, {:.0} ms wall)",
                start.agent_cpu.as_secs_f64() * 1e3,
                start.wall.as_secs_f64() * 1e3
            );
        }
        let per_s = |run: &Run| count as f64 / run.wall.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / count as f64;
        println!(
            "{label:>6} {count:>6}  {:>11.1} {:>11.1} {:>8.2}x  {:>11.2}ms {:>11.2}ms {:>10.2}x",
            per_s(&alone),
            per_s(&swept),
            per_s(&swept) / per_s(&alone),
            ms(swept.agent_cpu),
            ms(swept.clamd_cpu),
            swept.agent_cpu.as_secs_f64() / swept.clamd_cpu.as_secs_f64()
        );
        if size == 100 << 10 {
            at_100k = Some((standin, endpoint, objects));
        }
    }

    let (_standin, endpoint, objects) = at_100k.unwrap();
    println!("== 100KB: sweep vs clamd alone by concurrency (2 cores here)");
    println!(
        "{:>11}  {:>11} {:>11} {:>9}",
        "concurrency", "clamd obj/s", "sweep obj/s", "sweep/cl"
    );
    for concurrency in [1usize, 2, 4, 8] {
        let alone = clamd_alone(&server.address(), &objects, server.pid(), concurrency).await;
        let swept = sweep(&config, &endpoint, server.pid(), concurrency, objects.len());
        let per_s = |run: &Run| objects.len() as f64 / run.wall.as_secs_f64();
        println!(
            "{concurrency:>11}  {:>11.1} {:>11.1} {:>8.2}x",
            per_s(&alone),
            per_s(&swept),
            per_s(&swept) / per_s(&alone)
        );
    }
}
