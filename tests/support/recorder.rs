//! A recording proxy in front of the local AWS server: the agent under
//! test talks to it as its `AWS_ENDPOINT_URL`, and the test reads back
//! every request it made, and injects faults into chosen ones (see
//! `recording_proxy.py` for the rules).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Recorder {
    pub port: u16,
    log: std::path::PathBuf,
    faults: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _child: Child,
}

impl Recorder {
    /// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        std::fs::write(&log, "").unwrap();
        let faults = dir.path().join("faults.json");
        let port = crate::free_port();
        let script = crate::workspace().join("tests/support/recording_proxy.py");
        let args = vec![
            script.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--upstream".into(),
            upstream.trim_start_matches("http://").to_owned(),
            "--log".into(),
            log.display().to_string(),
            "--faults".into(),
            faults.display().to_string(),
        ];
        let child = crate::clamd::spawn_tied(move || {
            let mut command = Command::new("python3");
            command.args(args).stdout(Stdio::null()).stderr(Stdio::inherit());
            command
        })
        .expect("python3 runs the recording proxy");
        crate::wait_for_port(port, Duration::from_secs(10), "the recording proxy");
        Self {
            port,
            log,
            faults,
            _dir: dir,
            _child: child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the fault rules (JSON objects, see `recording_proxy.py`);
    /// the proxy applies them from its next request on.
    pub fn set_faults(&self, rules: &[serde_json::Value]) {
        let partial = self.faults.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(rules).unwrap()).unwrap();
        std::fs::rename(&partial, &self.faults).unwrap();
    }

    /// Requests a fault rule fired on.
    pub fn faulted(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.get("fault").is_some())
            .collect()
    }

    /// Every request so far: method, path (decoded), query, x-amz headers.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Requests whose path is exactly `/bucket/key`.
    pub fn to_object(&self, bucket: &str, key: &str) -> Vec<serde_json::Value> {
        let path = format!("/{bucket}/{key}");
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path.as_str())
            .collect()
    }
}

/// The operation a recorded request was: S3 by method, query and headers;
/// SQS and DynamoDB by their JSON target; SNS (query protocol) otherwise.
pub fn operation(request: &serde_json::Value) -> String {
    let method = request["method"].as_str().unwrap_or_default();
    let query = request["query"].as_str().unwrap_or_default();
    let headers = &request["headers"];
    if let Some(target) = headers["x-amz-target"].as_str() {
        if let Some(operation) = target.strip_prefix("DynamoDB_20120810.") {
            return format!("DynamoDB {operation}");
        }
        return format!("SQS {}", target.trim_start_matches("AmazonSQS."));
    }
    if request["path"] == "/" && method == "POST" {
        return "SNS Publish".into();
    }
    if query.split('&').any(|q| q == "list-type=2") {
        return "S3 ListObjectsV2".into();
    }
    let tagging = query.split('&').any(|q| q == "tagging" || q.starts_with("tagging="));
    match (method, tagging) {
        ("GET", true) => "S3 GetObjectTagging".into(),
        ("PUT", true) => "S3 PutObjectTagging".into(),
        ("DELETE", true) => "S3 DeleteObjectTagging".into(),
        ("PUT", _) if headers.get("x-amz-copy-source").is_some() => "S3 CopyObject".into(),
        ("GET", _) => "S3 GetObject".into(),
        ("HEAD", _) => "S3 HeadObject".into(),
        ("DELETE", _) => "S3 DeleteObject".into(),
        (other, _) => format!("S3 {other}"),
    }
}
