//! Objects over the engine's size limit, walked member by member: `bucketscan
//! scan` of one multi-gigabyte archive on the fast S3 stand-in (ranged
//! GETs), side by side with clamd INSTREAM alone on the same members one
//! after another (what the walk hands clamd), and the agent process's
//! peak RSS (its VmHWM) while the archive goes through. Then the same
//! bytes under names that declare no container: read front to back and
//! checked against the whole-file hash signatures (one of them holds the
//! tar's MD5), beside one plain GET of the same object.
//!
//!   cargo build --release -p bucketscan && scripts/build-plugins
//!   cargo bench -p bucketscan-benches --bench large
//!   BUCKETSCAN_LARGE_GIB=10 cargo bench -p bucketscan-benches --bench large
//!
//! The archives: a tar (its MD5 a signature: every member walked clean,
//! then infected as a whole) and a zip64 (stored) of 64 MiB members of
//! incompressible bytes, `BUCKETSCAN_LARGE_GIB` in all (default 4.5, past
//! zip's 32-bit offsets); the zip's last member is EICAR. The stand-in holds
//! them in memory, so the machine needs about twice that in RAM.

#[path = "support/s3_standin.rs"]
mod s3_standin;

use bucketscan_tests::{clamd, config, free_port, samples, signatures};
use s3_standin::Standin;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BUCKET: &str = "bench";
const MEMBER: usize = 64 << 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// Member `i`: incompressible bytes, the same on every call.
fn member(i: usize) -> Vec<u8> {
    bucketscan_unpack::samples::random_bytes(MEMBER, i as u64 + 1)
}

fn tar_of(count: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::with_capacity(count * (MEMBER + 1024)));
    for i in 0..count {
        let data = member(i);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("data/part-{i:04}.bin"), &data[..])
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// A zip64 of stored members, EICAR last.
fn zip_of(count: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(count * (MEMBER + 1024))));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for i in 0..count {
        writer.start_file(format!("data/part-{i:04}.bin"), options).unwrap();
        writer.write_all(&member(i)).unwrap();
    }
    writer.start_file("last/eicar.txt", options).unwrap();
    writer.write_all(&samples::eicar()).unwrap();
    writer.finish().unwrap().into_inner()
}

/// `bucketscan scan` of one key: the wall time and the JSON report.
fn scan(config: &Path, endpoint: &str, key: &str) -> (Duration, serde_json::Value, String, f64) {
    let started = Instant::now();
    let mut child = Command::new(bucketscan_tests::bucketscan_release_bin())
        .args(["scan", "--rescan", "--output", "json", "--config"])
        .arg(config)
        .arg(format!("s3://{BUCKET}/{key}"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("BENCH_SEAL_KEY", "a-benchmark-seal-key-0123456789abcdef")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The process's own high-water mark (VmHWM), read until it exits.
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).unwrap();
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut bytes).unwrap();
        bytes
    });
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_else(|err| panic!("{err}: {stderr}"));
    (wall, report, stderr, peak_kib as f64 / 1024.0)
}

/// clamd INSTREAM over the same members, one after another.
async fn clamd_alone(address: &str, count: usize) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..count {
        let bytes = member(i);
        let started = Instant::now();
        let tcp = clamav_client::tokio::Tcp { host_address: address };
        let answer = clamav_client::tokio::scan_buffer(&bytes, tcp, None).await.unwrap();
        total += started.elapsed();
        assert!(clamav_client::clean(&answer).unwrap());
    }
    total
}

