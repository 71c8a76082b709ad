//! A local AWS-compatible server (moto, installed by `scripts/setup` into
//! `target/tools/venv`) on a free loopback port, and SDK clients for it.
//! The agent under test reaches it through the standard `AWS_ENDPOINT_URL`
//! and credential environment variables.

use aws_config::BehaviorVersion;
use std::process::Child;
use std::time::Duration;

pub struct MotoServer {
    pub port: u16,
    child: Child,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// Starts a fresh server (each test gets its own, so state never leaks
    /// between tests).
    pub fn start() -> Self {
        let binary = crate::target_dir().join("tools/venv/bin/moto_server");
        assert!(binary.exists(), "{} is missing: run scripts/setup", binary.display());
        let port = crate::free_port();
        let args = vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        let child = crate::clamd::spawn_quiet(binary, args).expect("starting moto_server");
        let server = Self { port, child };
        crate::wait_for_port(port, Duration::from_secs(30), "moto_server");
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a process needs to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub async fn clients(&self) -> Clients {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&shared),
            sns: aws_sdk_sns::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            events: aws_sdk_eventbridge::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        }
    }

    /// An S3 client with other credentials (e.g. an assumed role's).
    pub async fn s3_with(&self, credentials: &aws_sdk_s3::config::Credentials) -> aws_sdk_s3::Client {
        let shared = self.config_with(credentials).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build(),
        )
    }

    /// An EventBridge client with other credentials (another account's).
    pub async fn events_with(&self, credentials: &aws_sdk_s3::config::Credentials) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config_with(credentials).await)
    }

    async fn config_with(&self, credentials: &aws_sdk_s3::config::Credentials) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .load()
            .await
    }

    /// Whether an agent (session `bucketscan`) assumed `role_arn` with
    /// `external_id`, as the role's trust policy asks.
    pub fn agent_assumed(&self, role_arn: &str, external_id: &str) -> bool {
        let roles = self.state("sts")["AssumedRole"].as_array().cloned().unwrap_or_default();
        roles
            .iter()
            .any(|r| r["role_arn"] == role_arn && r["external_id"] == external_id && r["session_name"] == "bucketscan")
    }

    /// moto's recorded state of one service (`/moto-api/data.json`).
    pub fn state(&self, service: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let all: serde_json::Value = serde_json::from_str(body).unwrap();
        all[service].clone()
    }
}

pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub sts: aws_sdk_sts::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    /// Temporary credentials for `role_arn` (moto maps them to the role's account).
    pub async fn sts_assume_role(
        &self,
        role_arn: &str,
        session: &str,
        external_id: &str,
    ) -> aws_sdk_s3::config::Credentials {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .external_id(external_id)
            .send()
            .await
            .unwrap();
        let c = out.credentials.unwrap();
        aws_sdk_s3::config::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "assumed",
        )
    }
}
