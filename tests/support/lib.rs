//! Fixtures for the end-to-end tests: a real clamd on loopback with the
//! project's own signature database, the built plugin components, samples
//! generated at test time, and the `bucketscan` binary.
//!
//! Servers are started once per test binary and die with it (the kernel
//! kills them when the process that owns them exits), so nothing survives
//! a test run.

pub mod clamd;
pub mod samples;
pub mod signatures;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The shared target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// A built plugin component, e.g. `component("clamav_bridge")`.
///
/// Components are built by `scripts/build-plugins` (which `scripts/test`
/// runs first): building them from inside a test would fight the outer
/// cargo for the target directory lock.
pub fn component(name: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip2/plugin").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (or scripts/test) first",
        path.display()
    );
    path
}

/// A plugin as the last 0.1 release shipped it (contract 0.1.1), kept
/// built in `tests/fixtures/released-0.1.1/`: the host must keep running
/// these beside plugins built against the current contract.
pub fn released_component(name: &str) -> PathBuf {
    workspace()
        .join("tests/fixtures/released-0.1.1")
        .join(format!("{name}.wasm"))
}

/// The `bucketscan` binary cargo built for this test run.
pub fn bucketscan_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/all-HASH -> target/debug/bucketscan
    let path = exe.parent().unwrap().parent().unwrap().join("bucketscan");
    assert!(
        path.exists(),
        "{} is missing: build the workspace first",
        path.display()
    );
    path
}

/// The release `bucketscan` binary the benches run.
pub fn bucketscan_release_bin() -> PathBuf {
    let path = target_dir().join("release/bucketscan");
    assert!(
        path.exists(),
        "{} missing: cargo build --release -p bucketscan",
        path.display()
    );
    path
}

/// Waits until something listens on loopback `port`; panics naming `what`
/// after `within`.
pub fn wait_for_port(port: u16, within: std::time::Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on port {port} within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub mod agent;
pub mod browser;
pub mod config;
pub mod host;
pub mod load_balancer;
pub mod moto;
pub mod podman;
pub mod recorder;
pub mod results;
pub mod task;
pub mod webhook;