async fn run() {
    let gib: f64 = std::env::var("BUCKETSCAN_LARGE_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4.5);
    let count = ((gib * (1u64 << 30) as f64) / MEMBER as f64).ceil() as usize;
    let tar = tar_of(count);
    let tar_bytes = tar.len();
    // The tar's MD5 is a signature (as `daily.cud` would hold one), so the
    // same bytes named `big.bin` are infected on their hash alone. clamd
    // reads a hash signature's size as 32 bits ("Malformed database" past
    // 4 GiB): larger files are signed with any size (`*`, which needs
    // functionality level 73).
    let md5 = md5::compute(&tar);
    let line = match u32::try_from(tar_bytes) {
        Ok(_) => format!("{md5:x}:{tar_bytes}:Bench.Large.Hash\n"),
        Err(_) => format!("{md5:x}:*:Bench.Large.Hash:73\n"),
    };
    let db = tempfile::tempdir().unwrap();
    std::fs::write(
        db.path().join("daily.cud"),
        signatures::test_database(1, std::time::SystemTime::now(), &line),
    )
    .unwrap();
    let server = clamd::start_with_database(db.path(), free_port(), 128 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
[signatures]
database-dir = "{db}"
max-age-secs = 86400

[agent]
concurrency = 1
seal-key = {{ env = "BENCH_SEAL_KEY" }}
max-object-bytes = {limit}

[buckets.{BUCKET}]
stages = [
  {{ plugin = "clamav-bridge", grants = {{ clamav = true }} }},
]
"#,
        limit = 128 << 20,
        db = db.path().display()
    );
    let config = config::write(dir.path(), &server.address(), &body);

    let standin = Standin::default();
    standin.insert(BUCKET, "big.tar", tar);
    let endpoint = standin.clone().serve().await;
    println!(
        "== an archive over the size limit (128 MiB) walked member by member: {count} members of 64 MiB, fast S3 stand-in"
    );
    // Every member is walked and clean; then the tar's own MD5, taken as
    // the walk read it in order, is the signature: infected as a whole.
    let (walk, report, log, rss) = scan(&config, &endpoint, "big.tar");
    assert_eq!(report["summary"]["infected"], 1, "{report}\n{log}");
    assert_eq!(
        report["objects"][0]["detail"], "Bench.Large.Hash.UNOFFICIAL",
        "{report}"
    );
    let alone = clamd_alone(&server.address(), count).await;
    let mb = tar_bytes as f64 / 1e6;
    println!(
        "tar   {:>7.2} GiB  walk {:>6.1} s ({:>6.1} MB/s), members clean, infected by its MD5  clamd INSTREAM alone {:>6.1} s ({:>6.1} MB/s)  walk/clamd {:.2}x  agent peak RSS {:.0} MiB",
        tar_bytes as f64 / (1u64 << 30) as f64,
        walk.as_secs_f64(),
        mb / walk.as_secs_f64(),
        alone.as_secs_f64(),
        mb / alone.as_secs_f64(),
        alone.as_secs_f64() / walk.as_secs_f64(),
        rss
    );
    hashes(&standin, &config, &endpoint, tar_bytes).await;
    standin.insert(BUCKET, "big.tar", Vec::new());
    standin.insert(BUCKET, "big.bin", Vec::new());

    let zip = zip_of(count);
    let zip_bytes = zip.len();
    standin.insert(BUCKET, "big.zip", zip);
    let (walk, report, log, rss) = scan(&config, &endpoint, "big.zip");
    assert_eq!(report["summary"]["infected"], 1, "{report}\n{log}");
    println!(
        "zip64 {:>7.2} GiB  walk {:>6.1} s ({:>6.1} MB/s), EICAR as its last member found: infected; agent peak RSS {:.0} MiB",
        zip_bytes as f64 / (1u64 << 30) as f64,
        walk.as_secs_f64(),
        zip_bytes as f64 / 1e6 / walk.as_secs_f64(),
        rss
    );
}

/// The tar's bytes as `big.bin`, whose MD5 is a signature: hashed front to
/// back by ranged GETs; beside it, one GET of the same bytes read to the
/// end by the SDK, what a plain download costs.
async fn hashes(standin: &Standin, config: &Path, endpoint: &str, size: usize) {
    standin.alias(BUCKET, "big.tar", "big.bin");
    println!("== the same bytes under names that declare no container: whole-file hash signatures only");
    let (hashed, report, log, rss) = scan(config, endpoint, "big.bin");
    assert_eq!(report["summary"]["infected"], 1, "{report}\n{log}");
    assert_eq!(
        report["objects"][0]["detail"], "Bench.Large.Hash.UNOFFICIAL",
        "{report}"
    );
    let download = one_get(endpoint, "big.bin").await;
    let mb = size as f64 / 1e6;
    println!(
        "hash  {:>7.2} GiB  md5+sha256 by ranged GETs {:>6.1} s ({:>6.1} MB/s), infected by its MD5  one plain GET {:>6.1} s ({:>6.1} MB/s)  hash/GET {:.2}x  agent peak RSS {:.0} MiB",
        size as f64 / (1u64 << 30) as f64,
        hashed.as_secs_f64(),
        mb / hashed.as_secs_f64(),
        download.as_secs_f64(),
        mb / download.as_secs_f64(),
        download.as_secs_f64() / hashed.as_secs_f64(),
        rss
    );
}

/// One GET of `key`, its body read to the end and dropped.
async fn one_get(endpoint: &str, key: &str) -> Duration {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let started = Instant::now();
    let mut body = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap().body;
    let mut read = 0usize;
    while let Some(chunk) = body.try_next().await.unwrap() {
        read += chunk.len();
    }
    assert!(read > 0);
    started.elapsed()
}
