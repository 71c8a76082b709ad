//! Side-by-side benchmarks; every figure is a ratio against a baseline
//! measured in the same run, because these machines are noisy.
//!
//!   cargo bench -p bucketscan-benches            (needs scripts/build-plugins first)
//!   BUCKETSCAN_BENCH=noop cargo bench -p bucketscan-benches --bench pipeline   (one part)
//!
//! 1. Per-object overhead of a pipeline of N no-op Wasm plugins against the
//!    same pipeline of native Rust functions.
//! 2. Instantiate + call cost of one Wasm stage per object.
//! 3. Throughput of the filetype-filter + clamav-bridge pipeline against
//!    clamd INSTREAM alone on the same files (10 KB to 50 MB), and each
//!    stage's time alone; once against the one-line test database, once
//!    against a synthetic one of realistic size (clamd's cost per byte
//!    grows with its database).

use bucketscan_core::Decision;
use bucketscan_core::grants::Grants;
use bucketscan_core::object::{ObjectBody, ObjectInfo, SpooledFile};
use bucketscan_core::pipeline::{Flow, VerdictFold};
use bucketscan_engine::config::{ClamavConfig, EngineConfig};
use bucketscan_engine::{Clamd, Engine, PipelineStage, Plugin, ScanObject, Services};
use bucketscan_tests::host::{clamav_grant, stage};
use bucketscan_tests::{clamd, component};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

#[path = "support/timing.rs"]
mod timing;
use timing::per_call;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // BUCKETSCAN_BENCH=noop (or clamd) runs one part, e.g. under a profiler.
    let only = std::env::var("BUCKETSCAN_BENCH").unwrap_or_default();
    runtime.block_on(async {
        if only.is_empty() || only == "noop" {
            noop_overhead().await;
        }
        if only.is_empty() || only == "clamd" {
            clamd_throughput().await;
        }
    });
}

fn object(info: &Arc<ObjectInfo>, body: &ObjectBody) -> ScanObject {
    ScanObject::new(info.clone(), body.clone())
}

/// The native equivalent of a no-op inspector.
#[inline(never)]
fn native_noop(info: &ObjectInfo) -> Decision {
    black_box(info);
    Decision::Continue
}

async fn noop_overhead() {
    let limits = EngineConfig {
        cache_dir: None,
        ..EngineConfig::default()
    };
    let host = Engine::new(&limits).unwrap();
    let services = Arc::new(Services::new(Clamd::new(&ClamavConfig::default())));
    let noop = Arc::new(
        Plugin::load(&host, "noop", &component("test_plugin_noop"), None)
            .await
            .unwrap(),
    );
    let info = Arc::new(ObjectInfo {
        bucket: "bench".into(),
        key: "object".into(),
        size: 4,
        ..ObjectInfo::default()
    });
    let body = ObjectBody::from_bytes(b"data".to_vec());

    println!(
        "== per-object overhead: N no-op stages, Wasm vs native (pooling allocator: {})",
        host.pooling()
    );
    println!(
        "{:>3}  {:>12}  {:>12}  {:>10}",
        "N", "wasm/object", "native/object", "wasm/native"
    );
    for n in [1usize, 4, 8] {
        let stages: Vec<PipelineStage> = (0..n).map(|_| stage(&noop, &[], Grants::default())).collect();
        let wasm = per_call(200, 7, || {
            let object = object(&info, &body);
            let (host, services, stages) = (&host, &services, &stages);
            async move {
                black_box(bucketscan_engine::runner::inspect(host, services, stages, &object).await);
            }
        })
        .await;
        let native_stages: Vec<fn(&ObjectInfo) -> Decision> = vec![native_noop; n];
        let native = per_call(200_000, 7, || {
            let info = &info;
            let native_stages = &native_stages;
            async move {
                let mut fold = VerdictFold::new();
                for stage in native_stages {
                    if fold.record(stage(info)) == Flow::Stop {
                        break;
                    }
                }
                black_box(fold.finish());
            }
        })
        .await;
        println!(
            "{n:>3}  {:>10.1}µs  {:>10.3}µs  {:>9.0}x",
            wasm.as_secs_f64() * 1e6,
            native.as_secs_f64() * 1e6,
            wasm.as_secs_f64() / native.as_secs_f64()
        );
        if n == 1 {
            println!(
                "     instantiate + call of one Wasm stage: {:.1} µs per object",
                wasm.as_secs_f64() * 1e6
            );
        }
    }
    languages(&info, &body).await;
}

/// One stage per object in each language, doing as little as it can: what
/// the language's runtime costs on top of the host's per-stage work.
async fn languages(info: &Arc<ObjectInfo>, body: &ObjectBody) {
    // The compile cache: the Python and JS components take seconds to
    // compile, which is not what this measures.
    let limits = EngineConfig {
        cache_dir: Some(bucketscan_tests::target_dir().join("tmp/component-cache")),
        ..EngineConfig::default()
    };
    let host = Engine::new(&limits).unwrap();
    let services = Arc::new(Services::new(Clamd::new(&ClamavConfig::default())));
    println!("== one stage per object, by language (instantiate + call; the plugin sees a 4-byte object)");
    println!("{:>22}  {:>12}  {:>10}", "plugin", "per object", "vs Rust");
    let mut rust = None;
    for (name, settings) in [
        ("test_plugin_noop", vec![]),
        ("filetype_filter", vec![]),
        ("entropy_c", vec![]),
        ("size_policy_js", vec![]),
        ("byte_rules_py", vec![("rule.x", "text:zzz")]),
    ] {
        let plugin = Arc::new(Plugin::load(&host, name, &component(name), None).await.unwrap());
        let stages = vec![stage(&plugin, &settings, Grants::default())];
        let iterations = if name.ends_with("_py") || name.ends_with("_js") {
            20
        } else {
            200
        };
        let per_object = per_call(iterations, 5, || {
            let object = object(info, body);
            let (host, services, stages) = (&host, &services, &stages);
            async move {
                black_box(bucketscan_engine::runner::inspect(host, services, stages, &object).await);
            }
        })
        .await;
        let rust = *rust.get_or_insert(per_object);
        println!(
            "{name:>22}  {:>10.1}µs  {:>9.1}x",
            per_object.as_secs_f64() * 1e6,
            per_object.as_secs_f64() / rust.as_secs_f64()
        );
    }
}

