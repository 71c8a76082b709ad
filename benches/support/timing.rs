//! Timing shared by the benches that compare per-object costs.

use std::time::{Duration, Instant};

/// Median of `runs` timings of `iterations` calls each, per call.
pub async fn per_call<F, Fut>(iterations: u32, runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            f().await;
        }
        samples.push(started.elapsed() / iterations);
    }
    samples.sort();
    samples[runs / 2]
}
