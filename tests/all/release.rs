//! False positives: `bucketscan quarantine list` shows what is held,
//! `bucketscan release` gives an object back and allow-lists its exact
//! bytes, and on-demand scans reach any version of an object.

use aws_sdk_s3::primitives::ByteStream;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, samples};
use sha2::{Digest, Sha256};
use std::time::Duration;

const LISTS: &str = "lists";
const ALLOW_LIST: &str = "s3://lists/allow-list.txt";

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{err}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `bucketscan release --config CONFIG OBJECT --reason REASON --sha256
/// SHA256 --output json EXTRA...`.
fn release(
    world: &World,
    config: &std::path::Path,
    object: &str,
    reason: &str,
    sha256: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "release",
        "--config",
        config.to_str().unwrap(),
        object,
        "--reason",
        reason,
        "--sha256",
        sha256,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    world.cli(&args)
}

/// A world whose agents reload the allow-list object every second and
/// record results (and revocations) in the results table.
async fn with_allow_list() -> (World, std::path::PathBuf) {
    let world = World::new().await;
    world.aws.s3.create_bucket().bucket(LISTS).send().await.unwrap();
    bucketscan_tests::results::create_table(&world.aws.dynamodb).await;
    let config = world.config(
        &clamd::shared().address(),
        &format!(
            "[allow-list]\nobject = \"{ALLOW_LIST}\"\nrefresh-secs = 1\n[results]\ntable = \"{}\"\n",
            bucketscan_tests::results::TABLE
        ),
    );
    (world, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_false_positive_stays_allowed_and_other_bytes_with_it_do_not() {
    let (world, config) = with_allow_list().await;
    let config_arg = config.to_str().unwrap();
    let agent = world.start_agent(&config);
    let eicar = samples::eicar();
    let digest = hex::encode(Sha256::digest(&eicar));
    world
        .put(
            "docs/vendor-test.txt",
            eicar.clone(),
            Some("text/plain"),
            &[],
            &[("team", "qa")],
        )
        .await;
    let held_key = format!("{STAGING}/docs/vendor-test.txt");
    world
        .wait_gone(STAGING, "docs/vendor-test.txt", Duration::from_secs(30), &agent)
        .await;
    assert!(world.exists(QUARANTINE, &held_key).await);

    // What the quarantine holds.
    let out = world.cli(&["quarantine", "list", "--config", config_arg, "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held = json(&out);
    let item = held
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == held_key.as_str())
        .unwrap_or_else(|| panic!("{held:#}"));
    assert_eq!(item["bucket"], QUARANTINE);
    assert_eq!(item["result"], "infected");
    assert!(item["finding"].as_str().unwrap().contains("Eicar"), "{item}");
    assert_eq!(item["source"], "s3://staging/docs/vendor-test.txt");
    assert_eq!(
        item["sha256"],
        digest.as_str(),
        "S3's SHA-256 of the copy: what release wants"
    );
    world.notifications().await;

    // Only the bytes the operator approved: a release naming other bytes
    // (another upload to the same key since) is refused, nothing moves.
    let held_url = format!("s3://{QUARANTINE}/{held_key}");
    let out = release(
        &world,
        &config,
        &held_url,
        "approved something else",
        &"0".repeat(64),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds other bytes than the ones approved"));
    assert!(world.exists(QUARANTINE, &held_key).await && !world.exists(STAGING, "docs/vendor-test.txt").await);

    // Released: back where it came from, tagged allowed, recorded.
    let out = release(
        &world,
        &config,
        &held_url,
        "vendor's test file, ticket SEC-42",
        &digest,
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let released = json(&out);
    assert_eq!(released["to"], "s3://staging/docs/vendor-test.txt");
    assert_eq!(released["sha256"], digest.as_str());
    assert_eq!(released["allow_list"], ALLOW_LIST);
    let by = released["by"].as_str().unwrap().to_owned();
    assert!(by.starts_with("arn:aws:"), "who, from STS: {by}");
    // The object's history in the results table: the detection, then the
    // release with who and why.
    let store = bucketscan_tests::results::reader(&world.aws.dynamodb);
    let history = store.history(STAGING, "docs/vendor-test.txt", 10).await.unwrap();
    let results: Vec<&str> = history.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(results, ["infected", "clean"], "{history:#?}");
    assert!(
        history[1].detail.starts_with(&format!("released by {by} at "))
            && history[1].detail.ends_with(": vendor's test file, ticket SEC-42"),
        "{:?}",
        history[1].detail
    );
    assert_eq!(
        world.body(STAGING, "docs/vendor-test.txt").await,
        eicar,
        "the exact bytes"
    );
    assert!(!world.exists(QUARANTINE, &held_key).await, "out of quarantine");
    let tags = world.tags(STAGING, "docs/vendor-test.txt").await;
    let tag = |k: &str| tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(tag("bucketscan-result").as_deref(), Some("allowed"), "{tags:?}");
    assert!(tag("bucketscan-seal").is_some());
    assert!(
        tag("bucketscan-signature").unwrap().starts_with("released Eicar"),
        "{tags:?}"
    );
    assert_eq!(tag("team").as_deref(), Some("qa"), "its own tags come back");
    assert_eq!(tag("bucketscan-quarantine"), None);
    let head = world
        .aws
        .s3
        .head_object()
        .bucket(STAGING)
        .key("docs/vendor-test.txt")
        .send()
        .await
        .unwrap();
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["bucketscan-released-by"], by);
    assert!(metadata["bucketscan-release-reason"].contains("SEC-42"), "{metadata:?}");
    let list = String::from_utf8(world.body(LISTS, "allow-list.txt").await).unwrap();
    assert!(
        list.starts_with(&format!("{digest} a1-")),
        "marked with the seal key: {list}"
    );
    assert!(
        list.contains(" released s3://quarantine/staging/docs/vendor-test.txt by arn:aws:"),
        "{list}"
    );
    let notes = world.notifications().await;
    let release_note = notes
        .iter()
        .map(|n| serde_json::from_str::<serde_json::Value>(n["Message"].as_str().unwrap()).unwrap())
        .find(|m| m["key"] == "docs/vendor-test.txt" && m["allowed"].is_object())
        .unwrap_or_else(|| panic!("release notification: {notes:#?}"));
    assert_eq!(release_note["allowed"]["verdict"]["verdict"], "infected");
    assert_eq!(release_note["allowed"]["note"], "vendor's test file, ticket SEC-42");

    // The released copy is the agent's own write: its event does not send
    // it back to quarantine.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(world.exists(STAGING, "docs/vendor-test.txt").await, "{}", agent.log());
    assert!(!world.exists(QUARANTINE, &held_key).await);

    // The same bytes uploaded again pass, and say why.
    world
        .put("again/vendor-test.txt", eicar.clone(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(PRODUCTION, "again/vendor-test.txt", Duration::from_secs(30), &agent)
        .await;
    let signature = world
        .tag(PRODUCTION, "again/vendor-test.txt", "bucketscan-signature")
        .await;
    assert!(signature.unwrap().starts_with("allow-listed Eicar"));
    let notes = world.notifications().await;
    let allowed = notes
        .iter()
        .map(|n| serde_json::from_str::<serde_json::Value>(n["Message"].as_str().unwrap()).unwrap())
        .find(|m| m["key"] == "again/vendor-test.txt")
        .unwrap_or_else(|| panic!("{notes:#?}"));
    assert_eq!(allowed["result"], "clean");
    assert!(
        allowed["allowed"]["source"]
            .as_str()
            .unwrap()
            .starts_with("s3://lists/allow-list.txt:1")
    );

    // Different bytes carrying the same EICAR are scanned as usual — also
    // when someone who can write the list object adds their digest
    // without the agents' key.
    let bundle = samples::zip_of("vendor-test.txt", &eicar);
    let forged = format!(
        "{list}{} a1-{} looks legitimate\n",
        hex::encode(Sha256::digest(&bundle)),
        "0".repeat(32)
    );
    world
        .aws
        .s3
        .put_object()
        .bucket(LISTS)
        .key("allow-list.txt")
        .body(ByteStream::from(forged.into_bytes()))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.put("again/bundle.zip", bundle, None, &[], &[]).await;
    world
        .wait_for(QUARANTINE, "staging/again/bundle.zip", Duration::from_secs(30), &agent)
        .await;
    assert!(!world.exists(PRODUCTION, "again/bundle.zip").await);
    assert!(agent.log().contains("has no valid mark"), "the forged line is reported");
}

/// A revocation made while the list object cannot be read (whoever can
/// write it made it unreadable) still reaches the running agents, from
/// the results store.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_reaches_agents_while_the_list_cannot_be_read() {
    let (world, config) = with_allow_list().await;
    let config_arg = config.to_str().unwrap();
    let agent = world.start_agent(&config);
    let digest = hex::encode(Sha256::digest(samples::eicar()));
    world
        .put("in/first.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    let held = format!("{STAGING}/in/first.txt");
    world.wait_for(QUARANTINE, &held, Duration::from_secs(30), &agent).await;
    let out = release(
        &world,
        &config,
        &format!("s3://{QUARANTINE}/{held}"),
        "test file",
        &digest,
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_secs(2)).await;
    world
        .put("in/second.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(PRODUCTION, "in/second.txt", Duration::from_secs(30), &agent)
        .await;

    // The list is no longer text: agents keep the last one they read.
    let not_text = b"\xff\xfe not text".to_vec();
    world
        .aws
        .s3
        .put_object()
        .bucket(LISTS)
        .key("allow-list.txt")
        .body(ByteStream::from(not_text))
        .send()
        .await
        .unwrap();
    let revoke = |reason: &str| {
        world.cli(&[
            "quarantine",
            "revoke",
            "--config",
            config_arg,
            &digest,
            "--reason",
            reason,
            "--by",
            "sec",
        ])
    };
    let out = revoke(" ");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason is empty"));
    let out = revoke("a real sample after all");
    assert_eq!(out.status.code(), Some(2), "the list could not be appended to");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recorded in the results store, but not appended to the list object")
            && stderr.contains("not UTF-8"),
        "{stderr}"
    );

    // The running agent drops the digest all the same.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .put("in/third.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(
            QUARANTINE,
            &format!("{STAGING}/in/third.txt"),
            Duration::from_secs(30),
            &agent,
        )
        .await;
    assert!(!world.exists(PRODUCTION, "in/third.txt").await, "{}", agent.log());
    assert!(agent.log().contains("allow-list not reloaded"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn release_refuses_what_no_agent_quarantined() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    // Someone with write access to the quarantine bucket plants bytes with
    // result tags that look like an agent's.
    world
        .aws
        .s3
        .put_object()
        .bucket(QUARANTINE)
        .key("staging/planted.txt")
        .body(ByteStream::from(samples::eicar()))
        .tagging("bucketscan-result=infected&bucketscan-seal=s1-deadbeef")
        .send()
        .await
        .unwrap();
    let eicar_digest = hex::encode(Sha256::digest(samples::eicar()));
    let out = release(
        &world,
        &config,
        "s3://quarantine/staging/planted.txt",
        "trust me",
        &eicar_digest,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no result tags sealed by a bucketscan agent"),
        "{stderr}"
    );
    assert!(!world.exists(STAGING, "planted.txt").await, "nothing released");
    assert!(world.exists(QUARANTINE, "staging/planted.txt").await, "nothing deleted");
    let out = release(&world, &config, "s3://quarantine/x", " ", "00", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason is empty"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_quarantined_in_place_is_released_in_place_and_kept() {
    let world = World::new().await;
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(r#"mode = "move", bucket = "quarantine""#));
    std::fs::write(
        &config,
        text.replace(r#"mode = "move", bucket = "quarantine""#, r#"mode = "tag""#),
    )
    .unwrap();
    let agent = world.start_agent(&config);
    world
        .put("held.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    // An uploader's key that looks like a quarantine record of another
    // bucket: an in-place object is released where it is, never there.
    world
        .put("production/evil.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for key in ["held.txt", "production/evil.txt"] {
        while world.tag(STAGING, key, "bucketscan-quarantine").await.is_none() {
            assert!(std::time::Instant::now() < deadline, "{}", agent.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let digest = hex::encode(Sha256::digest(samples::eicar()));
    let url = "s3://staging/held.txt";
    let out = release(&world, &config, url, "in place", &digest, &["--to", url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["quarantined_copy_deleted"], false);
    let evil = "s3://staging/production/evil.txt";
    let out = release(
        &world,
        &config,
        evil,
        "looks fine",
        &digest,
        &["--to", "s3://production/evil.txt"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("released in place only"));
    let out = release(&world, &config, evil, "looks fine", &digest, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["to"], evil);
    assert!(
        !world.exists(PRODUCTION, "evil.txt").await,
        "never copied where its key points"
    );
    assert!(world.exists(STAGING, "production/evil.txt").await);
    assert_eq!(world.body(STAGING, "held.txt").await, samples::eicar(), "still there");
    assert_eq!(
        world.tag(STAGING, "held.txt", "bucketscan-result").await.as_deref(),
        Some("allowed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_version_is_scanned_on_demand_with_its_actions() {
    let world = World::new().await;
    world.version(STAGING).await;
    let config = world.config(&clamd::shared().address(), "");
    let put = |bytes: Vec<u8>| {
        world
            .aws
            .s3
            .put_object()
            .bucket(STAGING)
            .key("report.txt")
            .content_type("text/plain")
            .body(ByteStream::from(bytes))
            .send()
    };
    let infected_version = put(samples::eicar()).await.unwrap().version_id.unwrap();
    let current_version = put(samples::clean_text()).await.unwrap().version_id.unwrap();
    // No agent runs: only the on-demand scan touches the object.
    let out = world.cli(&[
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging/report.txt",
        "--version-id",
        &infected_version,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["result"], "infected");
    assert_eq!(report["version_id"], infected_version.as_str());
    // That version is quarantined; the current one is untouched.
    assert_eq!(world.body(QUARANTINE, "staging/report.txt").await, samples::eicar());
    let versions = world
        .aws
        .s3
        .list_object_versions()
        .bucket(STAGING)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = versions.versions().iter().filter_map(|v| v.version_id()).collect();
    assert_eq!(ids, [current_version.as_str()], "only the infected version was removed");
    assert_eq!(world.body(STAGING, "report.txt").await, samples::clean_text());

    // A clean version that is no longer current is scanned, never promoted
    // (that would roll production back); the current one is.
    let newest = samples::pseudo_random_text(4096, 3);
    let newest_version = put(newest.clone()).await.unwrap().version_id.unwrap();
    let scan = |version: &str| {
        world.cli(&[
            "scan",
            "--config",
            config.to_str().unwrap(),
            "s3://staging/report.txt",
            "--version-id",
            version,
            "--output",
            "json",
        ])
    };
    let out = scan(&current_version);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["result"], "clean");
    assert!(
        report["host_actions"].to_string().contains("not the current version"),
        "{report:#}"
    );
    assert!(
        !world.exists(PRODUCTION, "report.txt").await,
        "an old version is never promoted"
    );
    let out = scan(&newest_version);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(world.body(PRODUCTION, "report.txt").await, newest);

    let out = world.cli(&[
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging",
        "--version-id",
        "v",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--version-id needs one object"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_listed_finding_never_skips_the_policy_stages_after_it() {
    let world = World::new().await;
    let exe = std::fs::read(samples::clamav_testfile("clam.exe")).unwrap();
    let eicar = samples::eicar();
    let allowed = [hex::encode(Sha256::digest(&exe)), hex::encode(Sha256::digest(&eicar))];
    // ClamAV first, the file-type policy after it: the order in which a
    // lifted finding used to end inspection before the policy ran.
    let clamav_first = "[[buckets.staging.stages]]\nplugin = \"clamav-bridge\"\ngrants = { clamav = true }\n";
    let config = world.config_with(
        &clamd::shared().address(),
        clamav_first,
        r#"deny = ["executable"]"#,
        &format!("[allow-list]\nsha256 = [\"{}\", \"{}\"]\n", allowed[0], allowed[1]),
    );
    let agent = world.start_agent(&config);
    world.put("tools/clam.exe", exe, None, &[], &[]).await;
    world.put("notes/eicar.txt", eicar, None, &[], &[]).await;

    // The released executable is still an executable: blocked, contained.
    world
        .wait_for(QUARANTINE, "staging/tools/clam.exe", Duration::from_secs(60), &agent)
        .await;
    let tags = world.tags(QUARANTINE, "staging/tools/clam.exe").await;
    let result = tags
        .iter()
        .find(|(k, _)| k == "bucketscan-result")
        .map(|(_, v)| v.as_str());
    assert_eq!(result, Some("blocked"), "{tags:?}\n{}", agent.log());
    assert!(!world.exists(PRODUCTION, "tools/clam.exe").await);
    // A released finding with no policy against it still passes.
    world
        .wait_for(PRODUCTION, "notes/eicar.txt", Duration::from_secs(60), &agent)
        .await;
    assert!(
        world
            .tag(PRODUCTION, "notes/eicar.txt", "bucketscan-signature")
            .await
            .is_some_and(|s| s.starts_with("allow-listed")),
        "{}",
        agent.log()
    );
}
