//! What the container survey costs beside reading the bytes once: for
//! each input, the survey's time and a SHA-256 pass over the same bytes
//! (what every object costs anyway), side by side in one run.
//!
//!     cargo bench -p bucketscan-unpack --bench survey

use bucketscan_core::formats::Format;
use bucketscan_unpack::{Limits, samples, survey};
use sha2::Digest;
use std::io::Cursor;
use std::time::{Duration, Instant};

fn random(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The median of `runs` timings of `work`.
fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("random 100 KB", random(100 << 10, 1)),
        ("random 1 MB", random(1 << 20, 2)),
        ("random 50 MB", random(50 << 20, 3)),
        ("zip, 50 x 1 MB stored", {
            let members: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("m{i}.bin"), random(1 << 20, i))).collect();
            let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            samples::zip(&refs, 0)
        }),
        ("tar.gz, 50 x 1 MB", {
            let members: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("m{i}.bin"), random(1 << 20, i))).collect();
            let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            samples::wrap(Format::Gzip, &samples::tar(&refs), "t.tar").unwrap()
        }),
    ];
    let limits = Limits::default();
    println!("{:<24} {:>12} {:>12} {:>8}", "input", "survey", "sha-256", "ratio");
    for (name, bytes) in &inputs {
        let runs = if bytes.len() > 10 << 20 { 5 } else { 31 };
        let surveyed = median(runs, || {
            let found = survey(Cursor::new(bytes.as_slice()), "object", None, &limits);
            assert!(found.incomplete.is_none(), "{name}: {:?}", found.incomplete);
        });
        let hashed = median(runs, || {
            std::hint::black_box(sha2::Sha256::digest(bytes));
        });
        println!(
            "{name:<24} {:>9.3} ms {:>9.3} ms {:>7.2}x",
            surveyed.as_secs_f64() * 1000.0,
            hashed.as_secs_f64() * 1000.0,
            surveyed.as_secs_f64() / hashed.as_secs_f64()
        );
    }
}
