//! Hot reload under load: plugins and config are replaced again and again
//! (atomically and in place, valid and broken) while objects flow through
//! the agent; every object is handled exactly as some live version said,
//! nothing fails or is lost, and the last valid version is the one live.

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, component};
use std::path::Path;
use std::time::{Duration, Instant};

const OBJECTS: usize = 30;

/// The standard test config with a first `gate` stage whose plugin lives
/// in the test's own directory, and a filetype-filter that denies `deny`
/// (e.g. `"text"` blocks text files).
fn write_config(world: &World, deny: &str) -> std::path::PathBuf {
    let gate = format!("[[buckets.{STAGING}.stages]]\nplugin = \"gate\"");
    let declare = "[plugins.gate]\npath = \"plugins/gate.wasm\"";
    world.config_with(&clamd::shared().address(), &gate, &format!("deny = [{deny}]"), declare)
}

/// Replaces a file the way deploy tools do: a new file renamed over it.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reloads(agent: &AgentProcess) -> (usize, usize) {
    let log = agent.log();
    (
        log.matches("reloaded: new objects use").count(),
        log.matches("reload refused").count(),
    )
}

async fn wait_for_reloads(agent: &AgentProcess, done: usize, refused: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reloads(agent).0 < done || reloads(agent).1 < refused {
        assert!(
            Instant::now() < deadline,
            "expected {done} reloads and {refused} refusals; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_and_config_reload_while_objects_flow_without_losing_any() {
    let world = World::new().await;
    let plugins = world.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let gate = plugins.join("gate.wasm");
    let noop = std::fs::read(component("test_plugin_noop")).unwrap();
    let legacy = std::fs::read(component("test_plugin_legacy")).unwrap();
    std::fs::write(&gate, &noop).unwrap();
    let config = write_config(&world, "");
    let agent = world.start_agent(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.log().contains("watching for changes") {
        assert!(
            Instant::now() < deadline,
            "the agent never started watching; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Objects flow in the background for the whole test.
    let putter = {
        let aws = world.aws.s3.clone();
        tokio::spawn(async move {
            for i in 0..OBJECTS {
                aws.put_object()
                    .bucket(STAGING)
                    .key(format!("flow/{i:02}.txt"))
                    .content_type("text/plain")
                    .body(format!("plain text object {i}\n").into_bytes().into())
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // Valid changes, each waited for, interleaved with broken ones that
    // must be refused while the running version keeps serving.
    let mut done = 0;
    let mut refused = 0;
    for round in 0..3 {
        let plugin = if round % 2 == 0 { &legacy } else { &noop };
        replace_atomically(&gate, plugin);
        done += 1;
        wait_for_reloads(&agent, done, refused).await;

        std::fs::write(&gate, b"\0asm this is not a component").unwrap();
        refused += 1;
        wait_for_reloads(&agent, done, refused).await;
        std::fs::write(&gate, plugin).unwrap(); // in place, not renamed
        done += 1;
        wait_for_reloads(&agent, done, refused).await;

        let deny = if round % 2 == 0 { r#""text""# } else { "" };
        write_config(&world, deny);
        done += 1;
        wait_for_reloads(&agent, done, refused).await;

        std::fs::write(&config, "[buckets.staging\nthis is not toml").unwrap();
        refused += 1;
        wait_for_reloads(&agent, done, refused).await;
        write_config(&world, deny);
        done += 1;
        wait_for_reloads(&agent, done, refused).await;
    }
    putter.await.unwrap();
    // SIGHUP reloads too.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    done += 1;
    wait_for_reloads(&agent, done, refused).await;

    // Every object ends in exactly one place, as a live version decided.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut outcomes = Vec::new();
    for i in 0..OBJECTS {
        let key = format!("flow/{i:02}.txt");
        let quarantined = format!("{STAGING}/{key}");
        loop {
            let promoted = world.exists(PRODUCTION, &key).await;
            let blocked = world.exists(QUARANTINE, &quarantined).await;
            if promoted || blocked {
                assert!(!(promoted && blocked), "{key} is both promoted and quarantined");
                let result = if promoted {
                    world.tag(PRODUCTION, &key, "bucketscan-result").await
                } else {
                    world.tag(QUARANTINE, &quarantined, "bucketscan-result").await
                };
                assert_eq!(
                    result.as_deref(),
                    Some(if promoted { "clean" } else { "blocked" }),
                    "{key}"
                );
                outcomes.push(promoted);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} was never handled; log:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while world.queue_depth().await > 0 {
        assert!(
            Instant::now() < deadline,
            "messages left on the queue; log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = agent.log();
    for line in log.lines().filter(|l| l.contains("reload")) {
        eprintln!("{line}");
    }
    assert!(
        !log.contains("will retry") && !log.contains("not handled"),
        "no object failed:\n{log}"
    );
    let notifications = world.notifications().await;
    let results: Vec<&str> = notifications
        .iter()
        .map(|n| n["MessageAttributes"]["scan-result"]["Value"].as_str().unwrap())
        .collect();
    assert!(results.len() >= OBJECTS, "{results:?}");
    assert!(results.iter().all(|r| *r == "clean" || *r == "blocked"), "{results:?}");
    assert!(
        outcomes.contains(&true) && outcomes.contains(&false),
        "both versions served objects: {outcomes:?}"
    );

    // The last valid config (round 2: deny text) is the one live now.
    world
        .put(
            "after/last.txt",
            b"written after the last reload".to_vec(),
            Some("text/plain"),
            &[],
            &[],
        )
        .await;
    world
        .wait_for(QUARANTINE, "staging/after/last.txt", Duration::from_secs(60), &agent)
        .await;
    assert!(log.contains("generation=") && log.contains("reload refused, the running version keeps serving"));
    assert!(
        log.contains("not a WebAssembly component") || log.contains("plugin `gate`"),
        "{log}"
    );
}
