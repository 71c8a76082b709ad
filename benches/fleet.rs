//! Uploads while a sweep runs: the time from an upload to its promoted
//! copy, with the agent idle and with a sweep of the bucket's backlog on
//! its sweep queue (`[agent] sweep-queues`, `scan --enqueue`), side by
//! side in one run on moto; and how fast the sweep went meanwhile.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench fleet
//!
//! `BUCKETSCAN_BENCH_BACKLOG` sets the backlog (default 600 objects),
//! `BUCKETSCAN_BENCH_CONCURRENCY` the agent's slots (default 4),
//! `BUCKETSCAN_BENCH_SWEEP_SLOTS` its `sweep-slots` (default: all but one).

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, World};
use bucketscan_tests::{clamd, samples};
use std::time::{Duration, Instant};

const UPLOADS: usize = 40;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// Seconds from each upload to its promoted copy, one upload at a time.
async fn upload_latencies(world: &World, agent: &AgentProcess, round: &str) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..UPLOADS {
        let key = format!("live/{round}-{i}.txt");
        let started = Instant::now();
        world
            .put(&key, samples::clean_text(), Some("text/plain"), &[], &[])
            .await;
        while !world.exists(PRODUCTION, &key).await {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{key} never promoted:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies
}

fn median_ms(mut durations: Vec<Duration>) -> f64 {
    durations.sort();
    durations[durations.len() / 2].as_secs_f64() * 1000.0
}

async fn run() {
    // Slots: one stays for uploads, the sweep gets the rest when free.
    let concurrency: usize = std::env::var("BUCKETSCAN_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let backlog: usize = std::env::var("BUCKETSCAN_BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let config = world.config(&clamd::shared().address(), "");
    World::set_agent_field(&config, "sweep-queues", &format!("[\"{sweeps}\"]"));
    // The world's config says `concurrency = 2` further down [agent].
    let text = std::fs::read_to_string(&config).unwrap();
    let mut text = text.replacen("concurrency = 2\n", &format!("concurrency = {concurrency}\n"), 1);
    if let Ok(slots) = std::env::var("BUCKETSCAN_BENCH_SWEEP_SLOTS") {
        text = text.replacen("[agent]\n", &format!("[agent]\nsweep-slots = {slots}\n"), 1);
    }
    std::fs::write(&config, text).unwrap();
    for i in 0..backlog {
        world
            .put(
                &format!("backlog/{i:05}.txt"),
                samples::pseudo_random_text(16 << 10, i as u64),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    world.purge_events().await;
    let agent = world.start_agent(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let idle = upload_latencies(&world, &agent, "idle").await;
    let out = world.cli(&[
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging/backlog/",
        "--enqueue",
        "--rate",
        "10000",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The sweep under way first, alone for two seconds; then uploads meet
    // it mid-flight.
    while count_promoted(&world, backlog).await < 10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (start, started) = (count_promoted(&world, backlog).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = count_promoted(&world, backlog).await;
    let alone = (before - start) as f64 / started.elapsed().as_secs_f64();
    let sweep_started = Instant::now();
    let sweeping = upload_latencies(&world, &agent, "sweeping").await;
    let during = sweep_started.elapsed();
    let promoted_while = count_promoted(&world, backlog).await - before;
    assert!(
        before + promoted_while < backlog,
        "the sweep ended before the uploads did: raise the backlog"
    );

    println!(
        "== uploads (16 KiB, one at a time) while a sweep of {backlog} objects runs; agent concurrency {concurrency}, sweep-slots {}, moto",
        std::env::var("BUCKETSCAN_BENCH_SWEEP_SLOTS").unwrap_or_else(|_| "default".into())
    );
    println!("{:<36} {:>14}", "", "median ms");
    println!(
        "{:<36} {:>14.0}",
        "upload → promoted, agent idle",
        median_ms(idle.clone())
    );
    println!(
        "{:<36} {:>14.0}",
        "upload → promoted, while sweeping",
        median_ms(sweeping.clone())
    );
    println!(
        "{:<36} {:>14.2}",
        "sweeping / idle",
        median_ms(sweeping) / median_ms(idle)
    );
    println!(
        "sweep meanwhile: {promoted_while} objects of {backlog} in {:.1} s ({:.1} objects/s; alone {alone:.1} objects/s)",
        during.as_secs_f64(),
        promoted_while as f64 / during.as_secs_f64()
    );
}

/// How many backlog objects have been promoted so far.
async fn count_promoted(world: &World, backlog: usize) -> usize {
    let mut count = 0;
    let mut pages = world
        .aws
        .s3
        .list_objects_v2()
        .bucket(PRODUCTION)
        .prefix("backlog/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page.unwrap().contents().len();
    }
    count.min(backlog)
}
