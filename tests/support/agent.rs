//! A whole deployment on loopback for agent tests: moto with staging,
//! production and quarantine buckets, an event queue with a DLQ, a result
//! topic with a subscriber queue, and the `bucketscan run` process.
//!
//! (Long by design: the one harness every agent test shares — its setup,
//! uploads, waits and probes — kept together so tests read the same.)

use crate::moto::{Clients, MotoServer};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Event, NotificationConfiguration, QueueConfiguration, Tag, Tagging,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct World {
    pub moto: MotoServer,
    pub aws: Clients,
    pub queue_url: String,
    pub dlq_url: String,
    pub topic_arn: String,
    pub results_url: String,
    pub dir: tempfile::TempDir,
}

pub const STAGING: &str = "staging";
/// The key agents of one deployment share to seal their results.
pub const SEAL_KEY: &str = "test-seal-key-0123456789abcdef";
pub const SEAL_KEY_ENV: &str = "BUCKETSCAN_TEST_SEAL_KEY";
pub const PRODUCTION: &str = "production";
pub const QUARANTINE: &str = "quarantine";

impl World {
    pub async fn new() -> Self {
        let moto = MotoServer::start();
        let aws = moto.clients().await;
        for bucket in [STAGING, PRODUCTION, QUARANTINE] {
            aws.s3.create_bucket().bucket(bucket).send().await.unwrap();
        }
        let dlq_url = aws
            .sqs
            .create_queue()
            .queue_name("scan-dlq")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = queue_arn(&aws, &dlq_url).await;
        let queue_url = aws
            .sqs
            .create_queue()
            .queue_name("scan-events")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"20"}}"#),
            )
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let world = Self {
            moto,
            aws,
            queue_url,
            dlq_url,
            topic_arn: String::new(),
            results_url: String::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        world.watch(STAGING).await;
        let aws = &world.aws;
        let topic_arn = aws
            .sns
            .create_topic()
            .name("scan-results")
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let results_url = aws
            .sqs
            .create_queue()
            .queue_name("scan-results-subscriber")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let results_arn = queue_arn(aws, &results_url).await;
        aws.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(results_arn)
            .send()
            .await
            .unwrap();
        Self {
            topic_arn,
            results_url,
            ..world
        }
    }

    /// Turns versioning on for `bucket`.
    pub async fn version(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.aws
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Sends `bucket`'s object-created events to the event queue.
    pub async fn watch(&self, bucket: &str) {
        let arn = queue_arn(&self.aws, &self.queue_url).await;
        self.aws
            .s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Writes an agent config: the staging pipeline (filetype-filter,
    /// clamav-bridge, promoter on clean, quarantine on infected/blocked)
    /// plus `extra` TOML.
    pub fn config(&self, clamd_address: &str, extra: &str) -> PathBuf {
        self.config_with(
            clamd_address,
            "",
            r#"deny = ["executable"], block-mismatch = true"#,
            extra,
        )
    }

    /// Like [`config`](Self::config), with `first_stages` (TOML stage
    /// tables) before the filetype-filter and its settings given.
    pub fn config_with(
        &self,
        clamd_address: &str,
        first_stages: &str,
        filetype_settings: &str,
        extra: &str,
    ) -> PathBuf {
        let body = format!(
            r#"
[agent]
queues = ["{queue}"]
seal-key = {{ env = "{SEAL_KEY_ENV}" }}
concurrency = 2
visibility-timeout-secs = 4
wait-time-secs = 1
retry-backoff-secs = 1
spool-threshold-bytes = 65536

[notifications]
topic-arn = "{topic}"

[plugins.promoter]
path = "{promoter}"
[plugins.quarantine]
path = "{quarantine}"

[buckets.{PRODUCTION}]
[buckets.{QUARANTINE}]
[buckets.{STAGING}]
{first_stages}
[[buckets.{STAGING}.stages]]
plugin = "filetype-filter"
settings = {{ {filetype_settings} }}
[[buckets.{STAGING}.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.{STAGING}.stages]]
plugin = "promoter"
on = ["clean"]
settings = {{ bucket = "{PRODUCTION}" }}
grants = {{ storage = ["{PRODUCTION}"] }}
[[buckets.{STAGING}.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = {{ mode = "move", bucket = "{QUARANTINE}" }}
grants = {{ storage = ["{QUARANTINE}", "{STAGING}"] }}
{extra}
"#,
            queue = self.queue_url,
            topic = self.topic_arn,
            promoter = crate::component("promoter").display(),
            quarantine = crate::component("quarantine").display(),
        );
        crate::config::write(self.dir.path(), clamd_address, &body)
    }

    /// A config whose `slow/` prefix keeps each object in flight about 3 s
    /// (a sleeping first stage), then scans and promotes it.
    pub fn slow_config(&self, clamd_address: &str) -> PathBuf {
        let slow = r#"
[[buckets.staging.prefixes]]
prefix = "slow/"
[[buckets.staging.prefixes.stages]]
plugin = "hostile"
settings = { behaviour = "sleep", sleep-ms = "3000" }
[[buckets.staging.prefixes.stages]]
plugin = "clamav-bridge"
grants = { clamav = true }
[[buckets.staging.prefixes.stages]]
plugin = "promoter"
on = ["clean"]
settings = { bucket = "production" }
grants = { storage = ["production"] }
"#;
        self.config(clamd_address, slow)
    }

    /// The environment of an agent in this world: the local AWS server
    /// and the fleet's seal key.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.moto.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        env.push((SEAL_KEY_ENV.into(), SEAL_KEY.into()));
        env
    }

    /// Runs a `bucketscan` command in this world's environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::bucketscan_bin())
            .args(args)
            .envs(self.env())
            .output()
            .unwrap()
    }

    pub fn start_agent(&self, config: &Path) -> AgentProcess {
        self.start_agent_with_env(config, &[])
    }

    /// `bucketscan run --config CONFIG` against this world, with `extra`
    /// environment variables (e.g. BUCKETSCAN_HEALTH_ADDR).
    pub fn start_agent_with_env(&self, config: &Path, extra: &[(&str, &str)]) -> AgentProcess {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.spawn_agent(vec!["run".into(), "--config".into(), config.display().to_string()], env)
    }

    /// `bucketscan serve --config CONFIG --listen 127.0.0.1:PORT EXTRA...`
    /// with `env`, on a free port; the process and its port (not yet
    /// waited for).
    pub fn spawn_serve(&self, config: &Path, extra: &[&str], env: Vec<(String, String)>) -> (AgentProcess, u16) {
        let port = crate::free_port();
        let mut args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        (self.spawn_agent(args, env), port)
    }

    /// `bucketscan ARGS` with exactly `env` (plus a debug log filter unless
    /// `env` sets one); stderr and stdout go to files in the world's dir.
    pub fn spawn_agent(&self, args: Vec<String>, env: Vec<(String, String)>) -> AgentProcess {
        let id = crate::free_port();
        let log = self.dir.path().join(format!("agent-{id}.log"));
        let stdout = self.dir.path().join(format!("agent-{id}.out"));
        let (bin, log_for_child, stdout_for_child) = (crate::bucketscan_bin(), log.clone(), stdout.clone());
        let child = crate::clamd::spawn_tied(move || {
            let mut command = Command::new(bin);
            command
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("BUCKETSCAN_LOG", "info,bucketscan_agent=debug,bucketscan_runtime=debug")
                .envs(env)
                .stdout(std::fs::File::create(stdout_for_child).unwrap())
                .stderr(std::fs::File::create(log_for_child).unwrap());
            command
        })
        .expect("starting bucketscan");
        AgentProcess { child, log, stdout }
    }

    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: Option<&str>,
        metadata: &[(&str, &str)],
        tags: &[(&str, &str)],
    ) {
        let mut request = self
            .aws
            .s3
            .put_object()
            .bucket(STAGING)
            .key(key)
            .body(ByteStream::from(bytes))
            .set_content_type(content_type.map(str::to_owned));
        for (k, v) in metadata {
            request = request.metadata(*k, *v);
        }
        if !tags.is_empty() {
            let encoded: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.tagging(encoded.join("&"));
        }
        request.send().await.unwrap();
    }

    /// Uploads `parts` to staging as one multipart upload.
    pub async fn put_multipart(&self, key: &str, parts: &[&[u8]], tagging: Option<&str>) {
        let s3 = &self.aws.s3;
        let upload = s3
            .create_multipart_upload()
            .bucket(STAGING)
            .key(key)
            .set_tagging(tagging.map(str::to_owned))
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap();
        let mut completed = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            let number = index as i32 + 1;
            let out = s3
                .upload_part()
                .bucket(STAGING)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(part.to_vec().into())
                .send()
                .await
                .unwrap();
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(out.e_tag().unwrap())
                    .build(),
            );
        }
        s3.complete_multipart_upload()
            .bucket(STAGING)
            .key(key)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .unwrap();
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.aws.s3.head_object().bucket(bucket).key(key).send().await.is_ok()
    }

    /// Waits until `bucket/key` exists.
    pub async fn wait_for(&self, bucket: &str, key: &str, within: Duration, agent: &AgentProcess) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.exists(bucket, key).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "s3://{bucket}/{key} did not appear within {within:?}; agent log:\n{}",
            agent.log()
        );
    }

    /// Waits until `bucket/key` is gone: the delete half of a move comes
    /// only after the result is published, so after the copy appears.
    pub async fn wait_gone(&self, bucket: &str, key: &str, within: Duration, agent: &AgentProcess) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.exists(bucket, key).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "s3://{bucket}/{key} was still there after {within:?}; agent log:\n{}",
            agent.log()
        );
    }

    pub async fn tags(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let out = self
            .aws
            .s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()
    }

    pub async fn tag(&self, bucket: &str, key: &str, name: &str) -> Option<String> {
        self.tags(bucket, key)
            .await
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Throws away the event queue's messages: objects already in the
    /// bucket, as in one protected after the fact.
    pub async fn purge_events(&self) {
        self.aws
            .sqs
            .purge_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .unwrap();
    }

    /// Sets `[agent] NAME = VALUE` (TOML) in a config [`config`](Self::config)
    /// wrote: its `[agent]` table cannot be given twice through `extra`.
    pub fn set_agent_field(config: &Path, name: &str, value: &str) {
        let text = std::fs::read_to_string(config).unwrap();
        let text = text.replacen("[agent]\n", &format!("[agent]\n{name} = {value}\n"), 1);
        std::fs::write(config, text).unwrap();
    }

    /// Messages (visible or in flight) still on the event queue.
    pub async fn queue_depth(&self) -> u64 {
        self.depth_of(&self.queue_url).await
    }

    /// Messages (visible or in flight) still on the queue at `url`.
    pub async fn depth_of(&self, url: &str) -> u64 {
        let (visible, in_flight) = self.counts_of(url).await;
        visible + in_flight
    }

    /// Messages on the event queue: (visible, in flight).
    pub async fn queue_counts(&self) -> (u64, u64) {
        self.counts_of(&self.queue_url).await
    }

    /// Messages on the queue at `url`: (visible, in flight).
    pub async fn counts_of(&self, url: &str) -> (u64, u64) {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: QueueAttributeName| attrs.get(&name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// A new queue: its URL and ARN.
    pub async fn queue(&self, name: &str) -> (String, String) {
        let url = self
            .aws
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = queue_arn(&self.aws, &url).await;
        (url, arn)
    }

    /// Every message body waiting in the queue at `url` (read, left
    /// there to come back after its visibility timeout).
    pub async fn drain(&self, url: &str) -> Vec<serde_json::Value> {
        self.receive_all(url, false).await
    }

    /// Every message body in the queue at `url`, each deleted once read:
    /// for queues that take longer to read than a visibility timeout, whose
    /// messages would otherwise come back and be read twice.
    pub async fn take_all(&self, url: &str) -> Vec<serde_json::Value> {
        self.receive_all(url, true).await
    }

    async fn receive_all(&self, url: &str, delete: bool) -> Vec<serde_json::Value> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        let mut all = Vec::new();
        loop {
            let out = self
                .aws
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            let mut deletes = Vec::new();
            for (n, message) in messages.iter().enumerate() {
                all.push(serde_json::from_str(message.body().unwrap()).unwrap());
                let handle = message.receipt_handle().unwrap();
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(handle);
                deletes.push(entry.build().unwrap());
            }
            if delete {
                let batch = self
                    .aws
                    .sqs
                    .delete_message_batch()
                    .queue_url(url)
                    .set_entries(Some(deletes));
                batch.send().await.unwrap();
            }
        }
    }

    /// The bytes of `bucket/key` now.
    pub async fn body(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self.aws.s3.get_object().bucket(bucket).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Result notifications the topic delivered so far, as (attributes, body).
    pub async fn notifications(&self) -> Vec<serde_json::Value> {
        self.drain(&self.results_url).await
    }

    /// The result notification of each of `keys` (their message bodies),
    /// waiting up to `within` for all of them. Reading notifications takes
    /// them off the queue: ask for every key a test needs at once.
    pub async fn notifications_for(
        &self,
        keys: &[&str],
        within: Duration,
        agent: &AgentProcess,
    ) -> HashMap<String, serde_json::Value> {
        let deadline = Instant::now() + within;
        let mut found = HashMap::new();
        while keys.iter().any(|key| !found.contains_key(*key)) {
            for notification in self.notifications().await {
                let body: serde_json::Value =
                    serde_json::from_str(notification["Message"].as_str().unwrap_or_default()).unwrap();
                if let Some(key) = body["key"].as_str().filter(|key| keys.contains(key)) {
                    found.entry(key.to_owned()).or_insert(body);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no notification for {:?}:\n{}",
                keys.iter().filter(|key| !found.contains_key(**key)).collect::<Vec<_>>(),
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        found
    }

    pub async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) {
        let tag_set: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
            .collect();
        self.aws
            .s3
            .put_object_tagging()
            .bucket(STAGING)
            .key(key)
            .tagging(Tagging::builder().set_tag_set(Some(tag_set)).build().unwrap())
            .send()
            .await
            .unwrap();
    }
}

pub async fn queue_arn(aws: &Clients, url: &str) -> String {
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    out.attributes.unwrap()[&QueueAttributeName::QueueArn].clone()
}

/// A running `bucketscan run`.
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
    pub stdout: PathBuf,
}

impl AgentProcess {
    /// What it wrote to stderr (the human-readable log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote to stdout (JSON logs and EMF lines, when enabled).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// SIGTERM, as ECS sends it; the exit status and how long it took,
    /// or `None` if it did not exit within `within`.
    pub fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no chance to finish or release anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The agent's `/metrics` at `addr` (its health address), as text.
pub async fn metrics(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `name` (a metric without labels) in `metrics`.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// `bucketscan health [--ready]` against `addr`: (success, output).
pub fn health(addr: &str, ready: bool) -> (bool, String) {
    let mut command = Command::new(crate::bucketscan_bin());
    command.args(["health", "--addr", addr]);
    if ready {
        command.arg("--ready");
    }
    let out = command.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits up to a minute for `done`, showing the agent's log if it never is.
pub fn wait_until(what: &str, agent: &AgentProcess, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that events wait on the queue and none is in flight: the agent
/// received nothing.
pub async fn assert_no_message_received(world: &World, agent: &AgentProcess, why: &str) {
    let (visible, in_flight) = world.queue_counts().await;
    assert!(
        visible >= 1 && in_flight == 0,
        "{why}: {visible} visible, {in_flight} in flight; log:\n{}",
        agent.log()
    );
}
