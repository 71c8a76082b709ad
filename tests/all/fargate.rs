//! Running as an ECS/Fargate task, as closely as this machine allows (the
//! templates' static checks are in `templates`): the agent container's command,
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
use bucketscan_tests::task::{CredentialsEndpoint, Stack, strings};
use bucketscan_tests::{clamd, component, free_port, samples, target_dir, workspace};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const WITHIN: Duration = Duration::from_secs(60);

/// A task's volumes mapped to local directories as a container runtime
/// would mount them, the signature mirror bucket as a mirror fills it (the
/// task syncs it into the shared volume), and the clamd "sidecar" reading
/// that volume.
struct TaskVolumes {
    signatures: std::path::PathBuf,
    scratch: std::path::PathBuf,
    sidecar: clamd::ClamdServer,
}

impl TaskVolumes {
    async fn new(world: &World) -> Self {
        let signatures = world.dir.path().join("volumes/signatures");
        let scratch = world.dir.path().join("volumes/tmp");
        std::fs::create_dir_all(&signatures).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
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
        let sidecar = clamd::start_with_database(&signatures, free_port(), clamd::STREAM_MAX_BYTES).unwrap();
        Self {
            signatures,
            scratch,
            sidecar,
        }
    }

    /// The stack's config with the container paths mapped here. The
    /// scratch volume first: the paths mapped after it may themselves live
    /// under /tmp.
    fn map(&self, config: &str) -> String {
        let plugin_dir = component("clamav_bridge").parent().unwrap().display().to_string();
        config
            .replace("\"/tmp", &format!("\"{}", self.scratch.display()))
            .replace("/var/lib/bucketscan/signatures", &self.signatures.display().to_string())
            .replace("/opt/bucketscan/plugins", &plugin_dir)
            // The sidecar shares the task's loopback; here it has its own port.
            .replace("127.0.0.1:3310", &self.sidecar.address())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_definition_runs_the_agent_with_container_credentials() {
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let stack = Stack::for_test(&world.queue_url, &world.topic_arn).with_sweep_queue(&sweeps);
    let agent_container = stack.container("agent");
    bucketscan_tests::results::create_table(&world.aws.dynamodb).await;

    let task = TaskVolumes::new(&world).await;
    let health_port = free_port();
    let config = task.map(&stack.agent_config());
    let mut env = stack.agent_environment(&agent_container, &config, |value| {
        value.replace("127.0.0.1:8080", &format!("127.0.0.1:{health_port}"))
    });
    // What Fargate adds: the container credentials endpoint, and nothing
    // else — no access keys in the environment.
    let credentials = CredentialsEndpoint::start(world.dir.path());
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), credentials.url.clone()));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), credentials.token.clone()));
    env.push(("AWS_ENDPOINT_URL".into(), world.moto.endpoint()));
    let command = strings(&agent_container["Command"]);
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
    assert!(task.signatures.join("daily.cud").exists());
    assert!(
        task.signatures.join("bucketscan-canary.hsb").exists(),
        "the agent proved clamd loaded the volume"
    );
    results_are_recorded_in_the_templates_table(&world, &agent).await;

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

