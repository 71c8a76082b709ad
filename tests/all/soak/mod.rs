//! A soak with faults: a mixed workload through two agents on one queue
//! while faults strike on a schedule (see `faults`), and a checker that
//! watches the buckets the whole time and, at the end, asks every object
//! for its one right place and its alert, production for never having
//! held a bad object, the queue and DLQ for being empty, and the spool for
//! holding no file. It prints the figures README's reliability section
//! keeps. The suite runs a short version (every fault once);
//! `scripts/soak` runs the same longer (BUCKETSCAN_SOAK_OBJECTS,
//! BUCKETSCAN_SOAK_ROUNDS, BUCKETSCAN_SOAK_OUTAGE_SECS).

mod checker;
mod faults;
mod workload;

use bucketscan_tests::agent::{AgentProcess, PRODUCTION, QUARANTINE, STAGING, World};
use bucketscan_tests::clamd;
use bucketscan_tests::recorder::Recorder;
use checker::{Observations, Place, percentile_ms};
use faults::Fault;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{Kind, Upload, VSTAGING};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Two agents on one queue, reaching AWS through a fault-injecting proxy,
/// and the clamd they share.
pub struct Fleet<'w> {
    world: &'w World,
    proxy: Recorder,
    config: PathBuf,
    spool: PathBuf,
    agents: [AgentProcess; 2],
    clamd: Option<clamd::ClamdServer>,
    clamd_port: u16,
    clamd_db: PathBuf,
    /// How many objects the soak uploads (the signature update names the
    /// late samples among them).
    objects: usize,
    /// The log of every agent started, the replaced ones' too.
    logs: Vec<PathBuf>,
}

impl<'w> Fleet<'w> {
    /// clamd on a free port with the test signatures in `clamd_db`, the
    /// proxy, and two agents running the soak config.
    async fn start(world: &'w World, spool: PathBuf, clamd_db: PathBuf, objects: usize) -> Self {
        world.aws.s3.create_bucket().bucket(VSTAGING).send().await.unwrap();
        world.version(VSTAGING).await;
        clamd::copy_test_signatures(&clamd_db).unwrap();
        let clamd_port = bucketscan_tests::free_port();
        let clamd = clamd::start_with_database(&clamd_db, clamd_port, clamd::STREAM_MAX_BYTES).unwrap();
        let config = soak_config(world, &clamd.address());
        let proxy = Recorder::start(&world.moto.endpoint());
        let agents = [
            spawn_agent(world, &config, &spool, &proxy),
            spawn_agent(world, &config, &spool, &proxy),
        ];
        let logs = agents.iter().map(|a| a.log.clone()).collect();
        Self {
            world,
            proxy,
            config,
            spool,
            agents,
            clamd: Some(clamd),
            clamd_port,
            clamd_db,
            objects,
            logs,
        }
    }

    fn restart(&mut self, which: usize) {
        self.agents[which] = spawn_agent(self.world, &self.config, &self.spool, &self.proxy);
        self.logs.push(self.agents[which].log.clone());
    }

