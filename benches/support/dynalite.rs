//! dynalite, a DynamoDB implementation on LevelDB (npm), in memory on a
//! free loopback port: a second local store for the console bench. moto
//! answers a query on an index by reading its whole table; dynalite keeps
//! each index in order and reads only the partition asked for, as
//! DynamoDB does, so a page's cost there is the page's, not the table's.
//! Installed on first use under `target/tools/dynalite` (Node.js and npm
//! from the machine).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const VERSION: &str = "4.0.0";

pub struct Dynalite {
    child: Child,
    pub port: u16,
}

impl Dynalite {
    pub fn start() -> Self {
        let bin = installed();
        let port = bucketscan_tests::free_port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--createTableMs",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dynalite starts (Node.js is needed)");
        bucketscan_tests::wait_for_port(port, Duration::from_secs(30), "dynalite");
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A DynamoDB client of this server, with the world's credentials.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dynalite's command, installed with npm if it is not yet.
fn installed() -> PathBuf {
    let prefix = bucketscan_tests::target_dir().join("tools/dynalite");
    let bin = prefix.join("node_modules/.bin/dynalite");
    if !bin.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("dynalite@{VERSION}"))
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm install dynalite@{VERSION} failed");
    }
    bin
}