async fn clamd_throughput() {
    // clamd's cost per byte grows with its database: measure against the
    // one-line test database (the hardest case for the pipeline's share)
    // and against one of realistic size.
    let tiny = clamd::start_with_stream_max(STREAM_MAX).unwrap();
    throughput_against(&tiny.address(), "the one-line test database", SIZES).await;
    drop(tiny);
    let db = tempfile::tempdir().unwrap();
    bucketscan_tests::signatures::write_realistic_database(db.path()).unwrap();
    let realistic = clamd::start_with_database(db.path(), bucketscan_tests::free_port(), STREAM_MAX).unwrap();
    let label = format!(
        "a realistic-size database ({} hash + {} body signatures)",
        bucketscan_tests::signatures::REALISTIC_HASHES,
        bucketscan_tests::signatures::REALISTIC_BODIES
    );
    // 50 MB against it takes minutes per run and says nothing new.
    throughput_against(&realistic.address(), &label, &SIZES[..3]).await;
}

/// A clamd that accepts 50 MB streams.
const STREAM_MAX: u64 = 128 * 1024 * 1024;

/// Sizes of the throughput rows, with the calls each run times.
const SIZES: &[(&str, usize, u32)] = &[
    ("10KB", 10 * 1024, 300),
    ("100KB", 100 * 1024, 100),
    ("1MB", 1 << 20, 30),
    ("50MB", 50 << 20, 3),
];

async fn throughput_against(address: &str, database: &str, sizes: &[(&str, usize, u32)]) {
    let address = address.to_owned();
    let limits = EngineConfig {
        cache_dir: None,
        ..EngineConfig::default()
    };
    let host = Engine::new(&limits).unwrap();
    let clamav = ClamavConfig {
        address: address.clone(),
        stream_max_bytes: STREAM_MAX,
        ..ClamavConfig::default()
    };
    let services = Arc::new(Services::new(Clamd::new(&clamav)));
    let filter = Arc::new(
        Plugin::load(&host, "filetype-filter", &component("filetype_filter"), None)
            .await
            .unwrap(),
    );
    let bridge = Arc::new(
        Plugin::load(&host, "clamav-bridge", &component("clamav_bridge"), None)
            .await
            .unwrap(),
    );
    let filter_stage = stage(&filter, &[("deny", "executable")], Grants::default());
    let bridge_stage = stage(&bridge, &[], clamav_grant());
    let stages = vec![filter_stage.clone(), bridge_stage.clone()];
    let dir = tempfile::tempdir().unwrap();

    println!(
        "== throughput: filetype-filter + clamav-bridge pipeline vs clamd INSTREAM alone (same files), clamd on {database}"
    );
    println!(
        "{:>7}  {:>10}  {:>12}  {:>13}  {:>14}  {:>10}  {:>10}",
        "size", "clamd MB/s", "pipeline MB/s", "pipeline/clamd", "clamd ms/obj", "filter ms", "bridge ms"
    );
    for &(label, size, iterations) in sizes {
        let path = dir.path().join(label);
        std::fs::write(
            &path,
            bucketscan_tests::samples::pseudo_random_text(size, 0x9e37_79b9_7f4a_7c15),
        )
        .unwrap();
        let info = Arc::new(ObjectInfo {
            bucket: "bench".into(),
            key: format!("{label}.txt"),
            size: size as u64,
            ..ObjectInfo::default()
        });
        let body = ObjectBody::File(Arc::new(SpooledFile::open(&path).unwrap()));
        let alone = per_call(iterations, 3, || {
            let (path, address) = (&path, &address);
            async move {
                let tcp = clamav_client::tokio::Tcp {
                    host_address: address.as_str(),
                };
                let answer = clamav_client::tokio::scan_file(path, tcp, None).await.unwrap();
                assert!(clamav_client::clean(&answer).unwrap(), "bench file must be clean");
            }
        })
        .await;
        // The whole pipeline, then each stage alone: where the time goes.
        let run = |stages: Vec<PipelineStage>, has_engine: bool| {
            let (info, body, host, services) = (&info, &body, &host, &services);
            per_call(iterations, 3, move || {
                let object = object(info, body);
                let stages = stages.clone();
                async move {
                    let report = bucketscan_engine::runner::inspect(host, services, &stages, &object).await;
                    // A pipeline without an engine proves nothing clean.
                    assert_eq!(report.verdict.is_clean(), has_engine, "{:?}", report.verdict);
                }
            })
        };
        let piped = run(stages.clone(), true).await;
        let filter_only = run(vec![filter_stage.clone()], false).await;
        let bridge_only = run(vec![bridge_stage.clone()], true).await;
        let mbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{label:>7}  {:>10.1}  {:>12.1}  {:>13.2}x  {:>14.3}  {:>10.3}  {:>10.3}",
            mbps(alone),
            mbps(piped),
            alone.as_secs_f64() / piped.as_secs_f64(),
            ms(alone),
            ms(filter_only),
            ms(bridge_only),
        );
    }
}
