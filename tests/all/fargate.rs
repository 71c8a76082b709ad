//! Running as an ECS/Fargate task, as closely as this machine allows: the
//! CloudFormation templates pass cfn-lint; the agent container's command,
//! environment and config (the SSM parameter's value) are read from the
//! template and run with the task's volume paths mapped to local dirs and
//! credentials from a local container credentials endpoint; SIGTERM
//! finishes or releases work and loses nothing; the health endpoints
//! follow clamd.
//!
//! (Long by design: one task definition run as Fargate would, step by
//! step; splitting it would scatter one scenario.)

use bucketscan_tests::agent::{
    AgentProcess, PRODUCTION, QUARANTINE, STAGING, World, assert_no_message_received, health, wait_until,
};
use bucketscan_tests::signatures::test_database;
use bucketscan_tests::{clamd, component, free_port, samples, target_dir, wait_for_port, workspace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const WITHIN: Duration = Duration::from_secs(60);

#[test]
fn cloudformation_templates_pass_cfn_lint() {
    let lint = target_dir().join("tools/venv/bin/cfn-lint");
    for template in ["deploy/bucketscan.yaml", "deploy/cross-account-role.yaml"] {
        let out = Command::new(&lint)
            .arg(workspace().join(template))
            .output()
            .expect("cfn-lint runs (scripts/setup)");
        assert!(
            out.status.success(),
            "{template}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The template as JSON, long-form intrinsics.
fn template() -> Value {
    let out = Command::new(target_dir().join("tools/venv/bin/python"))
        .arg(workspace().join("tests/support/cfn_to_json.py"))
        .arg(workspace().join("deploy/bucketscan.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Resolves `Ref` and `Fn::Sub` the way CloudFormation would for this
/// stack; other intrinsics do not occur in what the test reads.
fn resolve(value: &Value, refs: &BTreeMap<&str, String>) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(map) if map.contains_key("Ref") => {
            let name = map["Ref"].as_str().unwrap();
            refs.get(name)
                .unwrap_or_else(|| panic!("no value for Ref {name}"))
                .clone()
        }
        Value::Object(map) if map.contains_key("Fn::Sub") => {
            let mut text = map["Fn::Sub"].as_str().expect("one-argument Fn::Sub").to_owned();
            for (name, value) in refs {
                text = text.replace(&format!("${{{name}}}"), value);
            }
            assert!(!text.contains("${"), "unresolved substitution in:\n{text}");
            text
        }
        other => panic!("unexpected intrinsic {other}"),
    }
}

/// A local stand-in for ECS's container credentials endpoint.
struct CredentialsEndpoint {
    url: String,
    token: String,
    log: std::path::PathBuf,
    _child: std::process::Child,
}

impl CredentialsEndpoint {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let token = "task-token-0123".to_owned();
        let log = dir.join("credentials.jsonl");
        let args = vec![
            workspace()
                .join("tests/support/container_credentials.py")
                .display()
                .to_string(),
            port.to_string(),
            token.clone(),
            log.display().to_string(),
        ];
        let child = clamd::spawn_tied(move || {
            let mut command = Command::new("python3");
            command.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            command
        })
        .unwrap();
        wait_for_port(port, Duration::from_secs(10), "the credentials endpoint");
        Self {
            url: format!("http://127.0.0.1:{port}/v2/credentials/task-1234"),
            token,
            log,
            _child: child,
        }
    }

    fn authorized_requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"authorized\": true"))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_definition_runs_the_agent_with_container_credentials() {
    let world = World::new().await;
    let template = template();
    let agent_container = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == "agent")
        .unwrap()
        .clone();

    // The task's volumes, mapped to local directories as a container
    // runtime would mount them.
    let signatures = world.dir.path().join("volumes/signatures");
    let scratch = world.dir.path().join("volumes/tmp");
    std::fs::create_dir_all(&signatures).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    // The signature bucket, as a mirror would fill it; the agent syncs it
    // into the shared volume, where the clamd "sidecar" reads it.
    world.aws.s3.create_bucket().bucket("signatures").send().await.unwrap();
    let database = test_database(1, SystemTime::now(), "");
    world
        .aws
        .s3
        .put_object()
        .bucket("signatures")
        .key("clamav/daily.cud")
        .body(database.clone().into())
        .send()
        .await
        .unwrap();
    std::fs::write(signatures.join("daily.cud"), &database).unwrap(); // clamd needs one to start
    let clamd_port = free_port();
    let sidecar = clamd::start_with_database(&signatures, clamd_port, clamd::STREAM_MAX_BYTES).unwrap();

    let health_port = free_port();
    let refs: BTreeMap<&str, String> = [
        ("AWS::StackName", "bucketscan-test".to_owned()),
        ("AWS::Region", "us-east-1".to_owned()),
        ("AWS::AccountId", "123456789012".to_owned()),
        ("EventQueue", world.queue_url.clone()),
        ("ResultTopic", world.topic_arn.clone()),
        ("SignatureBucket", "signatures".to_owned()),
        ("SignaturePrefix", "clamav/".to_owned()),
        ("StagingBucket", STAGING.to_owned()),
        ("ProductionBucket", PRODUCTION.to_owned()),
        ("QuarantineBucket", QUARANTINE.to_owned()),
        ("DrainTimeout", "20".to_owned()),
    ]
    .into_iter()
    .collect();
    let config_value = &template["Resources"]["AgentConfig"]["Properties"]["Value"];
    let plugin_dir = component("clamav_bridge").parent().unwrap().display().to_string();
    // The scratch volume first: the paths mapped after it may themselves
    // live under /tmp.
    let config = resolve(config_value, &refs)
        .replace("\"/tmp", &format!("\"{}", scratch.display()))
        .replace("/var/lib/bucketscan/signatures", &signatures.display().to_string())
        .replace("/opt/bucketscan/plugins", &plugin_dir)
        // The sidecar shares the task's loopback; here it has its own port.
        .replace("127.0.0.1:3310", &sidecar.address());

    let mut env: Vec<(String, String)> = Vec::new();
    for variable in agent_container["Environment"].as_array().unwrap() {
        let value = resolve(&variable["Value"], &refs).replace("127.0.0.1:8080", &format!("127.0.0.1:{health_port}"));
        env.push((variable["Name"].as_str().unwrap().to_owned(), value));
    }
    for secret in agent_container["Secrets"].as_array().unwrap() {
        // The config comes from the SSM parameter, the seal key from the
        // generated secret (here: a value of the test's).
        let value = match secret["ValueFrom"]["Ref"].as_str() {
            Some("AgentConfig") => config.clone(),
            Some("SealKey") => "a-generated-seal-key-for-this-test-0123456789".into(),
            other => panic!("unexpected secret source {other:?}"),
        };
        env.push((secret["Name"].as_str().unwrap().to_owned(), value));
    }
    // What Fargate adds: the container credentials endpoint, and nothing
    // else — no access keys in the environment.
    let credentials = CredentialsEndpoint::start(world.dir.path());
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), credentials.url.clone()));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), credentials.token.clone()));
    env.push(("AWS_ENDPOINT_URL".into(), world.moto.endpoint()));
    let command: Vec<String> = agent_container["Command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command, ["run", "--config-env", "BUCKETSCAN_CONFIG"]);
    let mut agent = world.spawn_agent(command, env);

    let health_addr = format!("127.0.0.1:{health_port}");
    wait_until("readiness", &agent, || health(&health_addr, true).0);
    world
        .put("task/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("task/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, "staging/task/eicar.txt", WITHIN, &agent)
        .await;
    world.wait_for(PRODUCTION, "task/notes.txt", WITHIN, &agent).await;
    assert!(
        credentials.authorized_requests() >= 1,
        "the SDK took its credentials from the container endpoint"
    );
    assert!(signatures.join("daily.cud").exists());
    assert!(
        signatures.join("bucketscan-canary.hsb").exists(),
        "the agent proved clamd loaded the volume"
    );

    // JSON logs on stdout: one event per object with bucket, key, verdict
    // and duration; EMF lines beside them.
    let (status, took) = agent.terminate(Duration::from_secs(30)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(20));
    let stdout = agent.stdout();
    let events: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let scanned: Vec<&Value> = events.iter().filter(|e| e["message"] == "scanned").collect();
    let eicar = scanned
        .iter()
        .find(|e| e["key"] == "task/eicar.txt")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(eicar["bucket"], STAGING);
    assert_eq!(eicar["verdict"], "infected");
    assert!(eicar["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(eicar["level"], "INFO");
    let emf: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("_aws").is_some() && e.get("Objects").is_some())
        .collect();
    assert!(
        emf.iter().any(|e| e["Result"] == "infected" && e["Bucket"] == STAGING),
        "{stdout}"
    );
    assert!(emf.iter().any(|e| e["Result"] == "clean"), "{stdout}");
    assert!(
        events.iter().any(|e| e.get("QueueLag").is_some()),
        "queue lag is reported"
    );
}

fn run_with_stop_timeout(world: &World, config: &Path, stop_timeout_secs: u64) -> AgentProcess {
    world.start_agent_with_env(
        config,
        &[("BUCKETSCAN_STOP_TIMEOUT_SECS", &stop_timeout_secs.to_string())],
    )
}

async fn wait_in_flight(world: &World, agent: &AgentProcess, key: &str) {
    let deadline = Instant::now() + WITHIN;
    while !agent.log().contains(&format!("key={key}")) {
        assert!(Instant::now() < deadline, "{key} never started:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!world.exists(PRODUCTION, key).await, "still in flight");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_objects_in_flight_within_the_stop_timeout() {
    let world = World::new().await;
    let mut agent = run_with_stop_timeout(&world, &world.slow_config(&clamd::shared().address()), 30);
    world
        .put("slow/finish.txt", samples::clean_text(), None, &[], &[])
        .await;
    wait_in_flight(&world, &agent, "slow/finish.txt").await;

    let (status, _) = agent.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success());
    assert!(
        world.exists(PRODUCTION, "slow/finish.txt").await,
        "finished before exiting:\n{}",
        agent.log()
    );
    assert_eq!(world.queue_depth().await, 0, "and its message was deleted");
    assert!(!agent.log().contains("released"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_stop_timeout_releases_the_message_and_loses_nothing() {
    let world = World::new().await;
    let config = world.slow_config(&clamd::shared().address());
    let mut agent = run_with_stop_timeout(&world, &config, 1);
    world
        .put("slow/release.txt", samples::clean_text(), None, &[], &[])
        .await;
    wait_in_flight(&world, &agent, "slow/release.txt").await;

    let (status, took) = agent.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_millis(2800),
        "gave up after its 1 s stop timeout, not after the 3 s scan: {took:?}"
    );
    assert!(
        agent.log().contains("message released for another agent"),
        "{}",
        agent.log()
    );
    assert!(!world.exists(PRODUCTION, "slow/release.txt").await);

    // Released, not hidden for the visibility timeout: the next agent
    // takes it at once and finishes it.
    let next = world.start_agent(&config);
    world
        .wait_for(PRODUCTION, "slow/release.txt", Duration::from_secs(30), &next)
        .await;
    let deadline = Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(Instant::now() < deadline, "message left on the queue:\n{}", next.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_clamd_and_metrics_count_objects() {
    let world = World::new().await;
    let port = free_port();
    let clamd_server = clamd::start_on(port, clamd::STREAM_MAX_BYTES).unwrap();
    let config = world.config(&clamd_server.address(), "");
    let health_port = free_port();
    let addr = format!("127.0.0.1:{health_port}");
    let agent = world.start_agent_with_env(
        &config,
        &[("BUCKETSCAN_HEALTH_ADDR", &addr), ("BUCKETSCAN_METRICS", "prometheus")],
    );

    wait_until("ready", &agent, || health(&addr, true).0);
    world.put("metrics/a.txt", samples::clean_text(), None, &[], &[]).await;
    world.wait_for(PRODUCTION, "metrics/a.txt", WITHIN, &agent).await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"bucketscan_objects_total{bucket="staging",result="clean"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("bucketscan_queue_lag_seconds_count"), "{metrics}");

    drop(clamd_server);
    wait_until("not ready without clamd", &agent, || {
        let (ok, body) = health(&addr, true);
        !ok && body.contains("clamd")
    });
    assert!(health(&addr, false).0, "still alive");

    let _back = clamd::start_on(port, clamd::STREAM_MAX_BYTES).unwrap();
    wait_until("ready again", &agent, || health(&addr, true).0);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_is_false_while_the_signature_database_is_missing_or_stale() {
    let world = World::new().await;
    // clamd runs on a directory with plain signatures only: they carry no
    // build time, so nothing proves they are recent.
    let database = world.dir.path().join("signatures");
    std::fs::create_dir_all(&database).unwrap();
    std::fs::copy(
        workspace().join("tests/signatures/bucketscan-test.hdb"),
        database.join("bucketscan-test.hdb"),
    )
    .unwrap();
    let clamd = clamd::start_with_database(&database, free_port(), clamd::STREAM_MAX_BYTES).unwrap();
    let extra = format!(
        "[signatures]\ndatabase-dir = \"{}\"\nmax-age-secs = 3600\nsync-interval-secs = 1\nreload-timeout-secs = 30\n",
        database.display()
    );
    let config = world.config(&clamd.address(), &extra);
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    world.put("waits.txt", samples::clean_text(), None, &[], &[]).await;

    wait_until("health endpoint up", &agent, || health(&addr, false).0);
    wait_until("no build time", &agent, || {
        let (ready, body) = health(&addr, true);
        !ready && body.contains("no database with a build time")
    });

    // A database built two hours ago, written just now: its file is new,
    // its signatures are not (max age one hour).
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::write(database.join("daily.cud"), test_database(1, two_hours_ago, "")).unwrap();
    wait_until("stale by its build time", &agent, || {
        let (ready, body) = health(&addr, true);
        !ready && body.contains("was built 2 h ago; the limit is 1 h")
    });
    assert_no_message_received(&world, &agent, "nothing received while not ready").await;
    assert!(!world.exists(PRODUCTION, "waits.txt").await);

    // A fresh build makes the agent ready, and the waiting event is scanned.
    std::fs::write(database.join("daily.cud"), test_database(2, SystemTime::now(), "")).unwrap();
    wait_until("ready with fresh signatures", &agent, || health(&addr, true).0);
    world.wait_for(PRODUCTION, "waits.txt", WITHIN, &agent).await;
}