    /// An agent that has a spool file open, and the file.
    fn agent_holding_a_spool_file(&self) -> Option<(usize, PathBuf)> {
        self.agents.iter().enumerate().find_map(|(which, agent)| {
            let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id())).ok()?;
            let file = fds
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .find(|target| {
                    target.starts_with(&self.spool)
                        && target
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("bucketscan-spool-"))
                })?;
            Some((which, file))
        })
    }

    /// How often any agent so far refused an object for its spool budget.
    fn spool_refusals(&self) -> usize {
        self.count_in_logs("the spool budget (")
    }

    /// How often an agent starting removed a dead one's spool files.
    fn orphan_removals(&self) -> usize {
        self.count_in_logs("left by a process that no longer runs")
    }

    fn count_in_logs(&self, text: &str) -> usize {
        let read = |log: &PathBuf| std::fs::read_to_string(log).unwrap_or_default();
        self.logs.iter().map(|log| read(log).matches(text).count()).sum()
    }

    fn clamd(&self) -> &clamd::ClamdServer {
        self.clamd.as_ref().expect("clamd is running")
    }

    /// clamd on the soak's port and database (which outlives each clamd).
    fn start_clamd(&mut self) {
        self.clamd =
            Some(clamd::start_with_database(&self.clamd_db, self.clamd_port, clamd::STREAM_MAX_BYTES).unwrap());
    }

    fn logs(&self) -> String {
        self.agents.iter().map(|a| a.log()).collect::<Vec<_>>().join("\n----\n")
    }

    /// The lines of every agent's log so far that name one of `keys`, at
    /// most `max` (a long soak's whole logs are hundreds of megabytes).
    fn logs_about(&self, keys: &[&str], max: usize) -> String {
        let read = |log: &PathBuf| std::fs::read_to_string(log).unwrap_or_default();
        let texts: Vec<String> = self.logs.iter().map(read).collect();
        let lines = texts.iter().flat_map(|text| text.lines());
        let about: Vec<&str> = lines
            .filter(|line| keys.iter().any(|k| line.contains(k)))
            .take(max)
            .collect();
        about.join("\n")
    }
}

/// An agent with its spool in `spool`, reaching AWS through `proxy`.
fn spawn_agent(world: &World, config: &Path, spool: &Path, proxy: &Recorder) -> AgentProcess {
    world.start_agent_with_env(
        config,
        &[
            ("TMPDIR", spool.to_str().unwrap()),
            ("AWS_ENDPOINT_URL", &proxy.endpoint()),
        ],
    )
}

