//! The image users deploy, built here from `deploy/Dockerfile` and run as
//! ECS runs the task: the agent container and the clamd container from the
//! same image, sharing loopback and the signatures volume, each with the
//! user, read-only root filesystem, entrypoint, command, environment and
//! health check the template gives it, against the local AWS server.

use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World, health};
use bucketscan_tests::podman::{Container, agent_image, image_files, image_size, mount};
use bucketscan_tests::signatures::test_database;
use bucketscan_tests::task::{CredentialsEndpoint, Stack, strings};
use bucketscan_tests::{free_port, samples};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const WITHIN: Duration = Duration::from_secs(90);

/// The port clamd listens on inside the task (`deploy/clamd.conf`).
const CLAMD_PORT: u16 = 3310;

/// `podman run` options from a container definition: user, read-only
/// root, the task's volumes at their container paths.
fn definition_options(definition: &Value, volumes: &[(&str, &Path)]) -> Vec<String> {
    let mut options = vec!["--user".to_owned(), definition["User"].as_str().unwrap().to_owned()];
    if definition["ReadonlyRootFilesystem"] == true {
        options.push("--read-only".into());
    }
    for mount_point in definition["MountPoints"].as_array().unwrap() {
        let source = mount_point["SourceVolume"].as_str().unwrap();
        let (_, host) = volumes
            .iter()
            .find(|(name, _)| *name == source)
            .unwrap_or_else(|| panic!("no local volume for {source}"));
        options.push("-v".into());
        options.push(mount(
            host,
            mount_point["ContainerPath"].as_str().unwrap(),
            mount_point["ReadOnly"] == true,
        ));
    }
    options
}

/// A health check's command (`[CMD, program, args…]`) as `podman exec` runs it.
fn health_command(definition: &Value) -> Vec<String> {
    let command = strings(&definition["HealthCheck"]["Command"]);
    assert_eq!(command[0], "CMD", "exec form: the image has no shell");
    command[1..].to_vec()
}

/// A directory the task's uid may write, as a task volume is.
fn volume(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir.to_owned()
}

