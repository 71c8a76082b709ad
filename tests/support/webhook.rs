//! A real HTTP webhook receiver on loopback (`webhook_receiver.py`) that
//! checks bucketscan's signatures with its own HMAC implementation and
//! records every request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret tests sign with, and the variable the receiver reads it from.
pub const SECRET: &str = "test-webhook-secret-0123456789";
pub const SECRET_ENV: &str = "BUCKETSCAN_TEST_WEBHOOK_SECRET";

pub struct Receiver {
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

/// How the receiver misbehaves.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    pub fail_first: u32,
    pub delay_ms: u64,
    pub redirect_to: Option<String>,
    /// Answer 200 with a body that never ends.
    pub endless: bool,
}

impl Receiver {
    pub fn start(behaviour: Behaviour) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let port = crate::free_port();
        let script = crate::workspace().join("tests/support/webhook_receiver.py");
        let mut args = vec![
            script.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--log".into(),
            log.display().to_string(),
            "--secret-env".into(),
            SECRET_ENV.into(),
            "--fail-first".into(),
            behaviour.fail_first.to_string(),
            "--delay-ms".into(),
            behaviour.delay_ms.to_string(),
        ];
        if let Some(to) = &behaviour.redirect_to {
            args.extend(["--redirect-to".into(), to.clone()]);
        }
        if behaviour.endless {
            args.push("--endless".into());
        }
        let child = crate::clamd::spawn_tied(move || {
            let mut command = Command::new("python3");
            command
                .args(args)
                .env(SECRET_ENV, SECRET)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            command
        })
        .expect("python3 runs the webhook receiver");
        crate::wait_for_port(port, Duration::from_secs(10), "the webhook receiver");
        Self {
            port,
            log,
            _dir: dir,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The bodies of validly signed requests, parsed.
    pub fn signed_bodies(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r["signature_valid"] == true)
            .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
            .collect()
    }

    pub async fn wait_for_requests(&self, count: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if requests.len() >= count || Instant::now() > deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