/// The standard pipeline for `soak/`, with the promoter moving (not
/// copying) clean objects, and a spool budget two large objects overflow.
fn soak_config(world: &World, clamd_address: &str) -> PathBuf {
    let soak_prefix = format!(
        r#"
[[buckets.{STAGING}.prefixes]]
prefix = "soak/"
[[buckets.{STAGING}.prefixes.stages]]
plugin = "filetype-filter"
settings = {{ deny = ["executable"], block-mismatch = true }}
[[buckets.{STAGING}.prefixes.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.{STAGING}.prefixes.stages]]
plugin = "promoter"
on = ["clean"]
settings = {{ bucket = "{PRODUCTION}", delete-source = true }}
grants = {{ storage = ["{PRODUCTION}", "{STAGING}"] }}
[[buckets.{STAGING}.prefixes.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = {{ mode = "move", bucket = "{QUARANTINE}" }}
grants = {{ storage = ["{QUARANTINE}", "{STAGING}"] }}
"#
    );
    let versioned = format!(
        r#"
[buckets.{VSTAGING}]
[[buckets.{VSTAGING}.stages]]
plugin = "clamav-bridge"
grants = {{ clamav = true }}
[[buckets.{VSTAGING}.stages]]
plugin = "promoter"
on = ["clean"]
settings = {{ bucket = "{PRODUCTION}", delete-source = true }}
grants = {{ storage = ["{PRODUCTION}", "{VSTAGING}"] }}
[[buckets.{VSTAGING}.stages]]
plugin = "quarantine"
on = ["infected", "blocked"]
settings = {{ mode = "move", bucket = "{QUARANTINE}" }}
grants = {{ storage = ["{QUARANTINE}", "{VSTAGING}"] }}
"#
    );
    let path = world.config(clamd_address, &format!("{soak_prefix}{versioned}"));
    let budget = workload::LARGE_OBJECT_BYTES * 3 / 2;
    let text = std::fs::read_to_string(&path).unwrap();
    let threshold = "spool-threshold-bytes = 65536";
    assert!(text.contains(threshold), "the test config no longer sets `{threshold}`");
    let text = text.replacen(
        threshold,
        &format!(
            "{threshold}\nspool-budget-bytes = {budget}\nmax-object-bytes = {budget}\nfirst-byte-timeout-secs = 11"
        ),
        1,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// How long each round's uploads are spread over.
const ROUND: Duration = Duration::from_secs(10);

/// Uploads `uploads` one after another, evenly spread over `over`.
async fn upload_round(world: Arc<World>, uploads: Arc<Vec<Upload>>, over: Duration, seen: checker::Shared) {
    let gap = over / uploads.len().max(1) as u32;
    for upload in uploads.iter() {
        let next = Instant::now() + gap;
        if upload.bucket == VSTAGING {
            put_versions(&world, upload).await;
        } else {
            if let Some(first) = &upload.first {
                world
                    .put(&upload.key, first.clone(), upload.content_type, &[], &[])
                    .await;
                tokio::time::sleep(upload.overwrite_after).await;
            }
            world
                .put(&upload.key, upload.bytes.clone(), upload.content_type, &[], &[])
                .await;
        }
        seen.lock().unwrap().uploaded.insert(upload.key.clone(), Instant::now());
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Uploads `burst` at once (one after another, no pacing).
pub async fn upload_burst(world: &World, burst: &[Upload], seen: &checker::Shared) {
    for upload in burst {
        world
            .put(&upload.key, upload.bytes.clone(), upload.content_type, &[], &[])
            .await;
        seen.lock().unwrap().uploaded.insert(upload.key.clone(), Instant::now());
    }
}

/// Puts `upload`'s first bytes, then its last ones, into the versioned
/// bucket, and sends each version's event as S3 would: with its version ID.
async fn put_versions(world: &World, upload: &Upload) {
    for bytes in [upload.first.clone().unwrap(), upload.bytes.clone()] {
        let request = world.aws.s3.put_object().bucket(VSTAGING).key(&upload.key);
        let out = request.body(bytes.into()).send().await.unwrap();
        let (version, etag) = (out.version_id().unwrap(), out.e_tag().unwrap().trim_matches('"'));
        let record = serde_json::json!({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": VSTAGING},
            "object": {"key": upload.key, "versionId": version, "eTag": etag}}});
        let body = serde_json::json!({ "Records": [record] }).to_string();
        world
            .aws
            .sqs
            .send_message()
            .queue_url(&world.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        // The first version's event is on its way while the second is put.
        tokio::time::sleep(upload.overwrite_after).await;
    }
}

/// EICAR versions still in the versioned bucket (a quarantined version
/// must be gone, not left behind as a noncurrent one).
async fn eicar_versions_left(world: &World) -> Vec<String> {
    let eicar_etag = format!("{:x}", md5::compute(bucketscan_tests::samples::eicar()));
    let mut left = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let request = world.aws.s3.list_object_versions().bucket(VSTAGING);
        let page = request
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .unwrap();
        for version in page.versions() {
            if version.e_tag().map(|e| e.trim_matches('"')) == Some(eicar_etag.as_str()) {
                left.push(format!(
                    "{} {}",
                    version.key().unwrap_or_default(),
                    version.version_id().unwrap_or_default()
                ));
            }
        }
        if !page.is_truncated().unwrap_or(false) {
            return left;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

/// Waits (up to `within`) until every object in `uploads` is in its one
/// right place, then looks at all of them once more; the ones that are not.
/// Stops waiting early when nothing can move them any more: a message in
/// the DLQ, or the event queue empty with no object settled for
/// `STALL`. (A long soak's deadline is hours; a stuck object must not
/// hold the verdict that long.)
async fn wait_settled(world: &World, uploads: &[&Upload], within: Duration) -> Vec<(String, Kind, Place)> {
    const STALL: Duration = Duration::from_secs(180);
    let deadline = Instant::now() + within;
    let mut remaining: Vec<&Upload> = uploads.to_vec();
    let (mut last_progress, mut reported) = (Instant::now(), Instant::now());
    while !remaining.is_empty() && Instant::now() < deadline {
        let left: HashSet<String> = unsettled(world, &remaining)
            .await
            .into_iter()
            .map(|(key, ..)| key)
            .collect();
        if left.len() < remaining.len() {
            last_progress = Instant::now();
        }
        remaining.retain(|u| left.contains(&u.key));
        if reported.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "soak: waiting for {} of {} objects to settle",
                remaining.len(),
                uploads.len()
            );
            reported = Instant::now();
        }
        if world.depth_of(&world.dlq_url).await > 0 {
            eprintln!("soak: a message reached the DLQ; {} objects unsettled", remaining.len());
            break;
        }
        if last_progress.elapsed() > STALL && world.queue_depth().await == 0 {
            eprintln!(
                "soak: queue empty and no object settled for {STALL:?}; {} unsettled",
                remaining.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    unsettled(world, uploads).await
}

/// The objects in `uploads` not in their one right place (an unscannable
/// one is there once staging's copy carries its result).
async fn unsettled(world: &World, uploads: &[&Upload]) -> Vec<(String, Kind, Place)> {
    let now = checker::places(world, uploads).await;
    let mut left = Vec::new();
    for upload in uploads {
        let place = now[&upload.key];
        let settled = place.is_final_for(upload.kind)
            && (upload.kind != Kind::Unscannable
                || world
                    .tag(upload.bucket, &upload.key, "bucketscan-result")
                    .await
                    .as_deref()
                    == Some("unscannable"));
        if !settled {
            left.push((upload.key.clone(), upload.kind, place));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn under_faults_every_object_ends_in_its_one_right_place_with_its_alert() {
    let rounds = setting("BUCKETSCAN_SOAK_ROUNDS", faults::ALL.len());
    let per_round = setting("BUCKETSCAN_SOAK_OBJECTS", 88).div_ceil(rounds);
    let outage = Duration::from_secs(setting("BUCKETSCAN_SOAK_OUTAGE_SECS", 8) as u64);
    let schedule: Vec<Fault> = (0..rounds).map(|r| faults::ALL[r % faults::ALL.len()]).collect();
    let plan = workload::plan(&schedule, per_round);
    let objects = plan.iter().map(|r| r.uploads.len() + r.burst.len()).sum::<usize>();

    let world = Arc::new(World::new().await);
    let spool = world.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut fleet = Fleet::start(&world, spool.clone(), world.dir.path().join("clamd-db"), objects).await;

    let (mut calm_keys, mut uploads): (Vec<String>, Vec<&Upload>) = (Vec::new(), Vec::new());
    let mut struck: BTreeMap<String, usize> = BTreeMap::new();
    let seen: checker::Shared = Arc::new(Mutex::new(Observations::default()));
    let all_uploads = Arc::new(
        plan.iter()
            .flat_map(|r| r.uploads.iter().chain(&r.burst))
            .map(clone_upload)
            .collect::<Vec<_>>(),
    );
    let stop = Arc::new(Mutex::new(false));
    // A long soak's listings would load the local S3 server more than the
    // agents do: it polls less often (BUCKETSCAN_SOAK_POLL_MS).
    let poll = Duration::from_millis(setting("BUCKETSCAN_SOAK_POLL_MS", 200) as u64);
    let watcher = checker::watch(world.clone(), all_uploads.clone(), seen.clone(), stop.clone(), poll);
    let alerts = checker::collect_alerts(world.clone(), stop.clone(), Duration::from_secs(2));

    let mut faulted_phase: Option<Instant> = None;
    let mut calm_rss_mib: Vec<u64> = Vec::new();
    // A long soak offers more than the local AWS server carries: its queue
    // becomes a backlog every later object waits behind, and moto's cost
    // per SQS call grows with the queue (it looks at every message), so
    // throughput falls the longer it runs. Each round first waits for the
    // backlog to come down to this (BUCKETSCAN_SOAK_MAX_BACKLOG): the
    // figures then measure the faults, not the queue.
    let max_backlog = setting("BUCKETSCAN_SOAK_MAX_BACKLOG", usize::MAX) as u64;
    for round in &plan {
        while world.queue_depth().await > max_backlog {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A steady stream of uploads through the round (its own task, so a
        // strike that blocks does not stop it); the fault strikes while
        // they are in flight.
        let stream = || tokio::spawn(upload_round(world.clone(), round.uploads.clone(), ROUND, seen.clone()));
        uploads.extend(round.uploads.iter().chain(&round.burst));
        if round.fault == Fault::Calm && calm_keys.is_empty() {
            // The first round, undisturbed: the baseline for time to final
            // place. (Later calm rounds are rounds without a fault, their
            // objects queued behind the backlog the faults left.)
            stream().await.unwrap();
            let calm: Vec<&Upload> = round.uploads.iter().collect();
            let unsettled = wait_settled(&world, &calm, Duration::from_secs(120)).await;
            assert!(
                unsettled.is_empty(),
                "calm round did not settle: {unsettled:?}\n{}",
                fleet.logs()
            );
            calm_keys.extend(round.uploads.iter().map(|u| u.key.clone()));
            calm_rss_mib = fleet.agents.iter().map(|a| rss_kib(a.child.id()) / 1024).collect();
            continue;
        }
        faulted_phase.get_or_insert_with(Instant::now);
        if round.burst.is_empty() {
            let stream = stream();
            tokio::time::sleep(ROUND * 2 / 5).await;
            faults::strike(round.fault, &mut fleet, outage, &round.burst, &seen).await;
            stream.await.unwrap();
        } else {
            // The burst needs the agents' slots free: the stream follows.
            faults::strike(round.fault, &mut fleet, outage, &round.burst, &seen).await;
            stream().await.unwrap();
        }
        *struck.entry(format!("{:?}", round.fault)).or_default() += 1;
        let (settled, bad_seen) = {
            let seen = seen.lock().unwrap();
            (seen.settled.len(), seen.bad_in_production.len())
        };
        eprintln!(
            "soak: round {}/{} ({:?}) done at {:.0} s: {} uploaded, {settled} in their place, {bad_seen} bad seen in production",
            struck.values().sum::<usize>(),
            plan.len() - 1,
            round.fault,
            faulted_phase.map(|t| t.elapsed().as_secs_f64()).unwrap_or_default(),
            uploads.len(),
        );
    }

    let unsettled = wait_settled(&world, &uploads, Duration::from_secs(120 + objects as u64)).await;
    let faulted_elapsed = faulted_phase.map(|t| t.elapsed()).unwrap_or_default();
    let lost: Vec<_> = unsettled.iter().filter(|(_, _, place)| place.is_nowhere()).collect();
    let unsettled_keys: Vec<&str> = unsettled.iter().map(|(key, ..)| key.as_str()).collect();
    assert!(
        lost.is_empty(),
        "objects lost (in no bucket): {lost:?}\nlogs about them:\n{}",
        fleet.logs_about(&unsettled_keys, 400)
    );
    assert!(
        unsettled.is_empty(),
        "objects not in their one right place:\n{}\nDLQ: {:?}\nlogs about them:\n{}",
        unsettled
            .iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join("\n"),
        world.drain(&world.dlq_url).await,
        fleet.logs_about(&unsettled_keys, 400)
    );

    // Deletes of the last messages follow the moves: wait for an empty queue.
    let drained = Instant::now() + Duration::from_secs(60);
    while world.queue_depth().await > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    *stop.lock().unwrap() = true;
    watcher.await.unwrap();
    let alerts = alerts.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.bad_in_production.is_empty(),
        "bad objects seen in production: {:?}",
        seen.bad_in_production
    );
    assert_eq!(
        world.queue_depth().await,
        0,
        "messages left on the queue; logs:\n{}",
        fleet.logs()
    );
    assert!(world.drain(&world.dlq_url).await.is_empty(), "messages in the DLQ");
    let lingering = eicar_versions_left(&world).await;
    assert!(lingering.is_empty(), "EICAR versions left in {VSTAGING}: {lingering:?}");
    eprintln!("soak: checking the result tag of {} objects", uploads.len());
    assert_result_tags(&world, &uploads).await;
    let duplicates = assert_every_bad_object_alerted(&alerts, &uploads);

    // Stopped cleanly, no agent leaves a spool file, and the one killed
    // mid-scan had its files removed by its successor.
    let rss_mib: Vec<u64> = fleet.agents.iter().map(|a| rss_kib(a.child.id()) / 1024).collect();
    for agent in &mut fleet.agents {
        assert!(agent.terminate(Duration::from_secs(60)).is_some());
    }
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("bucketscan-"))
        .collect();
    assert!(left.is_empty(), "spool files left: {left:?}");

    let faulted_requests = fleet.proxy.faulted();
    let faulted_kinds = faulted_by_kind(&faulted_requests);
    let refusals = fleet.spool_refusals();
    assert!(refusals > 0, "no object was ever refused for the spool budget");
    let orphan_removals = fleet.orphan_removals();
    assert!(orphan_removals > 0, "no agent ever removed a killed agent's spool file");
    let fetches = staging_fetches(&fleet.proxy.requests(), &uploads);
    let bad = uploads.iter().filter(|u| u.kind.is_bad()).count();
    let calm_times = seen.times_to_final_place(calm_keys.iter());
    let calm_set: std::collections::HashSet<&String> = calm_keys.iter().collect();
    let fault_times = seen.times_to_final_place(uploads.iter().map(|u| &u.key).filter(|k| !calm_set.contains(k)));
    let faulted_objects = objects - calm_keys.len();
    println!(
        "soak figures ({objects} objects, {rounds} rounds, 2 agents, outages {} s):",
        outage.as_secs()
    );
    println!(
        "  objects/s held under faults: {:.2} ({faulted_objects} objects in {:.1} s)",
        faulted_objects as f64 / faulted_elapsed.as_secs_f64(),
        faulted_elapsed.as_secs_f64()
    );
    println!("  faults struck: {struck:?}");
    println!(
        "  S3/SNS requests faulted: {faulted_kinds:?}; objects refused for the spool budget: {refusals}; \
         starts that removed a killed agent's spool files: {orphan_removals}"
    );
    println!(
        "  objects lost: 0; wrong final places: 0; bad-in-production moments: 0 ({} polls)",
        seen.polls
    );
    println!(
        "  duplicate alerts: {duplicates} of {bad} bad objects ({:.1}%)",
        100.0 * duplicates as f64 / bad.max(1) as f64
    );
    let (calm_p50, calm_p99) = (percentile_ms(&calm_times, 50), percentile_ms(&calm_times, 99));
    let (fault_p50, fault_p99) = (percentile_ms(&fault_times, 50), percentile_ms(&fault_times, 99));
    println!(
        "  time to final place p50/p99: calm {calm_p50:.0}/{calm_p99:.0} ms, under faults {fault_p50:.0}/{fault_p99:.0} ms \
         (ratio {:.1}x/{:.1}x)",
        fault_p50 / calm_p50,
        fault_p99 / calm_p99
    );
    println!(
        "  fetches per object: {:.2} (retries per object {:.2}; an overwritten object has two events)",
        fetches as f64 / objects as f64,
        (fetches as f64 - objects as f64) / objects as f64
    );
    println!(
        "  agent RSS after the calm round: {calm_rss_mib:?} MiB, at the end: {rss_mib:?} MiB; spool files left: 0"
    );
}

/// What the watcher needs of an upload: its key, kind and (for
/// overwritten objects, checked in production) its last bytes.
fn clone_upload(upload: &Upload) -> Upload {
    Upload {
        key: upload.key.clone(),
        kind: upload.kind,
        bucket: upload.bucket,
        bytes: if matches!(upload.kind, Kind::Overwritten | Kind::VersionedOverwrite) {
            upload.bytes.clone()
        } else {
            Vec::new()
        },
        content_type: upload.content_type,
        first: None,
        overwrite_after: Duration::ZERO,
    }
}

async fn assert_result_tags(world: &World, uploads: &[&Upload]) {
    for upload in uploads {
        let (bucket, key) = match upload.kind {
            Kind::Clean => (PRODUCTION, upload.key.clone()),
            Kind::Unscannable => (upload.bucket, upload.key.clone()),
            _ => (QUARANTINE, format!("{}/{}", upload.bucket, upload.key)),
        };
        assert_eq!(
            world.tag(bucket, &key, "bucketscan-result").await.as_deref(),
            Some(upload.kind.expected_result()),
            "{} ({:?})",
            upload.key,
            upload.kind
        );
        let overwritten = matches!(upload.kind, Kind::Overwritten | Kind::VersionedOverwrite);
        if overwritten && world.exists(PRODUCTION, &upload.key).await {
            assert_eq!(
                world.body(PRODUCTION, &upload.key).await,
                *upload.first.as_ref().unwrap(),
                "{}: production holds other bytes than the clean first ones",
                upload.key
            );
            assert_eq!(
                world.tag(PRODUCTION, &upload.key, "bucketscan-result").await.as_deref(),
                Some("clean")
            );
        }
    }
}

/// Every bad object published at least once with its result; a retried
/// one may publish twice (counted, not failed). Returns the duplicates.
fn assert_every_bad_object_alerted(notifications: &[serde_json::Value], uploads: &[&Upload]) -> usize {
    let mut alerts: HashMap<String, Vec<String>> = HashMap::new();
    for notification in notifications {
        let body: serde_json::Value = serde_json::from_str(notification["Message"].as_str().unwrap()).unwrap();
        let key = body["key"].as_str().unwrap_or_default().to_owned();
        let result = body["result"].as_str().unwrap_or_default().to_owned();
        alerts.entry(key).or_default().push(result);
    }
    let mut duplicates = 0;
    for upload in uploads.iter().filter(|u| u.kind.is_bad()) {
        let results = alerts.get(&upload.key).cloned().unwrap_or_default();
        let matching = results.iter().filter(|r| *r == upload.kind.expected_result()).count();
        assert!(
            matching > 0,
            "no {} alert for {}: {results:?}",
            upload.kind.expected_result(),
            upload.key
        );
        duplicates += matching - 1;
    }
    duplicates
}

/// GETs of the uploads' bytes the agents made (a retried object is
/// fetched again).
fn staging_fetches(requests: &[serde_json::Value], uploads: &[&Upload]) -> usize {
    let paths: std::collections::HashSet<String> = uploads.iter().map(|u| format!("/{}/{}", u.bucket, u.key)).collect();
    requests
        .iter()
        .filter(|r| r["method"] == "GET" && !r["query"].as_str().unwrap_or_default().contains("tagging"))
        .filter(|r| r["path"].as_str().is_some_and(|p| paths.contains(p)))
        .count()
}

/// How many requests the proxy failed, by method and fault.
pub fn faulted_by_kind(faulted: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for request in faulted {
        let fault = &request["fault"];
        let kind = if fault.get("reset").is_some() {
            "reset".to_owned()
        } else if fault.get("stall").is_some() {
            "stall".to_owned()
        } else {
            format!("{} {}", fault["status"], fault["code"].as_str().unwrap_or_default())
        };
        *by_kind
            .entry(format!("{} {kind}", request["method"].as_str().unwrap_or_default()))
            .or_default() += 1;
    }
    by_kind
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