#[test]
fn the_image_holds_what_the_task_runs_and_nothing_else() {
    let image = agent_image();
    let files = image_files(image);
    let has = |path: &str| files.iter().any(|f| f.trim_end_matches('/') == path);
    for needed in [
        "usr/local/bin/bucketscan",
        "usr/sbin/clamd",
        "etc/bucketscan/clamd.conf",
        "opt/bucketscan/plugins/clamav_bridge.wasm",
        "opt/bucketscan/plugins/quarantine.wasm",
        "opt/bucketscan/plugins/yara_bridge.wasm",
        "etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(has(needed), "{needed} missing from the image");
    }
    for unwanted in [
        "usr/bin/sh",
        "usr/bin/bash",
        "usr/bin/dash",
        "usr/bin/apt",
        "usr/bin/dpkg",
        "usr/bin/perl",
        "usr/bin/gcc",
        "usr/bin/cc",
        "usr/bin/ls",
        "usr/bin/nc",
        "usr/bin/freshclam",
    ] {
        assert!(!has(unwanted), "{unwanted} is in the image; the task never runs it");
    }
    // The debug build packed here is larger than the release build users
    // get; even so the image stays small (README has the release figure).
    let size = image_size(image);
    assert!(size < 200 << 20, "image is {} MiB", size >> 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_runs_from_the_image_on_real_events() {
    let image = agent_image();
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", CLAMD_PORT)).is_ok(),
        "port {CLAMD_PORT} is taken; the task's clamd listens there"
    );
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let stack = Stack::for_test(&world.queue_url, &world.topic_arn).with_sweep_queue(&sweeps);
    bucketscan_tests::results::create_table(&world.aws.dynamodb).await;
    let agent_definition = stack.container("agent");
    let clamd_definition = stack.container("clamd");

    // The signature bucket a mirror fills; the agent syncs it into the
    // shared volume and the clamd container waits for it.
    world.aws.s3.create_bucket().bucket("signatures").send().await.unwrap();
    world
        .aws
        .s3
        .put_object()
        .bucket("signatures")
        .key("clamav/daily.cud")
        .body(test_database(1, SystemTime::now(), "").into())
        .send()
        .await
        .unwrap();
    let signatures = volume(&world.dir.path().join("volumes/signatures"));
    let scratch = volume(&world.dir.path().join("volumes/scratch"));
    let clamd_scratch = volume(&world.dir.path().join("volumes/clamd-scratch"));
    let volumes = [
        ("signatures", signatures.as_path()),
        ("scratch", scratch.as_path()),
        ("clamd-scratch", clamd_scratch.as_path()),
    ];

    let mut clamd_options = definition_options(&clamd_definition, &volumes);
    let entrypoint = strings(&clamd_definition["EntryPoint"]);
    clamd_options.push(format!("--entrypoint={}", serde_json::to_string(&entrypoint).unwrap()));
    clamd_options.push(image.to_owned());
    let clamd = Container::run(&format!("bucketscan-clamd-{}", std::process::id()), &clamd_options);

    // The agent: the template's config and environment unchanged but for
    // the local AWS server and a free port for its health endpoint.
    let config = stack.agent_config();
    let health_addr = format!("127.0.0.1:{}", free_port());
    let mut env = stack.agent_environment(&agent_definition, &config, |value| {
        value.replace("127.0.0.1:8080", &health_addr)
    });
    let credentials = CredentialsEndpoint::start(world.dir.path());
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), credentials.url.clone()));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), credentials.token.clone()));
    env.push(("AWS_ENDPOINT_URL".into(), world.moto.endpoint()));
    let mut agent_options = definition_options(&agent_definition, &volumes);
    for (name, value) in &env {
        agent_options.push("-e".into());
        agent_options.push(format!("{name}={value}"));
    }
    agent_options.push(image.to_owned());
    agent_options.extend(strings(&agent_definition["Command"]));
    let agent = Container::run(&format!("bucketscan-agent-{}", std::process::id()), &agent_options);

    // Ready once the database is synced, clamd started on it and the
    // canary proved it loaded.
    let deadline = Instant::now() + WITHIN;
    while !health(&health_addr, true).0 {
        assert!(
            Instant::now() < deadline,
            "never ready; agent:\n{}\nclamd:\n{}",
            agent.logs(),
            clamd.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each container's own health check, as ECS would run it (the agent's
    // endpoint on this test's port).
    for (container, definition) in [(&agent, &agent_definition), (&clamd, &clamd_definition)] {
        let command: Vec<String> = health_command(definition)
            .into_iter()
            .map(|arg| arg.replace("127.0.0.1:8080", &health_addr))
            .collect();
        let out = container.exec(&command);
        assert!(
            out.status.success(),
            "{} health check failed: {}{}",
            container.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    world
        .put("image/eicar.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .put("image/notes.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    let waiting = |what: &str| format!("{what}; agent:\n{}", agent.logs());
    let deadline = Instant::now() + WITHIN;
    while !(world.exists(QUARANTINE, "staging/image/eicar.txt").await
        && world.exists(PRODUCTION, "image/notes.txt").await)
    {
        assert!(Instant::now() < deadline, "{}", waiting("objects not handled"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        world
            .tag(QUARANTINE, "staging/image/eicar.txt", "bucketscan-result")
            .await
            .as_deref(),
        Some("infected")
    );
    // Moved: the delete half comes after the alert.
    while world.exists(STAGING, "image/eicar.txt").await {
        assert!(Instant::now() < deadline, "{}", waiting("never moved out of staging"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(credentials.authorized_requests() >= 1, "credentials from the endpoint");
    assert!(signatures.join("daily.cud").exists(), "synced into the shared volume");

    // SIGTERM with the task's stop timeout: the agent drains and exits 0.
    let stop_timeout = Duration::from_secs(agent_definition["StopTimeout"].as_u64().unwrap_or(120).min(30));
    let (code, took) = agent.stop(stop_timeout);
    assert_eq!(code, 0, "agent exit code; logs:\n{}", agent.logs());
    assert!(took < stop_timeout, "stopped by SIGTERM, not killed: {took:?}");
    let events: Vec<Value> = agent
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "scanned" && e["key"] == "image/eicar.txt" && e["verdict"] == "infected"),
        "JSON log events from the container:\n{}",
        agent.logs()
    );
    drop(clamd);
}
