//! Objects over the pipeline's size limit, end to end through the local
//! AWS server, clamd and the real agent: a container (zip, 7z, ISO 9660,
//! tar and compressed streams) is read by ranged
//! GETs and scanned member by member (the finding names the member, the
//! object carries `bucketscan-coverage = members`); what is not a
//! container, or is a broken one, is never promoted. The limit is set to
//! 2 MiB here so that "large" costs a few megabytes; the same code paths
//! carry multi-gigabyte archives (`benches/large.rs`).

use bucketscan_core::formats::Format;
use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::recorder::Recorder;
use bucketscan_tests::{clamd, samples};
use bucketscan_unpack::samples as archives;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(90);
const LIMIT: usize = 2 << 20;

/// Members of incompressible filler, each under the limit, together over
/// it, then `last`.
fn members_over_the_limit(last: (&'static str, Vec<u8>)) -> Vec<(String, Vec<u8>)> {
    let mut members: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("data/part-{i}.bin"), archives::random_bytes(LIMIT / 2, i + 1)))
        .collect();
    members.push((last.0.to_owned(), last.1));
    members
}

fn refs(members: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    members
        .iter()
        .map(|(name, data)| (name.as_str(), data.as_slice()))
        .collect()
}

/// The tags of `key` once it carries a result in `bucket` (its final
/// place: a move tags the source before it copies). Quarantine keys are
/// prefixed with the source bucket.
async fn settled_in(world: &World, bucket: &str, key: &str, agent: &AgentProcess) -> Vec<(String, String)> {
    let deadline = Instant::now() + WITHIN;
    loop {
        if world.exists(bucket, key).await {
            let tags = world.tags(bucket, key).await;
            if tags.iter().any(|(k, _)| k == "bucketscan-result") {
                return tags;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key}: never settled in {bucket}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn has(tags: &[(String, String)], key: &str, value: &str) -> bool {
    tags.iter().any(|(k, v)| k == key && v == value)
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_over_the_limit_are_scanned_member_by_member_and_nothing_unproven_is_promoted() {
    let world = World::new().await;
    let recorder = Recorder::start(&world.moto.endpoint());
    let config = world.config(&clamd::shared().address(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\nmax-object-bytes = {LIMIT}\n"));
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);

    // EICAR as the last member of a tar.gz, and in a small tar.gz inside a zip.
    let eicar = samples::eicar();
    let tgz_members = members_over_the_limit(("notes/eicar.txt", eicar.clone()));
    let tar = archives::tar(&refs(&tgz_members));
    let tgz = archives::wrap(Format::Gzip, &tar, "big.tar").unwrap();
    let nested = archives::wrap(Format::Gzip, &archives::tar(&[("deep/eicar.txt", &eicar)]), "inner.tar").unwrap();
    let zip_members = members_over_the_limit(("inner.tar.gz", nested));
    let zip = archives::zip(&refs(&zip_members), 8);
    // Clean: a zip of the same filler; broken: the tar.gz cut short;
    // random text over the limit: no container at all.
    let clean_members = members_over_the_limit(("notes/readme.txt", samples::clean_text()));
    let clean = archives::zip(&refs(&clean_members), 8);
    let mut cut = archives::wrap(Format::Gzip, &archives::tar(&refs(&clean_members)), "cut.tar").unwrap();
    cut.truncate(cut.len() - 4096);
    // A 7z (LZMA2, one solid block), EICAR its last member.
    let seven = archives::seven_zip(&refs(&members_over_the_limit(("notes/eicar.txt", eicar.clone()))));
    let clean_seven = archives::seven_zip(&refs(&clean_members));
    // ISO 9660 images: EICAR the last file; and a clean one.
    let disc = archives::iso(&refs(&members_over_the_limit(("notes/eicar.txt", eicar.clone()))));
    let clean_disc = archives::iso(&refs(&clean_members));
    // Tars: clean; a PAX record (no member's data) carrying what the
    // signatures flag; a GNU long name of 2 MiB, past the header budget.
    let clean_tar = archives::tar(&refs(&clean_members));
    let filler = &clean_tar[..clean_tar.len() - 1024]; // without its end blocks
    let hidden = archives::tar_with_pax(
        &[("SCHILY.xattr.user.note", &samples::body_marker())],
        "a.txt",
        2,
        b"ok",
    );
    let pax = [filler, &hidden].concat();
    let long_name = archives::tar_with_long_name(2 << 20, &clean_tar);
    let long_name = archives::wrap(Format::Gzip, &long_name, "names.tar").unwrap();
    // A zip over the limit inside a tar: spooled, then read by seeking.
    let inner_zip = archives::zip(&refs(&members_over_the_limit(("notes/eicar.txt", eicar.clone()))), 0);
    let zips = archives::tar(&[("readme.txt", b"hello"), ("inner.zip", &inner_zip)]);
    // The same zip compressed whole: its size is known only at its end.
    let zip_gz = archives::wrap(Format::Gzip, &inner_zip, "inner.zip").unwrap();
    let uploads = [
        ("large/disc.iso", disc),
        ("large/clean.iso", clean_disc),
        ("large/big.tar.gz", tgz),
        ("large/bundle.7z", seven),
        ("large/clean.7z", clean_seven),
        ("large/outer.zip", zip),
        ("large/clean.zip", clean.clone()),
        ("large/cut.tar.gz", cut),
        ("large/clean.tar", clean_tar.clone()),
        ("large/pax.tar", pax),
        ("large/names.tar.gz", long_name),
        ("large/zips.tar", zips),
        ("large/inner.zip.gz", zip_gz),
        ("large/plain.txt", samples::pseudo_random_text(LIMIT + 1, 5)),
    ];
    for (key, bytes) in &uploads {
        assert!(bytes.len() > LIMIT, "{key} is over the limit");
        world.put(key, bytes.clone(), None, &[], &[]).await;
    }

    let tags = settled_in(&world, QUARANTINE, "staging/large/big.tar.gz", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    let mut alerts = world
        .notifications_for(
            &[
                "large/big.tar.gz",
                "large/outer.zip",
                "large/bundle.7z",
                "large/disc.iso",
                "large/pax.tar",
                "large/zips.tar",
                "large/inner.zip.gz",
            ],
            WITHIN,
            &agent,
        )
        .await;
    let alert = alerts.remove("large/big.tar.gz").unwrap();
    assert_eq!(alert["result"], "infected");
    assert_eq!(alert["coverage"], "members");
    assert_eq!(
        alert["findings"][0]["location"], "large/big.tar.gz!/big.tar!/notes/eicar.txt",
        "{alert}"
    );

    let tags = settled_in(&world, QUARANTINE, "staging/large/outer.zip", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    let alert = alerts.remove("large/outer.zip").unwrap();
    // A member that fits goes to clamd whole; clamd opens the tar.gz.
    assert_eq!(
        alert["findings"][0]["location"], "large/outer.zip!/inner.tar.gz",
        "{alert}"
    );

    let tags = settled_in(&world, QUARANTINE, "staging/large/bundle.7z", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    let alert = alerts.remove("large/bundle.7z").unwrap();
    assert_eq!(
        alert["findings"][0]["location"], "large/bundle.7z!/notes/eicar.txt",
        "{alert}"
    );

    // An image read file by file; the Joliet names are the ones shown.
    let tags = settled_in(&world, QUARANTINE, "staging/large/disc.iso", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    let alert = alerts.remove("large/disc.iso").unwrap();
    assert_eq!(
        alert["findings"][0]["location"], "large/disc.iso!/notes/eicar.txt",
        "{alert}"
    );
    // Every file and every other byte read, and still not promoted: ISO
    // readers disagree on what some images hold.
    let tags = settled_in(&world, STAGING, "large/clean.iso", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "unsupported-container"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    assert!(!world.exists(PRODUCTION, "large/clean.iso").await);

    // Every member clean, and still not promoted: a 7z's packed bytes
    // cannot be proven read to their end.
    let tags = settled_in(&world, STAGING, "large/clean.7z", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "unsupported-container"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");

    let tags = settled_in(&world, PRODUCTION, "large/clean.zip", &agent).await;
    assert!(has(&tags, "bucketscan-result", "clean"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    assert_eq!(world.body(PRODUCTION, "large/clean.zip").await, clean);

    let tags = settled_in(&world, STAGING, "large/cut.tar.gz", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "malformed"), "{tags:?}");

    // A tar's headers are read too: what hides in a PAX record is found.
    let tags = settled_in(&world, QUARANTINE, "staging/large/pax.tar", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    let alert = alerts.remove("large/pax.tar").unwrap();
    assert_eq!(
        alert["findings"][0]["location"], "large/pax.tar!/(tar headers and padding outside every member)",
        "{alert}"
    );
    assert_eq!(
        alert["findings"][0]["signature"], "Bucketscan.Test.BodyMarker.UNOFFICIAL",
        "{alert}"
    );
    let tags = settled_in(&world, QUARANTINE, "staging/large/zips.tar", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    let alert = alerts.remove("large/zips.tar").unwrap();
    assert_eq!(
        alert["findings"][0]["location"], "large/zips.tar!/inner.zip!/notes/eicar.txt",
        "{alert}"
    );
    let tags = settled_in(&world, QUARANTINE, "staging/large/inner.zip.gz", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    let alert = alerts.remove("large/inner.zip.gz").unwrap();
    assert_eq!(
        alert["findings"][0]["location"], "large/inner.zip.gz!/inner.zip!/notes/eicar.txt",
        "{alert}"
    );
    let tags = settled_in(&world, PRODUCTION, "large/clean.tar", &agent).await;
    assert!(has(&tags, "bucketscan-result", "clean"), "{tags:?}");
    assert_eq!(world.body(PRODUCTION, "large/clean.tar").await, clean_tar);
    // A header that would fill memory is a limit, never read whole.
    let tags = settled_in(&world, STAGING, "large/names.tar.gz", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "limits-exceeded"), "{tags:?}");

    let tags = settled_in(&world, STAGING, "large/plain.txt", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "too-large"), "{tags:?}");
    assert!(!tags.iter().any(|(k, _)| k == "bucketscan-coverage"), "{tags:?}");

    // Every read of an object over the limit was a ranged GET, pinned.
    for (key, _) in &uploads {
        for request in recorder.to_object(STAGING, key) {
            let query = request["query"].as_str().unwrap_or_default();
            if request["method"] != "GET" || query.contains("tagging") {
                continue;
            }
            let headers = &request["headers"];
            assert!(headers["range"].is_string(), "{key}: a GET without a range: {request}");
            assert!(
                headers["if-match"].is_string(),
                "{key}: a GET not pinned to the ETag: {request}"
            );
        }
    }
    // The plain text's bytes were never read past its first block.
    let plain: Vec<serde_json::Value> = recorder
        .to_object(STAGING, "large/plain.txt")
        .into_iter()
        .filter(|r| r["method"] == "GET" && !r["query"].as_str().unwrap_or_default().contains("tagging"))
        .collect();
    assert!(
        plain.iter().all(|r| r["headers"]["range"] == "bytes=0-511"),
        "{plain:?}"
    );
}

/// A file over the limit that is no container is still checked against
/// the whole-file hash signatures clamd loads: here one synced from the
/// signature bucket inside a `.cud`; so is such a file as a member of a
/// walked zip. A match is infected and quarantined;
/// a file of the same size that matches nothing is read to its end and
/// stays unscannable (too-large) with coverage `hashes`, never promoted.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_that_is_no_container_is_checked_against_the_synced_hash_signatures() {
    use bucketscan_tests::signatures::{self, test_database};
    let world = World::new().await;
    let (clamd, _db) = signatures::clamd_with_fresh_database(&world).await;
    let known = archives::random_bytes(LIMIT + 4321, 21);
    let unknown = archives::random_bytes(LIMIT + 4321, 22);
    let line = format!("{:x}:{}:Bucketscan.Test.LargeHash\n", md5::compute(&known), known.len());
    let database = test_database(2, std::time::SystemTime::now(), &line);
    signatures::upload(&world, "clamav/daily.cud", database).await;
    let config = world.config(&clamd.address(), &signatures::synced_config(&clamd, 1, 60));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\nmax-object-bytes = {LIMIT}\n"));
    std::fs::write(&config, text).unwrap();
    let recorder = Recorder::start(&world.moto.endpoint());
    let agent = world.start_agent_with_env(&config, &[("AWS_ENDPOINT_URL", &recorder.endpoint())]);
    // The same bytes as a zip member: too large for the engine, hashed
    // as they are read where they lie.
    let zipped = archives::zip(&[("readme.txt", b"see inside"), ("tools/known.bin", &known)], 0);
    world.put("large/known.bin", known, None, &[], &[]).await;
    world.put("large/unknown.bin", unknown.clone(), None, &[], &[]).await;
    world.put("large/bundle.zip", zipped, None, &[], &[]).await;

    let tags = settled_in(&world, QUARANTINE, "staging/large/known.bin", &agent).await;
    assert!(has(&tags, "bucketscan-result", "infected"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "hashes"), "{tags:?}");
    assert!(
        has(&tags, "bucketscan-signature", "Bucketscan.Test.LargeHash.UNOFFICIAL"),
        "{tags:?}"
    );
    let mut alerts = world
        .notifications_for(&["large/known.bin", "large/bundle.zip"], WITHIN, &agent)
        .await;
    let alert = alerts.remove("large/known.bin").unwrap();
    assert_eq!(alert["coverage"], "hashes", "{alert}");
    assert_eq!(
        alert["findings"][0]["signature"],
        "Bucketscan.Test.LargeHash.UNOFFICIAL"
    );

    let alert = alerts.remove("large/bundle.zip").unwrap();
    assert_eq!(alert["result"], "infected", "{alert}");
    assert_eq!(alert["coverage"], "members", "{alert}");
    assert_eq!(alert["findings"][0]["location"], "large/bundle.zip!/tools/known.bin");
    assert_eq!(
        alert["findings"][0]["signature"],
        "Bucketscan.Test.LargeHash.UNOFFICIAL"
    );
    settled_in(&world, QUARANTINE, "staging/large/bundle.zip", &agent).await;

    let tags = settled_in(&world, STAGING, "large/unknown.bin", &agent).await;
    assert!(has(&tags, "bucketscan-result", "unscannable"), "{tags:?}");
    assert!(has(&tags, "bucketscan-signature", "too-large"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "hashes"), "{tags:?}");
    assert!(!world.exists(PRODUCTION, "large/unknown.bin").await);
    // Read to its end, by ranged GETs pinned to what was scanned.
    let gets: Vec<serde_json::Value> = recorder
        .to_object(STAGING, "large/unknown.bin")
        .into_iter()
        .filter(|r| r["method"] == "GET" && !r["query"].as_str().unwrap_or_default().contains("tagging"))
        .collect();
    assert!(!gets.is_empty());
    for request in &gets {
        assert!(request["headers"]["range"].is_string(), "{request}");
        assert!(request["headers"]["if-match"].is_string(), "{request}");
    }
    let last = format!("-{}", unknown.len() - 1);
    assert!(
        gets.iter()
            .any(|r| r["headers"]["range"].as_str().unwrap().ends_with(&last)),
        "the last byte was never read: {gets:?}"
    );
}

/// Contract 0.2.2: an inspector sees where a member lies (`container-key`
/// and `member-path`, each name whole), and a 0.1 plugin, which has no
/// such methods, still runs on every member. A zip member named to pass
/// for a nested one (`a.zip!/tools/payload.bin`) is one name to the
/// plugin, not the member the location string suggests.
#[tokio::test(flavor = "multi_thread")]
async fn inspectors_see_where_a_member_lies_and_0_1_plugins_still_run_on_members() {
    let world = World::new().await;
    let probes = format!(
        r#"
[[buckets.{STAGING}.stages]]
plugin = "legacy"
[[buckets.{STAGING}.stages]]
plugin = "member-probe"
settings = {{ block-names = ["tools/payload.bin"] }}
"#
    );
    let plugins = format!(
        "[plugins.legacy]\npath = \"{}\"\n[plugins.member-probe]\npath = \"{}\"\n",
        bucketscan_tests::component("test_plugin_legacy").display(),
        bucketscan_tests::component("test_plugin_member_probe").display()
    );
    let config = world.config_with(&clamd::shared().address(), &probes, "", &plugins);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[agent]\n", &format!("[agent]\nmax-object-bytes = {LIMIT}\n"));
    std::fs::write(&config, text).unwrap();
    let agent = world.start_agent(&config);

    let gzip_of = |members: &[(String, Vec<u8>)], name: &str| {
        archives::wrap(Format::Gzip, &archives::tar(&refs(members)), name).unwrap()
    };
    let named = gzip_of(
        &members_over_the_limit(("tools/payload.bin", b"harmless bytes".to_vec())),
        "tools.tar",
    );
    let legacy = gzip_of(
        &members_over_the_limit(("x/legacy.bin", b"LEGACY-BLOCK and more".to_vec())),
        "legacy.tar",
    );
    let trick = archives::zip(
        &refs(&members_over_the_limit((
            "a.zip!/tools/payload.bin",
            b"harmless bytes".to_vec(),
        ))),
        8,
    );
    let uploads = [
        ("large/tools.tar.gz", named),
        ("large/legacy.tar.gz", legacy),
        ("large/trick.zip", trick.clone()),
    ];
    for (key, bytes) in &uploads {
        assert!(bytes.len() > LIMIT, "{key} is over the limit");
        world.put(key, bytes.clone(), None, &[], &[]).await;
    }
    // A whole object is no member, whatever its key.
    world
        .put("large/tools/payload.bin", b"harmless bytes".to_vec(), None, &[], &[])
        .await;

    let mut alerts = world
        .notifications_for(&["large/tools.tar.gz", "large/legacy.tar.gz"], WITHIN, &agent)
        .await;
    let alert = alerts.remove("large/tools.tar.gz").unwrap();
    assert_eq!(alert["result"], "blocked", "{alert}");
    let expected = r#"large/tools.tar.gz!/tools.tar!/tools/payload.bin: member-path [\"tools.tar\", \"tools/payload.bin\"] in \"large/tools.tar.gz\""#;
    assert!(alert.to_string().contains(expected), "{alert}");
    let tags = settled_in(&world, QUARANTINE, "staging/large/tools.tar.gz", &agent).await;
    assert!(has(&tags, "bucketscan-result", "blocked"), "{tags:?}");

    // The 0.1 plugin read the member's bytes and blocked it.
    let alert = alerts.remove("large/legacy.tar.gz").unwrap();
    assert_eq!(alert["result"], "blocked", "{alert}");
    assert!(
        alert
            .to_string()
            .contains("large/legacy.tar.gz!/legacy.tar!/x/legacy.bin: legacy rule matched"),
        "{alert}"
    );
    settled_in(&world, QUARANTINE, "staging/large/legacy.tar.gz", &agent).await;

    let tags = settled_in(&world, PRODUCTION, "large/trick.zip", &agent).await;
    assert!(has(&tags, "bucketscan-result", "clean"), "{tags:?}");
    assert!(has(&tags, "bucketscan-coverage", "members"), "{tags:?}");
    assert_eq!(world.body(PRODUCTION, "large/trick.zip").await, trick);
    let tags = settled_in(&world, PRODUCTION, "large/tools/payload.bin", &agent).await;
    assert!(has(&tags, "bucketscan-result", "clean"), "{tags:?}");
}
