//! Hot reload: time from a file write to the new version being live (the
//! generation the agent scans new objects with), measured in-process with
//! the agent's own watcher. Three cases, side by side in one run:
//!
//! - config: the config file rewritten (plugins unchanged, reused);
//! - plugin, cached: a plugin file replaced by bytes compiled before;
//! - plugin, new: a plugin file replaced by bytes never seen (a fresh
//!   compile; each write carries a distinct custom section).
//!
//! The watcher's debounce window is part of every figure and is printed
//! as the floor.
//!
//!   scripts/build-plugins && cargo bench -p bucketscan-benches --bench reload

use bucketscan_core::config::ConfigSource;
use bucketscan_runtime::agent::Agent;
use bucketscan_runtime::config::Config;
use bucketscan_runtime::reload::{self, DEBOUNCE};
use bucketscan_tests::component;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    // The SDK reads these but makes no call while the agent only reloads.
    for (name, value) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
    ] {
        unsafe { std::env::set_var(name, value) };
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate.wasm");
    let noop = std::fs::read(component("test_plugin_noop")).unwrap();
    let legacy = std::fs::read(component("test_plugin_legacy")).unwrap();
    std::fs::write(&gate, &noop).unwrap();
    let config_path = dir.path().join("config.toml");
    let config_text = |settings: &str| {
        format!(
            "[engine]\ncache-dir = \"{}\"\n[agent]\nqueues = [\"http://127.0.0.1:1/q\"]\n\
             [plugins.gate]\npath = \"gate.wasm\"\n[buckets.b]\n[[buckets.b.stages]]\nplugin = \"gate\"\n\
             settings = {{ note = \"{settings}\" }}\n",
            cache.path().display()
        )
    };
    std::fs::write(&config_path, config_text("0")).unwrap();
    let agent = Arc::new(
        Agent::from_config(Config::load_file(&config_path).unwrap())
            .await
            .unwrap(),
    );
    let (_trigger, triggers) = tokio::sync::mpsc::channel(1);
    reload::spawn(agent.clone(), ConfigSource::File(config_path.clone()), triggers).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // watcher up

    let mut config_times = Vec::new();
    let mut cached_times = Vec::new();
    let mut fresh_times = Vec::new();
    for run in 0..RUNS {
        config_times.push(
            time_until_live(&agent, || {
                std::fs::write(&config_path, config_text(&run.to_string())).unwrap()
            })
            .await,
        );
        let bytes = if run % 2 == 0 { &legacy } else { &noop };
        cached_times.push(time_until_live(&agent, || replace(&gate, bytes)).await);
        let fresh = with_custom_section(&noop, run);
        fresh_times.push(time_until_live(&agent, || replace(&gate, &fresh)).await);
    }
    let floor = DEBOUNCE.as_secs_f64() * 1000.0;
    println!("hot reload: file write -> new version live (median of {RUNS}; debounce window {floor:.0} ms)");
    for (case, times) in [
        ("config rewritten", &mut config_times),
        ("plugin, compiled before", &mut cached_times),
        ("plugin, new bytes (compile)", &mut fresh_times),
    ] {
        times.sort();
        let median = times[RUNS / 2].as_secs_f64() * 1000.0;
        println!(
            "  {case:<28} {median:7.1} ms  ({:.2}x the debounce window; max {:.1} ms)",
            median / floor,
            times[RUNS - 1].as_secs_f64() * 1000.0
        );
    }
}

async fn time_until_live(agent: &Agent, write: impl FnOnce()) -> Duration {
    let before = agent.pipelines.generation();
    let started = Instant::now();
    write();
    while agent.pipelines.generation() == before {
        assert!(started.elapsed() < Duration::from_secs(30), "no reload within 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `component` with a custom section appended: the same code, new bytes.
fn with_custom_section(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"bench";
    let payload = n.to_le_bytes();
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}