#[tokio::test(flavor = "multi_thread")]
async fn the_api_task_serves_scans_with_the_config_its_template_writes() {
    let world = World::new().await;
    world.aws.events.create_event_bus().name("scans").send().await.unwrap();
    let key = "bsk_template-test-key-0123456789abcdefghijklmn";
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    let mut stack = Stack::api_for_test(&world.topic_arn, &digest, "scans");
    let (handoff, _) = world.queue("api-handoff").await;
    stack.refs.insert("HandoffQueue", handoff);
    // With sign-on for the console: the load balancer's ARN is the signer.
    stack.refs.insert("ConsoleOidcIssuer", "https://idp.example.com".into());
    stack
        .refs
        .insert("LoadBalancer", bucketscan_tests::load_balancer::SIGNER.into());
    let api_container = stack.container("api");
    let task = TaskVolumes::new(&world).await;
    let config = task.map(&stack.config("ApiConfig"));
    assert!(config.contains("event-bus = \"scans\""), "{config}");
    assert!(config.contains("[serve.console]"), "{config}");
    let port = free_port();
    let mut env = stack.agent_environment(&api_container, &config, |value| value);
    assert!(
        env.iter().any(|(name, _)| name == "BUCKETSCAN_CONSOLE_SECRET"),
        "{env:?}"
    );
    env.extend(world.moto.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let mut command = strings(&api_container["Command"]);
    assert_eq!(command[..3], ["serve", "--config-env", "BUCKETSCAN_CONFIG"]);
    let listen = command.iter().position(|a| a == "--listen").unwrap() + 1;
    assert_eq!(command[listen], "0.0.0.0:8080");
    command[listen] = format!("127.0.0.1:{port}");
    let mut api = world.spawn_agent(command, env);
    let health_addr = format!("127.0.0.1:{port}");
    wait_until("the API's readiness", &api, || health(&health_addr, true).0);

    // The key the stack was given scans uploads with "uploads"...
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("http://{health_addr}/v1/scan?pipeline=uploads"))
        .bearer_auth(key)
        .body(samples::eicar())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", api.log());
    let report: Value = answer.json().await.unwrap();
    assert_eq!(report["result"], "infected");
    // ...and objects of the scanned bucket, with its actions.
    world
        .put("api/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    let answer = client
        .post(format!("http://{health_addr}/v1/objects/scan"))
        .bearer_auth(key)
        .body(serde_json::json!({"bucket": STAGING, "key": "api/notes.txt"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", api.log());
    assert!(world.exists(PRODUCTION, "api/notes.txt").await);
    // The console is on, and answers only the load balancer's tokens.
    let answer = client
        .get(format!("http://{health_addr}/console/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("no x-amzn-oidc-data header"));
    let (status, _) = api.terminate(Duration::from_secs(30)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
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
    let metrics = bucketscan_tests::agent::metrics(&addr).await;
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

#[test]
fn ephemeral_storage_holds_the_spool_budget_and_clamds_scratch() {
    let stack = Stack::for_test("queue", "topic");
    let sizes = stack.template["Mappings"]["SpoolSizes"].as_object().unwrap();
    for (budget_gib, size) in sizes {
        let budget: u64 = budget_gib.parse().unwrap();
        let bytes: u64 = size["Bytes"].as_str().unwrap().parse().unwrap();
        let ephemeral = size["EphemeralGiB"].as_u64().unwrap();
        assert_eq!(bytes, budget << 30, "{budget_gib}: Bytes");
        // clamd unpacks up to MaxScanSize (4000M) per scan, four at once.
        assert!(
            ephemeral >= budget + 16 + 2,
            "{budget_gib} GiB: {ephemeral} GiB of ephemeral storage"
        );
        assert!((21..=200).contains(&ephemeral), "Fargate allows 21-200 GiB");
    }
    // The agent's config carries the budget the storage was sized for.
    let config = stack.agent_config();
    let default = stack.refs["SpoolBudgetGiB"].clone();
    assert!(
        config.contains(&format!(
            "spool-budget-bytes = {}",
            sizes[&default]["Bytes"].as_str().unwrap()
        )),
        "{config}"
    );
    let task = &stack.template["Resources"]["TaskDefinition"]["Properties"];
    assert_eq!(
        stack.resolve(&task["EphemeralStorage"]["SizeInGiB"]),
        sizes[&default]["EphemeralGiB"].to_string()
    );
    let clamd_conf = std::fs::read_to_string(workspace().join("deploy/clamd.conf")).unwrap();
    assert!(clamd_conf.contains("MaxScanSize 4000M") && clamd_conf.contains("TemporaryDirectory /tmp/clamd"));
}

/// `value` with `Ref` and `Fn::Sub` replaced from `refs`, as a JSON tree.
fn resolved_tree(value: &Value, refs: &[(&str, &str)]) -> Value {
    let substitute = |text: &str| {
        refs.iter().fold(text.to_owned(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
    };
    match value {
        Value::Object(map) if map.contains_key("Ref") => {
            let name = map["Ref"].as_str().unwrap();
            let (_, value) = refs.iter().find(|(n, _)| *n == name).unwrap();
            Value::String((*value).to_owned())
        }
        Value::Object(map) if map.contains_key("Fn::Sub") => {
            Value::String(substitute(map["Fn::Sub"].as_str().unwrap()))
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), resolved_tree(v, refs))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolved_tree(v, refs)).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_readme_shows_the_bucket_policy_the_template_applies() {
    let out = Command::new(target_dir().join("tools/venv/bin/python"))
        .arg(workspace().join("tests/support/cfn_to_json.py"))
        .arg(workspace().join("deploy/protected-bucket-policy.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let template: Value = serde_json::from_slice(&out.stdout).unwrap();
    let policy = resolved_tree(
        &template["Resources"]["Policy"]["Properties"]["PolicyDocument"],
        &[
            ("AWS::Partition", "aws"),
            ("Bucket", "BUCKET"),
            ("AgentRoleArn", "AGENT_ROLE_ARN"),
            ("AgentTagKeyPattern", "bucketscan-*"),
        ],
    );
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = &readme[readme.find("**Tag-based access control.**").expect("README section")..];
    let json = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let shown: Value = serde_json::from_str(json).unwrap();
    // One action may be a string or a list of one.
    let normal = |mut policy: Value| {
        for statement in policy["Statement"].as_array_mut().unwrap() {
            if let Value::String(action) = &statement["Action"] {
                statement["Action"] = Value::Array(vec![Value::String(action.clone())]);
            }
        }
        policy
    };
    assert_eq!(normal(shown), normal(policy));
}

/// What ECS puts in every container's environment, and what the agent's
/// own configuration holds: none of it may reach clamd.
const SECRETS: &[(&str, &str)] = &[
    (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "/v2/credentials/task-role-secret",
    ),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.23/v1/credentials",
    ),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "token-secret"),
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLESECRET"),
    ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
    ("AWS_SESSION_TOKEN", "session-token-secret"),
    ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/task-secret"),
    ("BUCKETSCAN_CONFIG", "[agent]\nseal-key = 'seal-secret'"),
    ("BUCKETSCAN_SEAL_KEY", "seal-secret-0123456789"),
];

#[test]
fn the_clamd_sidecar_hands_clamd_an_empty_environment() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("signatures");
    std::fs::create_dir_all(&database).unwrap();
    std::fs::write(database.join("daily.cud"), b"a database").unwrap();
    let conf = dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "DatabaseDirectory {}\nTemporaryDirectory {}\n",
            database.display(),
            dir.path().join("clamd-tmp").display()
        ),
    )
    .unwrap();
    // A stand-in for clamd that writes down the environment it was given.
    let seen = dir.path().join("environment");
    let stand_in = dir.path().join("clamd");
    std::fs::write(&stand_in, format!("#!/bin/sh\nenv > '{}'\n", seen.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(bucketscan_tests::bucketscan_bin())
        .args([
            "clamd",
            "sidecar",
            "--config",
            conf.to_str().unwrap(),
            "--clamd",
            stand_in.to_str().unwrap(),
        ])
        .envs(SECRETS.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let environment = std::fs::read_to_string(&seen).expect("the stand-in ran");
    for (name, value) in SECRETS {
        assert!(!environment.contains(name), "clamd was given {name}:\n{environment}");
        assert!(!environment.contains(value), "clamd was given the value of {name}");
    }
}

#[test]
fn the_task_keeps_clamd_apart_from_the_agents_files_and_identity() {
    for (stack, main, config) in [
        (Stack::for_test("queue", "topic"), "agent", "AgentConfig"),
        (Stack::api_for_test("topic", &"0".repeat(64), ""), "api", "ApiConfig"),
    ] {
        let agent = stack.container(main);
        let clamd = stack.container("clamd");
        assert_ne!(agent["User"], clamd["User"], "{main}: clamd runs as its own uid");
        let mounts = |container: &Value| -> Vec<(String, String, bool)> {
            container["MountPoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["SourceVolume"].as_str().unwrap().to_owned(),
                        m["ContainerPath"].as_str().unwrap().to_owned(),
                        m["ReadOnly"] == true,
                    )
                })
                .collect()
        };
        let (agent_mounts, clamd_mounts) = (mounts(&agent), mounts(&clamd));
        for (volume, path, read_only) in &clamd_mounts {
            let shared = agent_mounts.iter().any(|(v, _, _)| v == volume);
            // The one volume they share is the signatures, read-only for clamd.
            assert!(
                !shared || (volume == "signatures" && *read_only),
                "{main}: clamd mounts the agent's volume `{volume}` at {path} (read-only: {read_only})"
            );
        }
        // The agent's spool and compiled-plugin cache live on its own
        // scratch volume, which clamd does not mount.
        let config = stack.config(config);
        let agent_tmp = agent_mounts
            .iter()
            .find(|(_, path, _)| path == "/tmp")
            .expect("a scratch volume");
        assert!(!clamd_mounts.iter().any(|(v, _, _)| *v == agent_tmp.0), "{main}");
        for setting in ["cache-dir = \"/tmp/", "spool-dir = \"/tmp/"] {
            assert!(config.contains(setting), "{main}: {setting}\n{config}");
        }
    }
}

#[test]
fn only_the_tasks_may_publish_results() {
    for stack in [
        Stack::for_test("queue", "topic"),
        Stack::api_for_test("topic", &"0".repeat(64), ""),
    ] {
        let resources = stack.template["Resources"].as_object().unwrap();
        let policy = resources
            .values()
            .find(|r| r["Type"] == "AWS::SNS::TopicPolicy" && r["Properties"]["Topics"][0]["Ref"] == "ResultTopic")
            .expect("a policy on the result topic");
        let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap();
        let deny = statements
            .iter()
            .find(|s| s["Effect"] == "Deny" && s["Action"] == "sns:Publish" && s["Principal"] == "*")
            .expect("everyone else is denied Publish");
        let allowed = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].to_string();
        assert!(allowed.contains("TaskRole"), "{allowed}");
    }
}

#[test]
fn every_dead_letter_queue_raises_an_alarm() {
    for stack in [
        Stack::for_test("queue", "topic"),
        Stack::api_for_test("topic", &"0".repeat(64), ""),
    ] {
        let resources = stack.template["Resources"].as_object().unwrap();
        let dead_letters: Vec<String> = resources
            .values()
            .filter_map(|r| r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].as_str())
            .map(str::to_owned)
            .collect();
        assert!(!dead_letters.is_empty(), "the stack has dead-letter queues");
        for queue in dead_letters {
            let watched = resources.values().any(|r| {
                r["Type"] == "AWS::CloudWatch::Alarm"
                    && r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] == queue.as_str()
                    && r["Properties"]["AlarmActions"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            });
            assert!(
                watched,
                "no alarm watches {queue}: what lands there is an object nobody finished"
            );
        }
    }
}

/// Both results are in the table the template creates, under the keys its
/// indexes name: the object's history, the day's infected results, the
/// bytes' SHA-256.
async fn results_are_recorded_in_the_templates_table(world: &World, agent: &AgentProcess) {
    use bucketscan_runtime::results::record;
    let store = bucketscan_tests::results::reader(&world.aws.dynamodb);
    // Written in a batch after the move; the test saw the copy, not yet
    // the record.
    let history = bucketscan_tests::results::recorded(&store, STAGING, "task/eicar.txt", 1).await;
    assert_eq!(history.len(), 1, "{history:?}\n{}", agent.log());
    let eicar = &history[0];
    assert_eq!(eicar.result, "infected");
    assert_eq!(eicar.detail, "Eicar-Test-Signature.UNOFFICIAL");
    let report: Value = serde_json::from_str(&eicar.report).unwrap();
    assert_eq!(report["findings"][0]["engine"], "clamav");
    let day = record::today();
    let infected = store.result_day("infected", &day, 10).await.unwrap();
    assert!(infected.iter().any(|r| r.key == "task/eicar.txt"), "{infected:?}");
    bucketscan_tests::results::recorded(&store, STAGING, "task/notes.txt", 1).await;
    let in_bucket = store.bucket_day(STAGING, &day, 10).await.unwrap();
    let keys: Vec<&str> = in_bucket.iter().map(|r| r.key.as_str()).collect();
    assert!(
        keys.contains(&"task/notes.txt") && keys.contains(&"task/eicar.txt"),
        "{keys:?}"
    );
    let sha256 = eicar.sha256.as_deref().expect("the bytes were read");
    assert_eq!(store.by_sha256(sha256, 10).await.unwrap().len(), 1);
}

#[test]
fn the_api_templates_console_reads_groups_where_its_sign_on_puts_them() {
    let config_with = |refs: &[(&'static str, &str)]| {
        let mut stack = Stack::api_for_test("topic", &"0".repeat(64), "");
        stack.refs.insert(
            "LoadBalancer",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1".into(),
        );
        for (name, value) in refs {
            stack.refs.insert(name, (*value).to_owned());
        }
        stack.config("ApiConfig")
    };
    assert!(!config_with(&[]).contains("[serve.console]"), "no sign-on, no console");
    let oidc = config_with(&[("ConsoleOidcIssuer", "https://idp.example.com")]);
    assert!(oidc.contains("group-claim = \"groups\""), "{oidc}");
    assert!(oidc.contains("signer = \"arn:aws:elasticloadbalancing:"), "{oidc}");
    let saml = config_with(&[
        ("ConsoleSamlMetadataUrl", "https://idp.example.com/metadata.xml"),
        ("ConsoleDomainName", "scan.example.com"),
    ]);
    assert!(saml.contains("group-claim = \"custom:groups\""), "{saml}");
    assert!(
        saml.contains("{ role = \"releaser\", groups = [\"bucketscan-releasers\"] }"),
        "{saml}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_sweep_runs_a_small_task_that_queues_the_bucket_for_the_agents() {
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let mut stack = Stack::for_test(&world.queue_url, &world.topic_arn).with_sweep_queue(&sweeps);
    assert!(!stack.holds("HasSweepSchedule"), "no schedule unless one is given");
    stack.refs.insert("SweepSchedule", "cron(0 3 ? * SUN *)".into());
    stack.refs.insert("SweepPrefix", "backlog/".into());
    assert!(stack.holds("HasSweepSchedule"));

    let resources = &stack.template["Resources"];
    let schedule = &resources["ScheduledSweep"]["Properties"];
    assert_eq!(stack.resolve(&schedule["ScheduleExpression"]), "cron(0 3 ? * SUN *)");
    let ecs = &schedule["Target"]["EcsParameters"];
    assert_eq!(ecs["TaskDefinitionArn"]["Ref"], "SweepTaskDefinition");
    assert_eq!(ecs["LaunchType"], "FARGATE");
    // The sweep task lists and queues, nothing else: no clamd, no reads.
    let statements = resources["SweepTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let actions: Vec<&str> = statements
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::Array(actions) => actions.iter().map(|a| a.as_str().unwrap()).collect(),
            action => vec![action.as_str().unwrap()],
        })
        .collect();
    assert_eq!(
        actions,
        [
            "s3:ListBucket",
            "sqs:SendMessage",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem"
        ]
    );
    // The table's sweep records only.
    assert_eq!(
        statements[2]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0],
        "sweep#*"
    );
    let containers = resources["SweepTaskDefinition"]["Properties"]["ContainerDefinitions"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);

    for i in 0..3 {
        world
            .put(
                &format!("backlog/{i}.txt"),
                samples::clean_text(),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    world
        .put("elsewhere.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world.purge_events().await;
    bucketscan_tests::results::create_table(&world.aws.dynamodb).await;

    // What the schedule starts, run as ECS would: its command, the config
    // from the agents' SSM parameter, the local AWS server for AWS.
    let sweep = stack.container_of("SweepTaskDefinition", "sweep");
    let command: Vec<String> = sweep["Command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| stack.resolve(part))
        .collect();
    assert_eq!(
        &command[..4],
        ["scan", "--config-env", "BUCKETSCAN_CONFIG", "s3://staging/backlog/"]
    );
    let config = stack.agent_config();
    assert!(config.contains(&format!("sweep-queues = [\"{sweeps}\"]")), "{config}");
    let mut env = stack.agent_environment(&sweep, &config, |value| value);
    env.extend(world.env());
    let out = Command::new(bucketscan_tests::bucketscan_bin())
        .args(&command)
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut keys: Vec<String> = world
        .drain(&sweeps)
        .await
        .iter()
        .map(|item| {
            assert_eq!(item["type"], "bucketscan:sweep-item", "{item}");
            item["key"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["backlog/0.txt", "backlog/1.txt", "backlog/2.txt"]);
    assert_eq!(world.queue_depth().await, 0, "nothing on the upload queue");
    // Its record, for `sweep status`, in the table the role may write.
    let printed = String::from_utf8_lossy(&out.stdout);
    let id = printed.split_whitespace().nth(1).unwrap().trim_end_matches(':');
    let store = bucketscan_tests::results::reader(&world.aws.dynamodb);
    let record = store.load_sweep(id).await.unwrap().expect("the sweep's record");
    assert_eq!((record.queued, record.state.as_str()), (3, "queued"), "{record:?}");
}
