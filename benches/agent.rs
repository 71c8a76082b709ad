//! The agent end to end, side by side with clamd alone on the same files,
//! and its peak memory while a multi-GB object goes through.
//!
//!   cargo build --release --workspace --exclude test-plugin-hostile \
//!       --exclude test-plugin-noop --exclude test-plugin-tagger
//!   cargo bench -p bucketscan-benches --bench agent
//!
//! Needs scripts/setup and scripts/build-plugins first. The big object's
//! size is `BUCKETSCAN_BENCH_BIG_GIB` (default 5).

use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::recorder::{Recorder, operation};
use bucketscan_tests::{clamd, samples};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // BUCKETSCAN_BENCH=throughput|requests|memory runs one part.
    let only = std::env::var("BUCKETSCAN_BENCH").unwrap_or_default();
    runtime.block_on(async {
        if only.is_empty() || only == "throughput" {
            throughput().await;
        }
        if only.is_empty() || only == "requests" {
            requests_per_object(false).await;
            requests_per_object(true).await;
        }
        if only.is_empty() || only == "memory" {
            peak_rss().await;
        }
    });
}

async fn throughput() {
    let server = clamd::start_with_stream_max(128 << 20).unwrap();
    println!(
        "== end to end: agent (filetype-filter + clamav-bridge + promoter, concurrency 2) vs clamd alone (2 at a time)"
    );
    println!(
        "{:>12}  {:>14}  {:>14}  {:>10}",
        "files", "clamd obj/s", "agent obj/s", "agent/clamd"
    );
    for (count, size) in [(40usize, 100 << 10), (20, 1 << 20), (6, 10 << 20)] {
        let files: Vec<Arc<Vec<u8>>> = (0..count)
            .map(|i| Arc::new(samples::pseudo_random_text(size, i as u64 + 1)))
            .collect();

        let address = server.address();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for chunk in files.chunks(count.div_ceil(2)) {
            let (chunk, address) = (chunk.to_vec(), address.clone());
            tasks.push(tokio::spawn(async move {
                for file in chunk {
                    let tcp = clamav_client::tokio::Tcp {
                        host_address: address.as_str(),
                    };
                    let answer = clamav_client::tokio::scan_buffer(&file, tcp, None).await.unwrap();
                    assert!(clamav_client::clean(&answer).unwrap());
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let alone = started.elapsed();

        // Upload first, then start the agent: the clock measures the agent
        // draining the queue, not the uploads.
        let world = World::new().await;
        let config = world.config(&server.address(), "");
        for (i, file) in files.iter().enumerate() {
            world
                .put(&format!("bench/{i}.txt"), file.to_vec(), Some("text/plain"), &[], &[])
                .await;
        }
        let started = Instant::now();
        let agent = world.start_agent(&config);
        for i in 0..count {
            world
                .wait_for(PRODUCTION, &format!("bench/{i}.txt"), Duration::from_secs(600), &agent)
                .await;
        }
        let piped = started.elapsed();
        let rate = |d: Duration| count as f64 / d.as_secs_f64();
        let label = format!("{count} x {}KB", size >> 10);
        println!(
            "{label:>12}  {:>8.1} ({:>5.0} MB/s)  {:>6.1} ({:>5.0} MB/s)  {:>9.2}x",
            rate(alone),
            (count * size) as f64 / alone.as_secs_f64() / 1e6,
            rate(piped),
            (count * size) as f64 / piped.as_secs_f64() / 1e6,
            alone.as_secs_f64() / piped.as_secs_f64()
        );
    }
}

async fn peak_rss() {
    let gib: u64 = std::env::var("BUCKETSCAN_BENCH_BIG_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let world = World::new().await;
    let server = clamd::start_with_stream_max(128 << 20).unwrap();
    let config = world.config(&server.address(), "");
    let key = "big/object.bin";
    let part = samples::pseudo_random_text(256 << 20, 7);
    let parts: Vec<&[u8]> = (0..(gib << 30) / part.len() as u64).map(|_| part.as_slice()).collect();
    world.put_multipart(key, &parts, None).await;
    let started = Instant::now();
    let agent = world.start_agent(&config);
    // Over clamd's stream limit: the object is fetched (spooled to disk),
    // found too large to stream, and tagged unscannable.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if world.tag(STAGING, key, "bucketscan-result").await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no result:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let result = world.tag(STAGING, key, "bucketscan-result").await.unwrap();
    println!("== peak memory of the agent while a {gib} GiB object goes through");
    println!(
        "   result {result} after {:.1} s; agent peak RSS {} MiB = {:.4} of the object's size",
        started.elapsed().as_secs_f64(),
        hwm_kib >> 10,
        (hwm_kib << 10) as f64 / (gib << 30) as f64
    );
}

/// Requests per object, by outcome: a batch of clean files (promoted) and
/// a batch of EICAR (quarantined) through the agent, every request counted
/// by a recording proxy in front of the local AWS server. Receives are
/// long polls whose number depends on time, not objects: shown apart.
async fn requests_per_object(versioned: bool) {
    let server = clamd::start_with_stream_max(128 << 20).unwrap();
    let world = World::new().await;
    if versioned {
        // What the README recommends: every request then names a version,
        // and the checks an unversioned key needs (a HEAD after tagging,
        // tagging a clean copy only after its bytes were verified) go away.
        for bucket in [STAGING, PRODUCTION, QUARANTINE] {
            world.version(bucket).await;
        }
    }
    let recorder = Recorder::start(&world.moto.endpoint());
    let config = world.config(&server.address(), "");
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    const COUNT: usize = 10;
    let mut counts: Vec<(&str, BTreeMap<String, usize>)> = Vec::new();
    for (outcome, destination) in [("clean, promoted", PRODUCTION), ("infected, quarantined", QUARANTINE)] {
        let before = recorder.requests().len();
        for i in 0..COUNT {
            let (key, bytes) = if destination == PRODUCTION {
                (
                    format!("req/clean-{i}.txt"),
                    samples::pseudo_random_text(10 << 10, i as u64 + 1),
                )
            } else {
                (format!("req/eicar-{i}.txt"), samples::eicar())
            };
            world.put(&key, bytes, Some("text/plain"), &[], &[]).await;
        }
        for i in 0..COUNT {
            let key = if destination == PRODUCTION {
                format!("req/clean-{i}.txt")
            } else {
                format!("staging/req/eicar-{i}.txt")
            };
            world
                .wait_for(destination, &key, Duration::from_secs(120), &agent)
                .await;
        }
        // Let the last deletes and acknowledgements land.
        let deadline = Instant::now() + Duration::from_secs(60);
        while world.queue_depth().await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut by_operation = BTreeMap::new();
        for request in &recorder.requests()[before..] {
            *by_operation.entry(operation(request)).or_insert(0) += 1;
        }
        counts.push((outcome, by_operation));
    }
    println!(
        "== requests per object by outcome (agent, {} buckets, {COUNT} objects each)",
        if versioned { "versioned" } else { "unversioned" }
    );
    let operations: std::collections::BTreeSet<&String> = counts.iter().flat_map(|(_, c)| c.keys()).collect();
    print!("{:>26}", "operation");
    for (outcome, _) in &counts {
        print!("  {outcome:>22}");
    }
    println!();
    let mut totals = vec![0.0; counts.len()];
    for operation in operations {
        print!("{operation:>26}");
        for (i, (_, by_operation)) in counts.iter().enumerate() {
            let per_object = *by_operation.get(operation).unwrap_or(&0) as f64 / COUNT as f64;
            if operation != "SQS ReceiveMessage" {
                totals[i] += per_object;
            }
            print!("  {per_object:>22.1}");
        }
        println!();
    }
    print!("{:>26}", "total (without receives)");
    for total in totals {
        print!("  {total:>22.1}");
    }
    println!();
}
