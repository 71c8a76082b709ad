//! YARA beside ClamAV, side by side in one run (ratios; these machines are
//! noisy):
//!
//!   cargo bench -p bucketscan-benches --bench yara    (needs scripts/build-plugins first)
//!
//! 1. Compiling a rule set of 1,000 rules (text, hex and regex patterns).
//! 2. YARA-X over the same files as clamd INSTREAM (100 KB, 1 MB, 50 MB),
//!    clamd on the one-line test database: the rule set's cost per object
//!    against clamd's.
//! 3. The pipeline with both engines (yara-bridge + clamav-bridge, Wasm
//!    stages, the rule set run by the host) against clamav-bridge alone.

use bucketscan_core::object::{ObjectBody, ObjectInfo, SpooledFile};
use bucketscan_engine::config::{ClamavConfig, EngineConfig};
use bucketscan_engine::{Clamd, Engine, PipelineStage, Plugin, ScanObject, Services};
use bucketscan_tests::host::{clamav_grant, stage};
use bucketscan_tests::{clamd, component};
use bucketscan_yara::{Bytes, Library, Limits, RuleFile, RuleSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/timing.rs"]
mod timing;
use timing::per_call;

const RULES: usize = 1_000;
const STREAM_MAX: u64 = 128 * 1024 * 1024;
const SIZES: &[(&str, usize, u32)] = &[("100KB", 100 * 1024, 40), ("1MB", 1 << 20, 15), ("50MB", 50 << 20, 3)];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let files = rule_files(RULES);
    let started = Instant::now();
    let set = RuleSet::compile("bench", &files).unwrap();
    let compile = started.elapsed();
    let text: usize = files.iter().map(|f| f.source.len()).sum();
    println!(
        "== a rule set of {RULES} rules in {} files ({text} bytes): compiled in {:.0} ms",
        files.len(),
        compile.as_secs_f64() * 1e3
    );

    let tiny = clamd::start_with_stream_max(STREAM_MAX).unwrap();
    let address = tiny.address();
    let library = Arc::new(Library::new(
        ["bench".to_owned()],
        Limits {
            max_object_bytes: STREAM_MAX,
            ..Limits::default()
        },
    ));
    library.install(RuleSet::compile("bench", &files).unwrap());
    let clamav = ClamavConfig {
        address: address.clone(),
        stream_max_bytes: STREAM_MAX,
        ..ClamavConfig::default()
    };
    let services = Arc::new(Services::new(Clamd::new(&clamav)).with_yara(library));
    let host = Engine::new(&EngineConfig {
        cache_dir: None,
        ..EngineConfig::default()
    })
    .unwrap();
    let load = async |name: &str| Arc::new(Plugin::load(&host, name, &component(name), None).await.unwrap());
    let (yara_bridge, clamav_bridge) = (load("yara_bridge").await, load("clamav_bridge").await);
    let yara_grant = bucketscan_core::grants::Grants {
        yara: vec!["bench".into()],
        ..Default::default()
    };
    let yara_stage = stage(&yara_bridge, &[("rule-set", "bench")], yara_grant);
    let clamav_stage = stage(&clamav_bridge, &[], clamav_grant());
    let dir = tempfile::tempdir().unwrap();

    println!("== per object, same files (pseudo-random text, nothing matches); clamd on the one-line test database");
    println!(
        "{:>6}  {:>10}  {:>10}  {:>11}  {:>13}  {:>13}  {:>12}",
        "size", "clamd ms", "yara ms", "yara/clamd", "clamav-only ms", "both ms", "both/clamav"
    );
    for &(label, size, iterations) in SIZES {
        let path = dir.path().join(label);
        std::fs::write(
            &path,
            bucketscan_tests::samples::pseudo_random_text(size, 0x2545_f491_4f6c_dd1d),
        )
        .unwrap();
        let clamd_alone = per_call(iterations, 3, || {
            let (path, address) = (&path, &address);
            async move {
                let tcp = clamav_client::tokio::Tcp {
                    host_address: address.as_str(),
                };
                let answer = clamav_client::tokio::scan_file(path, tcp, None).await.unwrap();
                assert!(clamav_client::clean(&answer).unwrap());
            }
        })
        .await;
        let yara_alone = per_call(iterations, 3, || {
            let (set, path) = (&set, &path);
            async move {
                let matches = set.scan_data(Bytes::File(path), Duration::from_secs(60)).unwrap();
                assert!(matches.is_empty(), "{matches:?}");
            }
        })
        .await;
        let info = Arc::new(ObjectInfo {
            bucket: "bench".into(),
            key: format!("{label}.txt"),
            size: size as u64,
            ..ObjectInfo::default()
        });
        let body = ObjectBody::File(Arc::new(SpooledFile::open(&path).unwrap()));
        let pipeline = |stages: Vec<PipelineStage>| {
            let (info, body, host, services) = (&info, &body, &host, &services);
            per_call(iterations, 3, move || {
                let object = ScanObject::new(info.clone(), body.clone());
                let stages = stages.clone();
                async move {
                    let report = bucketscan_engine::runner::inspect(host, services, &stages, &object).await;
                    assert!(report.verdict.is_clean(), "{:?}", report.verdict);
                }
            })
        };
        let clamav_only = pipeline(vec![clamav_stage.clone()]).await;
        let both = pipeline(vec![yara_stage.clone(), clamav_stage.clone()]).await;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{label:>6}  {:>10.2}  {:>10.2}  {:>10.2}x  {:>13.2}  {:>13.2}  {:>11.2}x",
            ms(clamd_alone),
            ms(yara_alone),
            yara_alone.as_secs_f64() / clamd_alone.as_secs_f64(),
            ms(clamav_only),
            ms(both),
            both.as_secs_f64() / clamav_only.as_secs_f64(),
        );
    }
}

/// `count` rules over ten files: literal strings, hex strings with
/// jumps, and a regex in one rule of ten, as shared rule sets mix them.
fn rule_files(count: usize) -> Vec<RuleFile> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let per_file = count / 10;
    (0..10)
        .map(|file| {
            let mut source = String::new();
            for n in 0..per_file {
                let id = file * per_file + n;
                let word = format!("{:016x}", next());
                let hex: Vec<String> = next().to_be_bytes().iter().map(|b| format!("{b:02X}")).collect();
                let regex = if id.is_multiple_of(10) { format!("\n        $c = /{}[0-9]{{2,4}}{}/", &word[..6], &word[6..10]) } else { String::new() };
                source.push_str(&format!(
                    "rule r{id} : bench {{\n    meta:\n        severity = \"high\"\n    strings:\n        $a = \"{word}\"\n        $b = {{ {} [2-8] {} }}{regex}\n    condition:\n        any of them\n}}\n\n",
                    hex[..4].join(" "),
                    hex[4..].join(" ")
                ));
            }
            RuleFile { name: format!("bench-{file}.yar"), source }
        })
        .collect()
}
