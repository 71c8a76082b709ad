//! Signature databases under attack and failure: a database is judged by
//! the build time it carries, not by when it arrived; one clamd could not
//! load makes the agent not ready (and stop receiving) until fixed; two
//! keys that would overwrite each other are refused by name; and whoever
//! writes the signature bucket may add detections, never allow a file.

use bucketscan_tests::agent::{PRODUCTION, STAGING, World, assert_no_message_received, health, wait_until};
use bucketscan_tests::signatures::{self, test_database};
use bucketscan_tests::{free_port, samples};
use sha2::Digest;
use std::time::{Duration, SystemTime};

const WITHIN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(flavor = "multi_thread")]
async fn an_old_database_uploaded_again_is_stale_however_recent_the_upload() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    // Replace the mirror's database with a build from three days ago: the
    // upload (and the file the agent writes) is brand new.
    signatures::upload(
        &world,
        "clamav/daily.cud",
        test_database(3, SystemTime::now() - 3 * DAY, ""),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 60));
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    world.put("waits.txt", samples::clean_text(), None, &[], &[]).await;
    wait_until("stale by its build time", &agent, || {
        let (ready, body) = health(&addr, true);
        !ready && body.contains("daily.cud version 3) was built 72 h ago; the limit is 24 h")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_message_received(&world, &agent, "not received while stale").await;
    assert!(!world.exists(PRODUCTION, "waits.txt").await);

    signatures::upload(&world, "clamav/daily.cud", test_database(4, SystemTime::now(), "")).await;
    world.wait_for(PRODUCTION, "waits.txt", WITHIN, &agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_clamd_cannot_load_keeps_the_agent_not_ready_until_it_is_fixed() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 5));
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    wait_until("ready", &agent, || health(&addr, true).0);

    // A broken file: clamd's RELOAD fails and it keeps the old databases,
    // saying so only in its own log. The canary tells the agent.
    signatures::upload(&world, "clamav/broken.hdb", b"this is not a signature\n".to_vec()).await;
    wait_until("not ready after a failed reload", &agent, || {
        let (ready, body) = health(&addr, true);
        !ready && body.contains("clamd did not load the databases")
    });
    // An object that arrives now is not scanned with databases clamd may
    // not run: it waits (unreceived, or retried if it was in flight).
    world.put("waits.txt", samples::clean_text(), None, &[], &[]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!world.exists(PRODUCTION, "waits.txt").await);
    assert_ne!(
        world.tag(STAGING, "waits.txt", "bucketscan-result").await.as_deref(),
        Some("clean")
    );

    // Removing it from the mirror removes it locally; the next reload works.
    world
        .aws
        .s3
        .delete_object()
        .bucket("signatures")
        .key("clamav/broken.hdb")
        .send()
        .await
        .unwrap();
    world.wait_for(PRODUCTION, "waits.txt", WITHIN, &agent).await;
    assert!(!clamd.database_dir().join("broken.hdb").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_keys_with_one_file_name_are_refused_by_name() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 60));
    let agent = world.start_agent(&config);
    signatures::upload(
        &world,
        "clamav/extra.hdb",
        b"00000000000000000000000000000000:1:A\n".to_vec(),
    )
    .await;
    signatures::upload(
        &world,
        "clamav/mirror-b/extra.hdb",
        b"00000000000000000000000000000000:1:B\n".to_vec(),
    )
    .await;
    wait_until("the collision is named", &agent, || {
        agent
            .log()
            .contains("s3://signatures/clamav/extra.hdb and s3://signatures/clamav/mirror-b/extra.hdb would both be installed as `extra.hdb`")
    });
    // Nothing was replaced: the agent still scans with the database it had.
    world.put("still.txt", samples::clean_text(), None, &[], &[]).await;
    world.wait_for(PRODUCTION, "still.txt", WITHIN, &agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signature_bucket_may_add_detections_but_never_allow_a_file() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 60));
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    wait_until("ready", &agent, || health(&addr, true).0);

    let eicar = samples::eicar();
    let sha256 = hex::encode(sha2::Sha256::digest(&eicar));
    // An allow-list entry for EICAR's digest, a mute for its signature,
    // the same smuggled inside a new version of the database, and a CVD
    // whose signature does not verify (one byte changed after signing).
    signatures::upload(
        &world,
        "clamav/allow.sfp",
        format!("{sha256}:68:Allowed\n").into_bytes(),
    )
    .await;
    signatures::upload(&world, "clamav/mute.ign2", b"Eicar-Test-Signature\n".to_vec()).await;
    let hdb =
        std::fs::read_to_string(bucketscan_tests::workspace().join("tests/signatures/bucketscan-test.hdb")).unwrap();
    let smuggling = signatures::cud_with(
        "daily",
        7,
        SystemTime::now(),
        &hdb,
        &[("daily.sfp", format!("{sha256}:68:X\n").as_bytes())],
    );
    signatures::upload(&world, "clamav/daily.cud", smuggling).await;
    let mut tampered = test_database(8, SystemTime::now(), "");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    signatures::upload(&world, "clamav/main.cvd", tampered).await;

    wait_until("every refusal named by /readyz", &agent, || {
        let (ready, body) = health(&addr, true);
        ready
            && [
                "clamav/allow.sfp",
                "clamav/mute.ign2",
                "clamav/daily.cud",
                "clamav/main.cvd",
            ]
            .iter()
            .all(|key| body.contains(&format!("refused from the signature bucket: `{key}`")))
    });
    let log = agent.log();
    assert!(log.contains("holds `daily.sfp`"), "{log}");
    assert!(log.contains("digital signature does not verify"), "{log}");
    for file in ["allow.sfp", "mute.ign2", "main.cvd"] {
        assert!(!clamd.database_dir().join(file).exists(), "{file} installed");
    }
    // EICAR is still infected: the database the agent had stays.
    world.put("eicar.txt", eicar, None, &[], &[]).await;
    world
        .wait_for(bucketscan_tests::agent::QUARANTINE, "staging/eicar.txt", WITHIN, &agent)
        .await;
    assert_eq!(
        world
            .tag(
                bucketscan_tests::agent::QUARANTINE,
                "staging/eicar.txt",
                "bucketscan-result"
            )
            .await
            .as_deref(),
        Some("infected")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_is_refused_and_a_required_database_deleted_makes_scans_wait() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    signatures::upload(&world, "clamav/daily.cud", test_database(5, SystemTime::now(), "")).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = world.config(
        &clamd.address(),
        &signatures::synced_config(&clamd, 1, 60).replace("[signatures]\n", "[signatures]\nrequired = [\"daily\"]\n"),
    );
    let agent = world.start_agent_with_env(&config, &[("BUCKETSCAN_HEALTH_ADDR", &addr)]);
    wait_until("ready on version 5", &agent, || {
        health(&addr, true).0 && agent.log().contains("database=daily.cud version=5")
    });
    // An older build, validly made, uploaded over it: refused.
    signatures::upload(&world, "clamav/daily.cud", test_database(4, SystemTime::now(), "")).await;
    wait_until("the rollback refused", &agent, || {
        health(&addr, true)
            .1
            .contains("is version 4, older than the installed version 5")
    });
    // The daily database deleted from the bucket: not ready, so nothing
    // is scanned with what is left.
    world
        .aws
        .s3
        .delete_object()
        .bucket("signatures")
        .key("clamav/daily.cud")
        .send()
        .await
        .unwrap();
    wait_until("not ready without the required database", &agent, || {
        let (ready, body) = health(&addr, true);
        !ready && body.contains("the required database `daily`")
    });
    // The old build uploaded again, now that no file holds version 5:
    // the floor outlives the file, so it is still a rollback.
    signatures::upload(&world, "clamav/daily.cud", test_database(4, SystemTime::now(), "")).await;
    wait_until("the rollback refused after the deletion", &agent, || {
        agent
            .log()
            .matches("is version 4, older than the installed version 5")
            .count()
            == 2
    });
    assert!(!health(&addr, true).0, "still not ready");
    world.put("waits.txt", samples::clean_text(), None, &[], &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!world.exists(PRODUCTION, "waits.txt").await);
}

/// `bucketscan scan` with `[signatures]` syncs and proves the databases
/// before it reads an object: with a stale build it refuses to start
/// (naming why) instead of reporting every object `stale-signatures`; with
/// a fresh one it scans with what it synced.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_proves_its_signatures_first_and_refuses_stale_ones() {
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 60));
    world.put("old/eicar.txt", samples::eicar(), None, &[], &[]).await;
    let sweep = || {
        world.cli(&[
            "scan",
            "--config",
            config.to_str().unwrap(),
            "s3://staging/old/",
            "--output",
            "json",
        ])
    };

    signatures::upload(
        &world,
        "clamav/daily.cud",
        test_database(5, SystemTime::now() - 3 * DAY, ""),
    )
    .await;
    let out = sweep();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[signatures]: not proven loaded")
            && stderr.contains("daily.cud version 5) was built 72 h ago"),
        "{stderr}"
    );
    assert_eq!(
        world.tag(STAGING, "old/eicar.txt", "bucketscan-result").await,
        None,
        "nothing scanned"
    );

    signatures::upload(&world, "clamav/daily.cud", test_database(6, SystemTime::now(), "")).await;
    let out = sweep();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(json["summary"], serde_json::json!({"infected": 1}), "{json:#}");
}
