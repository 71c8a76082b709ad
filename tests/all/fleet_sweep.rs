//! Sweeps as work for the fleet: `bucketscan scan --enqueue` turns a
//! listing into sweep items on the agents' queue, the real agent scans
//! them like uploads, and a sweep resumes after the last key it queued.

use bucketscan_runtime::inventory::InventoryRow;
use bucketscan_tests::agent::{PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::{clamd, samples};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

fn enqueue(world: &World, config: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging/backlog/",
        "--enqueue",
        "--sweep-id",
        "backlog-1",
        "--rate",
        "50",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = world.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enqueued_sweep_is_scanned_by_the_agents_and_resumes_after_its_last_key() {
    let world = World::new().await;
    bucketscan_tests::results::create_table(&world.aws.dynamodb).await;
    let config = world.config(
        &clamd::shared().address(),
        &format!("[results]\ntable = \"{}\"\n", bucketscan_tests::results::TABLE),
    );
    // Already in the bucket before anyone scanned it: the upload events
    // are thrown away, as for a bucket protected after the fact.
    for i in 0..10 {
        let bytes = if i == 7 {
            samples::eicar()
        } else {
            samples::clean_text()
        };
        world
            .put(&format!("backlog/{i:02}.txt"), bytes, Some("text/plain"), &[], &[])
            .await;
    }
    world.purge_events().await;
    assert_eq!(world.queue_depth().await, 0);

    // Resumed after 04: only 05..09 are queued.
    let done = enqueue(&world, &config, &["--start-after", "backlog/04.txt"]);
    assert_eq!(done["queued"], 5, "{done}");
    assert_eq!(done["last_key"], "backlog/09.txt");
    assert_eq!(done["sweep_id"], "backlog-1");
    assert_eq!(world.queue_depth().await, 5);

    let agent = world.start_agent(&config);
    for i in [5, 6, 8, 9] {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    world
        .wait_for(QUARANTINE, "staging/backlog/07.txt", WITHIN, &agent)
        .await;
    for i in 0..5 {
        let key = format!("backlog/{i:02}.txt");
        assert!(
            world.exists(STAGING, &key).await,
            "{key} was not part of the resumed sweep"
        );
        assert_eq!(world.tag(STAGING, &key, "bucketscan-result").await, None);
    }

    wait_until_handled(&world).await;
    world.notifications().await;

    // The whole prefix again: the four promoted copies' sources are still
    // there with their sealed results, and are skipped (no scan, no
    // alert); the five never scanned are.
    let done = enqueue(&world, &config, &[]);
    assert_eq!(done["queued"], 9, "{done}");
    for i in 0..5 {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    wait_until_handled(&world).await;
    let mut published: Vec<String> = world
        .notifications()
        .await
        .iter()
        .map(|n| {
            let body: serde_json::Value = serde_json::from_str(n["Message"].as_str().unwrap()).unwrap();
            body["key"].as_str().unwrap().to_owned()
        })
        .collect();
    published.sort();
    assert_eq!(
        published,
        [
            "backlog/00.txt",
            "backlog/01.txt",
            "backlog/02.txt",
            "backlog/03.txt",
            "backlog/04.txt"
        ],
        "{}",
        agent.log()
    );

    // Its progress, from the results table, over both runs of the sweep
    // id: 5 + 9 queued, 10 scanned, 4 skipped as already current.
    let out = world.cli(&[
        "sweep",
        "status",
        "--config",
        config.to_str().unwrap(),
        "backlog-1",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["sweep"]["queued"], 14, "{status}");
    assert_eq!(status["sweep"]["state"], "queued", "{status}");
    assert_eq!(status["sweep"]["source"], "s3://staging/backlog/", "{status}");
    assert_eq!(status["skipped"], 4, "{status}");
    assert_eq!(status["remaining"], 0, "{status}");
    let scanned: u64 = status["scanned"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(scanned, 10, "{status}");
    assert_eq!(status["scanned"]["infected"], 1, "{status}");
    let text = world.cli(&["sweep", "status", "--config", config.to_str().unwrap(), "backlog-1"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("skipped") && text.contains("remaining"), "{text}");
    let unknown = world.cli(&["sweep", "status", "--config", config.to_str().unwrap(), "no-such-sweep"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no sweep `no-such-sweep`"));
}

/// Every message taken and deleted: each item fully handled.
async fn wait_until_handled(world: &World) {
    let deadline = std::time::Instant::now() + WITHIN;
    while world.queue_depth().await > 0 {
        assert!(std::time::Instant::now() < deadline, "items left on the queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_queue_is_taken_from_beside_uploads() {
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let config = world.config(&clamd::shared().address(), "");
    World::set_agent_field(&config, "sweep-queues", &format!("[\"{sweeps}\"]"));
    for i in 0..12 {
        world
            .put(
                &format!("backlog/{i:02}.txt"),
                samples::clean_text(),
                Some("text/plain"),
                &[],
                &[],
            )
            .await;
    }
    world
        .put("forged.txt", samples::clean_text(), Some("text/plain"), &[], &[])
        .await;
    world.purge_events().await;
    // Whoever may write to the sweep queue gets no other kind of scan
    // through it: an on-demand scan there is refused.
    let forged = bucketscan_runtime::events::on_demand_message(STAGING, "forged.txt", None);
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&sweeps)
        .message_body(forged)
        .send()
        .await
        .unwrap();

    // Without --queue, a sweep goes to the sweep queue, not the uploads'.
    let done = enqueue(&world, &config, &[]);
    assert_eq!(done["queued"], 12, "{done}");
    assert_eq!(world.queue_depth().await, 0, "nothing on the event queue");

    let agent = world.start_agent(&config);
    world
        .put("fresh/upload.txt", samples::eicar(), Some("text/plain"), &[], &[])
        .await;
    world
        .wait_for(QUARANTINE, "staging/fresh/upload.txt", WITHIN, &agent)
        .await;
    for i in 0..12 {
        world
            .wait_for(PRODUCTION, &format!("backlog/{i:02}.txt"), WITHIN, &agent)
            .await;
    }
    assert!(agent.log().contains("sweep_queues=["), "{}", agent.log());
    assert!(
        agent.log().contains("not a sweep item, on a sweep queue"),
        "{}",
        agent.log()
    );
    assert_eq!(world.tag(STAGING, "forged.txt", "bucketscan-result").await, None);
}

const INVENTORY: &str = "inventory";

/// `count` objects under `backlog/` (every hundredth EICAR), as an
/// inventory lists them.
async fn put_backlog(world: &World, count: usize) -> Vec<InventoryRow> {
    let mut uploads = tokio::task::JoinSet::new();
    let mut rows = Vec::new();
    for i in 0..count {
        let key = format!("backlog/{i:04}.txt");
        let bytes = if i % 100 == 7 {
            samples::eicar()
        } else {
            format!("clean file {i}\n").into_bytes()
        };
        rows.push(InventoryRow {
            key: key.clone(),
            version_id: None,
            etag: Some(format!("{:x}", md5::compute(&bytes))),
            size: bytes.len() as u64,
            is_latest: true,
            is_delete_marker: false,
        });
        let s3 = world.aws.s3.clone();
        uploads.spawn(async move {
            s3.put_object()
                .bucket(STAGING)
                .key(key)
                .content_type("text/plain")
                .body(bytes.into())
                .send()
                .await
                .unwrap();
        });
        if uploads.len() >= 32 {
            uploads.join_next().await.unwrap().unwrap();
        }
    }
    uploads.join_all().await;
    rows
}

async fn upload(world: &World, key: &str, bytes: Vec<u8>) {
    world
        .aws
        .s3
        .put_object()
        .bucket(INVENTORY)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

/// A report under `prefix` with one data file per element of `files`,
/// as S3 Inventory writes it; returns the manifest's URL.
async fn upload_report(world: &World, prefix: &str, format: &str, schema: &str, files: Vec<Vec<u8>>) -> String {
    let mut listed = Vec::new();
    for (i, bytes) in files.into_iter().enumerate() {
        let key = format!("{prefix}/data/{i}.{}", format.to_lowercase());
        listed.push(serde_json::json!({
            "key": key, "size": bytes.len(), "MD5checksum": format!("{:x}", md5::compute(&bytes)),
        }));
        upload(world, &key, bytes).await;
    }
    let manifest = serde_json::json!({
        "sourceBucket": STAGING,
        "destinationBucket": format!("arn:aws:s3:::{INVENTORY}"),
        "version": "2016-11-30",
        "creationTimestamp": "1796000000000",
        "fileFormat": format,
        "fileSchema": schema,
        "files": listed,
    });
    let key = format!("{prefix}/2026-12-04T00-00Z/manifest.json");
    upload(world, &key, manifest.to_string().into_bytes()).await;
    format!("s3://{INVENTORY}/{key}")
}

/// A gzip CSV data file of `rows`, keys URL-encoded as S3 writes them.
fn csv_file(rows: &[InventoryRow]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for row in rows {
        let key: String = url::form_urlencoded::byte_serialize(row.key.as_bytes()).collect();
        writeln!(
            gz,
            "\"{STAGING}\",\"{key}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"",
            row.version_id.as_deref().unwrap_or(""),
            row.is_latest,
            row.is_delete_marker,
            row.size,
            row.etag.as_deref().unwrap_or("")
        )
        .unwrap();
    }
    gz.finish().unwrap()
}

async fn count_keys(world: &World, bucket: &str) -> usize {
    let mut pages = world.aws.s3.list_objects_v2().bucket(bucket).into_paginator().send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.unwrap().contents().len();
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_objects_from_inventory_reports_are_scanned_once_through_a_stopped_sweep_and_a_killed_agent() {
    let world = World::new().await;
    let (sweeps, _) = world.queue("sweeps").await;
    let config = world.config(&clamd::shared().address(), "");
    World::set_agent_field(&config, "sweep-queues", &format!("[\"{sweeps}\"]"));
    world.aws.s3.create_bucket().bucket(INVENTORY).send().await.unwrap();
    let rows = put_backlog(&world, 1000).await;
    world.purge_events().await;

    // A CSV report of the first half in two files, with rows that are no
    // object anyone is served; a Parquet report of the second half.
    let mut first_file = csv_file(&rows[..250]);
    let not_served = [
        InventoryRow {
            key: "backlog/deleted.txt".into(),
            is_delete_marker: true,
            ..rows[0].clone()
        },
        InventoryRow {
            version_id: Some("old".into()),
            is_latest: false,
            ..rows[1].clone()
        },
    ];
    first_file.extend(csv_file(&not_served));
    let mut second_half: Vec<InventoryRow> = rows[500..].to_vec();
    second_half.extend(not_served);
    let csv_report = upload_report(
        &world,
        "csv",
        "CSV",
        "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, ETag",
        vec![first_file, csv_file(&rows[250..500])],
    )
    .await;
    let parquet = bucketscan_runtime::inventory::write_parquet(STAGING, &second_half).unwrap();
    let parquet_report = upload_report(
        &world,
        "parquet",
        "Parquet",
        bucketscan_runtime::inventory::PARQUET_SCHEMA,
        vec![parquet],
    )
    .await;

    // Stopped part-way (Ctrl-C): it says where it got to.
    let stopped = std::process::Command::new(bucketscan_tests::bucketscan_bin())
        .args([
            "scan",
            "--config",
            config.to_str().unwrap(),
            "s3://staging",
            "--enqueue",
        ])
        .args([
            "--inventory",
            &csv_report,
            "--rate",
            "60",
            "--sweep-id",
            "inv-1",
            "--output",
            "json",
        ])
        .envs(world.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WITHIN;
    while world.depth_of(&sweeps).await < 150 {
        assert!(std::time::Instant::now() < deadline, "the sweep queued too little");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(stopped.id() as i32, libc::SIGINT) };
    let out = stopped.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let queued_first = first["queued"].as_u64().unwrap();
    assert!((150..500).contains(&queued_first), "{first}");
    let resume_at = first["resume_at"].as_str().unwrap().to_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("resume with --resume-at {resume_at}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rest = enqueue_inventory(&world, &config, &csv_report, &["--resume-at", &resume_at]);
    // Batches are counted once sent: a stop between a send and its count
    // queues at most one batch twice, never a gap.
    let total = queued_first + rest["queued"].as_u64().unwrap();
    assert!((500..=510).contains(&total), "{first} then {rest}");
    // The rows of a delete marker and an old version are not queued.
    let parquet_sweep = enqueue_inventory(&world, &config, &parquet_report, &[]);
    assert_eq!(parquet_sweep["queued"], 500, "{parquet_sweep}");
    assert_eq!(parquet_sweep["resume_at"], "0:500", "{parquet_sweep}");

    // Two agents on the queue; one killed mid-sweep.
    let mut first_agent = world.start_agent(&config);
    let second_agent = world.start_agent(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while count_keys(&world, PRODUCTION).await < 200 {
        assert!(std::time::Instant::now() < deadline, "{}", first_agent.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    first_agent.kill_hard();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while count_keys(&world, PRODUCTION).await < 990 || count_keys(&world, QUARANTINE).await < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every object reached its place:\n{}",
            second_agent.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while world.depth_of(&sweeps).await > 0 {
        assert!(std::time::Instant::now() < deadline, "items left on the sweep queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count_keys(&world, PRODUCTION).await, 990);

    // Each object published once; the killed agent may have published an
    // object in flight before its message came back (at most its slots).
    // Deleted as read: a thousand take longer to read than a visibility
    // timeout, and would otherwise come back and be counted twice.
    let mut published: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for notification in world.take_all(&world.results_url).await {
        let body: serde_json::Value = serde_json::from_str(notification["Message"].as_str().unwrap()).unwrap();
        *published.entry(body["key"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(published.len(), 1000, "{published:?}");
    let twice = published.values().filter(|n| **n > 1).count();
    assert!(twice <= 2, "published more than once: {twice}");
}

fn enqueue_inventory(world: &World, config: &std::path::Path, manifest: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "scan",
        "--config",
        config.to_str().unwrap(),
        "s3://staging",
        "--enqueue",
        "--inventory",
        manifest,
        "--rate",
        "1000",
        "--sweep-id",
        "inv-1",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = world.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
