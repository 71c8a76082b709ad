//! The scan path's branches over in-memory stand-ins (no wasm, clamd or
//! AWS): the order of its writes, what each failure leaves behind, and
//! which outcomes let an event go.

use super::*;
use crate::testing::{Faults, MemoryStore, RecordingPublisher, ScriptedStages, any_object, event_for, scanner};
use bucketscan_core::allow::AllowListConfig;
use bucketscan_core::report::Outcome;
use bucketscan_core::storage::StorageAction;

const STAGING: &str = "staging";
const PRODUCTION: &str = "production";
const QUARANTINE: &str = "quarantine";
const MARKER: &[u8] = b"MALWARE-MARKER";

struct World {
    store: Arc<MemoryStore>,
    stages: Arc<ScriptedStages>,
    published: Arc<RecordingPublisher>,
    scanner: Scanner,
}

impl World {
    fn new() -> Self {
        Self::with_stages(ScriptedStages::finding(MARKER, "Test.Marker").promoting(PRODUCTION, QUARANTINE))
    }

    fn with_stages(stages: ScriptedStages) -> Self {
        let store = MemoryStore::new();
        let stages = Arc::new(stages);
        let published = Arc::new(RecordingPublisher::default());
        let scanner = scanner(store.clone(), stages.clone(), published.clone());
        Self {
            store,
            stages,
            published,
            scanner,
        }
    }

    async fn upload_and_scan(&self, key: &str, bytes: &[u8]) -> ScanReport {
        let info = self.store.put(STAGING, key, bytes, &[]);
        self.scan(&info).await
    }

    async fn scan(&self, info: &ObjectInfo) -> ScanReport {
        self.scanner.scan(&any_object(), &event_for(info)).await
    }

    fn published(&self) -> Vec<ScanReport> {
        self.published.published.lock().unwrap().clone()
    }

    fn result_tag(&self, bucket: &str, key: &str) -> Option<String> {
        let (info, _) = self.store.get(bucket, key)?;
        let keys = TagKeys::default();
        info.tags.into_iter().find(|(k, _)| *k == keys.result).map(|(_, v)| v)
    }
}

fn position(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {log:#?}"))
}

#[tokio::test]
async fn clean_bytes_are_tagged_then_promoted_then_published_then_deleted() {
    let world = World::new();
    let report = world.upload_and_scan("a.txt", b"quarterly figures").await;
    assert_eq!(report.outcome, Outcome::Done, "{report:#?}");
    let log = world.store.log();
    let (tag, copy, delete) = (
        position(&log, "tag s3://staging/a.txt"),
        position(&log, "copy s3://staging/a.txt -> s3://production/a.txt"),
        position(&log, "delete s3://staging/a.txt"),
    );
    assert!(tag < copy && copy < delete, "{log:#?}");
    assert_eq!(world.result_tag(PRODUCTION, "a.txt").as_deref(), Some("clean"));
    assert!(world.store.get(STAGING, "a.txt").is_none());
    assert_eq!(world.published().len(), 1);
}

#[tokio::test]
async fn an_alert_that_cannot_be_published_deletes_nothing_and_comes_back() {
    let world = World::new();
    world.published.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let info = world.store.put(STAGING, "x.exe", b"..MALWARE-MARKER..", &[]);
    let report = world.scan(&info).await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{:?}", report.outcome);
    assert_eq!(
        world.result_tag(STAGING, "x.exe").as_deref(),
        Some("infected"),
        "contained in place"
    );
    assert!(
        !world.store.log().iter().any(|l| l.starts_with("delete")),
        "{:#?}",
        world.store.log()
    );
    // The event comes back; SNS answers now: quarantined, then deleted.
    world
        .published
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let report = world.scan(&info).await;
    assert_eq!(report.outcome, Outcome::Done, "{report:#?}");
    assert!(world.store.get(STAGING, "x.exe").is_none());
    assert_eq!(world.result_tag(QUARANTINE, "x.exe").as_deref(), Some("infected"));
    assert_eq!(world.published().len(), 1);
}

#[tokio::test]
async fn a_failed_action_publishes_the_alert_and_deletes_nothing() {
    let world = World::new();
    world.store.set_faults(Faults {
        copy: Some(StorageError::Unavailable("503 Slow Down".into())),
        ..Faults::default()
    });
    let report = world.upload_and_scan("x.exe", b"MALWARE-MARKER").await;
    let Outcome::Retry(why) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(why.contains("actions failed") && why.contains("503 Slow Down"), "{why}");
    let published = world.published();
    assert_eq!(published.len(), 1, "the finding is not kept quiet");
    assert_eq!(published[0].outcome.status(), "retry");
    assert!(world.store.get(STAGING, "x.exe").is_some(), "nothing deleted");
}

/// Scans `bytes` in a slot of its own with a free tail place; says
/// whether the slot was still held at the end.
async fn slot_held_after(world: &World, key: &str, bytes: &[u8]) -> (ScanReport, bool) {
    let info = world.store.put(STAGING, key, bytes, &[]);
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let slot = ScanSlot::new(
        slots.clone().try_acquire_owned().unwrap(),
        Arc::new(tokio::sync::Semaphore::new(1)),
    );
    let report = world.scanner.scan_in(&any_object(), &event_for(&info), &slot).await;
    (report, slot.holds_slot())
}

#[tokio::test]
async fn the_slot_goes_back_once_the_object_is_contained_and_not_before() {
    let world = World::new();
    let (report, held) = slot_held_after(&world, "a.txt", b"figures").await;
    assert_eq!(report.outcome, Outcome::Done);
    assert!(
        !held,
        "clean and promoted: the slot went back for the record and deletes"
    );
    let (report, held) = slot_held_after(&world, "x.exe", b"MALWARE-MARKER").await;
    assert_eq!(report.outcome, Outcome::Done);
    assert!(!held, "quarantined: likewise");
    world.store.set_faults(Faults {
        copy: Some(StorageError::Unavailable("503 Slow Down".into())),
        ..Faults::default()
    });
    let (report, held) = slot_held_after(&world, "y.exe", b"MALWARE-MARKER").await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{:?}", report.outcome);
    assert!(held, "an action failed: not contained, the slot is kept");
    assert_eq!(
        *world.published.batched.lock().unwrap(),
        [true, true, false],
        "only what gave its slot back may wait for a batch; the failed action's alert goes at once"
    );
}

#[tokio::test]
async fn an_object_holding_its_slot_publishes_at_once() {
    let world = World::new();
    let info = world.store.put(STAGING, "a.txt", b"figures", &[]);
    world.scanner.scan(&any_object(), &event_for(&info)).await;
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let no_tail_place = Arc::new(tokio::sync::Semaphore::new(0));
    let slot = ScanSlot::new(slots.clone().try_acquire_owned().unwrap(), no_tail_place);
    let info = world.store.put(STAGING, "b.txt", b"figures", &[]);
    world.scanner.scan_in(&any_object(), &event_for(&info), &slot).await;
    assert!(slot.holds_slot());
    assert_eq!(*world.published.batched.lock().unwrap(), [false, false]);
}

#[tokio::test]
async fn an_error_keeps_its_slot_to_the_end() {
    let world = World::with_stages(ScriptedStages {
        verdict: Box::new(|_| Verdict::error("clamd: connection refused")),
        ..ScriptedStages::finding(MARKER, "Test.Marker").promoting(PRODUCTION, QUARANTINE)
    });
    let (report, held) = slot_held_after(&world, "a.txt", b"figures").await;
    assert!(matches!(report.outcome, Outcome::Retry(_)));
    assert!(held);
}

#[tokio::test]
async fn a_clean_copy_s3_would_refuse_every_time_is_held_not_retried() {
    let long = format!("reports/{}.csv", "k".repeat(1000));
    let mut stages = ScriptedStages::finding(MARKER, "Test.Marker").promoting(PRODUCTION, QUARANTINE);
    stages.on_clean = vec![StorageAction::Move {
        bucket: PRODUCTION.into(),
        key: format!("published/2026/{long}"),
        extra_tags: Vec::new(),
    }];
    let world = World::with_stages(stages);
    let report = world.upload_and_scan(&long, b"figures").await;
    let Outcome::Held(why) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(why.contains("over S3's 1024 bytes"), "{why}");
    assert!(report.outcome.settles(), "its event is acknowledged");
    assert!(
        world.store.keys(PRODUCTION).is_empty(),
        "never renamed behind the owner's back"
    );
    assert!(world.store.get(STAGING, &long).is_some(), "left where it is");
    assert_eq!(world.published().len(), 1);
    // Bytes that contain are moved under a shortened key instead.
    let report = world.upload_and_scan(&format!("{long}.exe"), b"MALWARE-MARKER").await;
    assert_eq!(report.outcome, Outcome::Done, "{report:#?}");
    assert_eq!(world.store.keys(QUARANTINE).len(), 1);
}

#[tokio::test]
async fn an_error_runs_no_action_and_its_event_comes_back() {
    let world = World::with_stages(ScriptedStages {
        verdict: Box::new(|_| Verdict::error("clamd: connection refused")),
        ..ScriptedStages::finding(MARKER, "Test.Marker").promoting(PRODUCTION, QUARANTINE)
    });
    let report = world.upload_and_scan("a.txt", b"figures").await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{:?}", report.outcome);
    assert!(!report.outcome.settles());
    assert!(world.store.keys(PRODUCTION).is_empty() && world.store.keys(QUARANTINE).is_empty());
    assert!(world.published().is_empty(), "an error is no result");
}

#[tokio::test]
async fn result_tags_that_cannot_be_written_stop_the_pass_before_any_action() {
    let world = World::new();
    world.store.set_faults(Faults {
        put_tags: Some(StorageError::Unavailable("500".into())),
        ..Faults::default()
    });
    let report = world.upload_and_scan("a.txt", b"figures").await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{:?}", report.outcome);
    assert!(world.store.log().is_empty(), "{:#?}", world.store.log());
}

#[tokio::test]
async fn bytes_uploaded_during_the_scan_are_scanned_in_place_of_the_old() {
    let world = World::new();
    world.store.set_faults(Faults {
        overwrite_after_tagging: Some(b"now MALWARE-MARKER".to_vec()),
        ..Faults::default()
    });
    let report = world.upload_and_scan("a.txt", b"harmless at first").await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert_eq!(report.outcome, Outcome::Done);
    assert!(
        world.store.keys(PRODUCTION).is_empty(),
        "the clean result never promoted newer bytes"
    );
    assert_eq!(world.result_tag(QUARANTINE, "a.txt").as_deref(), Some("infected"));
}

#[tokio::test]
async fn an_object_gone_before_its_scan_is_skipped_and_settles() {
    let world = World::new();
    let info = world.store.put(STAGING, "a.txt", b"x", &[]);
    world.store.delete(&info).await.unwrap();
    let report = world.scan(&info).await;
    assert!(matches!(report.outcome, Outcome::Skipped(_)), "{:?}", report.outcome);
    assert!(report.outcome.settles());
}

#[tokio::test]
async fn an_object_over_the_limit_is_unscannable_unread_and_never_promoted() {
    let world = World::new();
    let report = world.upload_and_scan("big.bin", &vec![b'a'; (1 << 20) + 1]).await;
    assert_eq!(report.verdict.result_name(), ResultName::Unscannable, "{report:#?}");
    assert!(world.stages.inspected.lock().unwrap().is_empty(), "not read");
    assert!(world.store.keys(PRODUCTION).is_empty());
}

#[tokio::test]
async fn forged_result_tags_are_removed_and_the_bytes_scanned() {
    let world = World::new();
    let keys = TagKeys::default();
    let info = world
        .store
        .put(STAGING, "x.exe", b"MALWARE-MARKER", &[(keys.result.as_str(), "clean")]);
    let report = world.scan(&info).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected);
    assert!(world.store.keys(PRODUCTION).is_empty());
    assert!(
        world.store.log()[0].starts_with("tag s3://staging/x.exe"),
        "the forged tag goes first: {:#?}",
        world.store.log()
    );
}

#[tokio::test]
async fn an_allow_listed_digest_passes_as_clean_and_says_so() {
    let world = World::new();
    let bytes = b"in-house tool that trips MALWARE-MARKER";
    let list = AllowList::from_config(&AllowListConfig {
        sha256: vec![bucketscan_core::object::sha256_hex(bytes)],
        ..AllowListConfig::default()
    });
    world.scanner.allow_list.store(Arc::new(list));
    let report = world.upload_and_scan("tool.exe", bytes).await;
    assert_eq!(report.verdict, Verdict::Clean);
    assert!(report.allowed.is_some());
    assert_eq!(world.result_tag(PRODUCTION, "tool.exe").as_deref(), Some("clean"));
    // Other bytes with the same finding are not.
    let report = world.upload_and_scan("other.exe", b"MALWARE-MARKER").await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected);
}

#[tokio::test]
async fn encoded_bytes_are_inspected_decoded_and_as_stored() {
    let world = World::new();
    let gzip =
        bucketscan_unpack::samples::wrap(bucketscan_core::formats::Format::Gzip, b"MALWARE-MARKER", "x").unwrap();
    let info = world.store.put_encoded(STAGING, "page.html", &gzip, &[], Some("gzip"));
    let report = world.scan(&info).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    let inspected = world.stages.inspected.lock().unwrap().clone();
    assert_eq!(
        inspected,
        vec![b"MALWARE-MARKER".to_vec(), gzip],
        "decoded first, then as stored"
    );
    assert!(report.decoded.is_some());
}

/// A tar.gz of `members` larger than the test pipeline's 1 MiB limit:
/// two members of random filler the gzip cannot shrink come first.
fn large_tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let filler = bucketscan_unpack::samples::random_bytes((1 << 20) + 4096, 1);
    let half = filler.len() / 2;
    let mut all: Vec<(&str, &[u8])> = vec![("filler-1.bin", &filler[..half]), ("filler-2.bin", &filler[half..])];
    all.extend_from_slice(members);
    let tar = bucketscan_unpack::samples::tar(&all);
    let bytes = bucketscan_unpack::samples::wrap(bucketscan_core::formats::Format::Gzip, &tar, "big.tar").unwrap();
    assert!(bytes.len() > 1 << 20, "over the limit: {}", bytes.len());
    bytes
}

#[tokio::test]
async fn a_container_over_the_limit_is_scanned_member_by_member_and_the_finding_names_the_member() {
    let world = World::new();
    let bytes = large_tar_gz(&[("docs/readme.txt", b"hello"), ("bin/last.exe", b"xx MALWARE-MARKER xx")]);
    let report = world.upload_and_scan("big.tar.gz", &bytes).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    let finding = &report.verdict.findings()[0];
    assert_eq!(finding.location.as_deref(), Some("big.tar.gz!/big.tar!/bin/last.exe"));
    assert_eq!(report.coverage, Some(Coverage::Members));
    assert!(world.store.keys(PRODUCTION).is_empty());
    let (held, _) = world.store.get(QUARANTINE, "big.tar.gz").expect("quarantined");
    assert!(
        held.tags.contains(&("bucketscan-coverage".into(), "members".into())),
        "{:?}",
        held.tags
    );
    assert_eq!(world.published().len(), 1);
    // Each member on its own (the tar's headers, handed over after the
    // last member, may be inspected before its verdict stops the walk).
    let inspected = world.stages.inspected.lock().unwrap();
    for member in [&b"hello"[..], b"xx MALWARE-MARKER xx"] {
        assert!(inspected.iter().any(|bytes| bytes == member), "{member:?}");
    }
    assert!(matches!(inspected.len(), 4 | 5), "{}", inspected.len());
    assert!(inspected.iter().all(|bytes| bytes.len() < 1 << 20));
}

#[tokio::test]
async fn a_clean_container_over_the_limit_is_promoted_with_coverage_members() {
    let world = World::new();
    let bytes = large_tar_gz(&[("a.txt", b"quarterly figures")]);
    let report = world.upload_and_scan("data.tar.gz", &bytes).await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    let (promoted, body) = world
        .store
        .get(PRODUCTION, "data.tar.gz")
        .unwrap_or_else(|| panic!("not promoted: {report:#?}"));
    assert_eq!(body, bytes);
    assert!(
        promoted
            .tags
            .contains(&("bucketscan-coverage".into(), "members".into()))
    );
}

/// A tar over the limit holding a zip over it, whose last member is
/// `last`.
fn tar_holding_a_large_zip(last: (&str, &[u8])) -> Vec<u8> {
    bucketscan_unpack::samples::tar(&[("readme.txt", b"hello"), ("inner.zip", &large_zip(last))])
}

/// A zip over the 1 MiB limit whose last member is `last`.
fn large_zip(last: (&str, &[u8])) -> Vec<u8> {
    let filler = bucketscan_unpack::samples::random_bytes(1 << 20, 7);
    let (a, b) = filler.split_at(1 << 19);
    let zip = bucketscan_unpack::samples::zip(&[("data/a.bin", a), ("data/b.bin", b), last], 0);
    assert!(zip.len() > 1 << 20);
    zip
}

#[tokio::test]
async fn a_zip_over_the_limit_inside_a_container_is_walked_from_the_spool() {
    let world = World::new();
    let bytes = tar_holding_a_large_zip(("bin/x.exe", b"xx MALWARE-MARKER xx"));
    let report = world.upload_and_scan("big.tar", &bytes).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert_eq!(
        report.verdict.findings()[0].location.as_deref(),
        Some("big.tar!/inner.zip!/bin/x.exe")
    );
    let clean = tar_holding_a_large_zip(("docs/notes.txt", b"nothing to see"));
    let report = world.upload_and_scan("clean.tar", &clean).await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert!(world.store.get(PRODUCTION, "clean.tar").is_some());
}

/// A zip over the limit, whose last member is `last`, compressed whole
/// as `name` (`backup.zip.gz`): its size is known only at the stream's end.
fn gzip_of_a_large_zip(last: (&str, &[u8]), name: &str) -> Vec<u8> {
    bucketscan_unpack::samples::wrap(bucketscan_core::formats::Format::Gzip, &large_zip(last), name).unwrap()
}

#[tokio::test]
async fn a_zip_over_the_limit_inside_a_compressed_stream_is_walked_from_the_spool() {
    let world = World::new();
    let bytes = gzip_of_a_large_zip(("bin/x.exe", b"xx MALWARE-MARKER xx"), "big.zip");
    let report = world.upload_and_scan("big.zip.gz", &bytes).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert_eq!(
        report.verdict.findings()[0].location.as_deref(),
        Some("big.zip.gz!/big.zip!/bin/x.exe")
    );
    let clean = gzip_of_a_large_zip(("docs/notes.txt", b"nothing to see"), "clean.zip");
    let report = world.upload_and_scan("clean.zip.gz", &clean).await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert!(world.store.get(PRODUCTION, "clean.zip.gz").is_some());
}

#[tokio::test]
async fn a_zip_inside_a_compressed_stream_past_the_spool_room_is_too_large() {
    // 4 MiB: room for three members of the 1 MiB limit, and 1 MiB for
    // the zip, which is a little more.
    let mut world = World::new();
    world.scanner.spool = crate::spool::SpoolConfig::in_temp_dir(4 << 20);
    let bytes = gzip_of_a_large_zip(("docs/notes.txt", b"nothing to see"), "clean.zip");
    let report = world.upload_and_scan("clean.zip.gz", &bytes).await;
    let detail = too_large(&report);
    assert!(
        detail.contains("clean.zip.gz!/clean.zip: ") && detail.contains("no spool room past 1048576 bytes"),
        "{detail}"
    );
    assert!(world.store.get(PRODUCTION, "clean.zip.gz").is_none());
    assert_eq!(
        world.scanner.spool.budget.free_bytes(),
        4 << 20,
        "every reservation returned"
    );
}

#[tokio::test]
async fn a_zip_inside_a_compressed_stream_takes_no_more_spool_than_it_needs() {
    // 6 MiB: 3 for the members spooled at once, 3 for the zip. Grown
    // 64 MiB at a time, the zip's file took the whole budget and its own
    // members waited for room that never came: a retry for ever.
    let mut world = World::new();
    world.scanner.spool = crate::spool::SpoolConfig {
        // Members on disk too: they take budget.
        threshold_bytes: 0,
        ..crate::spool::SpoolConfig::in_temp_dir(6 << 20)
    };
    let bytes = gzip_of_a_large_zip(("bin/x.exe", b"xx MALWARE-MARKER xx"), "big.zip");
    let report = world.upload_and_scan("big.zip.gz", &bytes).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert_eq!(
        report.verdict.findings()[0].location.as_deref(),
        Some("big.zip.gz!/big.zip!/bin/x.exe")
    );
    assert_eq!(
        world.scanner.spool.budget.free_bytes(),
        6 << 20,
        "every reservation returned"
    );
}

#[tokio::test]
async fn a_zip_inside_a_compressed_stream_with_less_room_than_a_member_is_taken_as_one() {
    // No room for a container at all: as before, a member of unknown
    // size, too large past the engine's limit (never a retry).
    let mut world = World::new();
    world.scanner.spool = crate::spool::SpoolConfig::in_temp_dir(3 << 20);
    let bytes = gzip_of_a_large_zip(("docs/notes.txt", b"nothing to see"), "clean.zip");
    let report = world.upload_and_scan("clean.zip.gz", &bytes).await;
    let detail = too_large(&report);
    assert!(
        detail.contains("clean.zip.gz!/clean.zip: more than the 1048576-byte limit"),
        "{detail}"
    );
    assert_eq!(world.scanner.spool.budget.free_bytes(), 3 << 20);
}

#[tokio::test]
async fn a_nested_zip_that_holds_more_than_its_container_says_is_malformed_not_a_retry() {
    let world = World::new();
    // Decodes to 2 MiB and more; its headers say just over the 1 MiB limit.
    let mut inner = b"PK\x03\x04".to_vec();
    inner.extend(bucketscan_unpack::samples::random_bytes((1 << 20) + 4096, 9));
    inner.resize(2 << 20, 0);
    let outer = bucketscan_unpack::samples::zip_member_claiming("inner.zip", &inner, (1 << 20) + 1);
    assert!(outer.len() > 1 << 20);
    let report = world.upload_and_scan("big.zip", &outer).await;
    let Verdict::Unscannable { reason, detail } = &report.verdict else {
        panic!("{report:#?}")
    };
    assert_eq!(*reason, UnscannableReason::Malformed, "{detail}");
    assert!(detail.contains("big.zip!/inner.zip: it holds more than"), "{detail}");
}

#[tokio::test]
async fn an_uploads_own_spool_counts_against_the_room_for_a_zip_inside_it() {
    // The upload's file holds most of the budget while it is walked:
    // beside it, the zip inside and the members the walk may spool (up to
    // the limit each) could not all fit, so the zip is too large rather
    // than a wait for room that might never come.
    let mut world = World::new();
    let spool = crate::spool::SpoolConfig {
        threshold_bytes: 0,
        dir: std::env::temp_dir(),
        budget: Arc::new(crate::spool::SpoolBudget::new(8 << 20)),
    };
    world.scanner.spool = spool.clone();
    let filler = bucketscan_unpack::samples::random_bytes(5 << 20, 11);
    let zip = bucketscan_unpack::samples::zip(
        &[("a.bin", &filler[..1 << 19]), ("b.bin", &filler[1 << 19..1 << 20])],
        0,
    );
    let mut members: Vec<(String, &[u8])> = (0..8)
        .map(|i| {
            (
                format!("fill/{i}.bin"),
                &filler[(1 << 20) + i * (1 << 19)..(1 << 20) + (i + 1) * (1 << 19)],
            )
        })
        .collect();
    members.push(("inner.zip".into(), &zip));
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let bytes = bucketscan_unpack::samples::tar(&refs);
    let mut writer = crate::spool::SpoolWriter::new(&spool, Some(bytes.len() as u64), bytes.len() as u64);
    writer.append(&bytes).unwrap();
    let spooled = writer.finish().unwrap();
    assert!(matches!(spooled.body, ObjectBody::File(_)));
    let info = ObjectInfo {
        bucket: "uploads".into(),
        key: "big.tar".into(),
        size: bytes.len() as u64,
        sha256: Some(spooled.sha256.clone()),
        ..ObjectInfo::default()
    };
    let report = world
        .scanner
        .inspect_only(&any_object(), &[], info, spooled.body)
        .await
        .expect("a verdict, not a retry");
    let detail = too_large(&report);
    assert!(
        detail.contains("big.tar!/inner.zip: ") && detail.contains("no spool room"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_zip_inside_a_container_the_spool_could_never_hold_is_too_large() {
    let mut world = World::new();
    world.scanner.spool = crate::spool::SpoolConfig::in_temp_dir(3 << 20);
    let bytes = tar_holding_a_large_zip(("docs/notes.txt", b"nothing to see"));
    let report = world.upload_and_scan("clean.tar", &bytes).await;
    let detail = too_large(&report);
    assert!(
        detail.contains("clean.tar!/inner.zip: ") && detail.contains("no spool room to walk the zip"),
        "{detail}"
    );
    assert!(world.store.get(PRODUCTION, "clean.tar").is_none());
}

#[tokio::test]
async fn a_truncated_container_over_the_limit_is_unscannable_never_promoted() {
    let world = World::new();
    let mut bytes = large_tar_gz(&[("a.txt", b"quarterly figures")]);
    bytes.truncate(bytes.len() - 100);
    let report = world.upload_and_scan("cut.tar.gz", &bytes).await;
    let Verdict::Unscannable { reason, .. } = &report.verdict else {
        panic!("{report:#?}")
    };
    assert_eq!(*reason, UnscannableReason::Malformed);
    assert!(world.store.keys(PRODUCTION).is_empty());
}

#[tokio::test]
async fn a_read_that_fails_mid_walk_is_retried_and_nothing_is_written() {
    let world = World::new();
    let info = world
        .store
        .put(STAGING, "big.tar.gz", &large_tar_gz(&[("a.txt", b"x")]), &[]);
    world.store.set_faults(Faults {
        read_range_after: Some((3, FetchError::Unavailable("503 SlowDown".into()))),
        ..Faults::default()
    });
    let report = world.scan(&info).await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{report:#?}");
    assert!(
        format!("{:?}", report.outcome).contains("503 SlowDown"),
        "{:?}",
        report.outcome
    );
    assert!(world.store.log().is_empty(), "{:#?}", world.store.log());
}

#[tokio::test]
async fn an_encoded_container_over_the_limit_is_not_walked() {
    let world = World::new();
    let bytes = large_tar_gz(&[("a.txt", b"x")]);
    let info = world
        .store
        .put_encoded(STAGING, "big.tar.gz", &bytes, &[], Some("gzip"));
    let report = world.scan(&info).await;
    let Verdict::Unscannable { reason, .. } = &report.verdict else {
        panic!("{report:#?}")
    };
    assert_eq!(*reason, UnscannableReason::TooLarge);
    assert!(world.stages.inspected.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_container_over_the_limit_whose_name_hides_it_is_not_walked() {
    let world = World::new();
    let bytes = large_tar_gz(&[("a.txt", b"x")]);
    let report = world.upload_and_scan("setup.exe", &bytes).await;
    let Verdict::Unscannable { reason, .. } = &report.verdict else {
        panic!("{report:#?}")
    };
    assert_eq!(*reason, UnscannableReason::TooLarge);
    assert!(world.stages.inspected.lock().unwrap().is_empty());
    assert!(world.store.keys(PRODUCTION).is_empty());
}

/// Bytes over the test pipeline's 1 MiB limit that are no container but
/// an MP4 by their first box: what only the whole-file hash signatures
/// can judge.
fn large_video() -> Vec<u8> {
    let mut video = bucketscan_unpack::samples::random_bytes((1 << 20) + 777, 9);
    video[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
    video
}

/// An index holding `line` (`hash:size:Name`) as `local.hdb` holds it.
fn hash_signatures(line: &str) -> Arc<dyn HashSource> {
    let mut index = bucketscan_core::hashes::HashSignatures::new(1 << 20);
    index.add_file("local.hdb", false, line).unwrap();
    Arc::new(Arc::new(index))
}

fn md5_line(bytes: &[u8], name: &str) -> String {
    use sha2::Digest;
    format!("{}:{}:{name}\n", hex::encode(md5::Md5::digest(bytes)), bytes.len())
}

/// Signatures that cannot be trusted now.
struct Unproven;

impl HashSource for Unproven {
    fn hash_signatures(&self) -> Result<Arc<bucketscan_core::hashes::HashSignatures>, String> {
        Err("clamd has not loaded the databases".into())
    }
}

/// The test pipeline, with `large-objects.hashes-suffice`.
struct HashesSuffice;

impl Routing for HashesSuffice {
    fn route(&self, bucket: &str, key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        any_object().route(bucket, key)
    }
    fn max_object_bytes(&self, bucket: &str) -> u64 {
        any_object().max_object_bytes(bucket)
    }
    fn hashes_suffice(&self, _bucket: &str) -> bool {
        true
    }
}

fn too_large(report: &ScanReport) -> &str {
    match &report.verdict {
        Verdict::Unscannable {
            reason: UnscannableReason::TooLarge,
            detail,
        } => detail,
        _ => panic!("not too-large: {report:#?}"),
    }
}

#[tokio::test]
async fn a_member_too_large_for_the_engine_whose_md5_is_a_signature_is_infected_and_named() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let bytes = large_tar_gz(&[("media/film.mp4", &video), ("after.txt", b"never reached")]);
    let report = world.upload_and_scan("media.tar.gz", &bytes).await;
    let finding = &report.verdict.findings()[0];
    assert_eq!(finding.signature, "Known.Big.UNOFFICIAL", "{report:#?}");
    assert_eq!(
        finding.location.as_deref(),
        Some("media.tar.gz!/media.tar!/media/film.mp4")
    );
    assert_eq!(report.coverage, Some(Coverage::Members));
    assert!(world.store.keys(PRODUCTION).is_empty());
    assert!(world.store.get(QUARANTINE, "media.tar.gz").is_some());
}

/// A gzip of `bytes`, over the test pipeline's limit.
fn large_gz(bytes: &[u8], name: &str) -> Vec<u8> {
    let gz = bucketscan_unpack::samples::wrap(bucketscan_core::formats::Format::Gzip, bytes, name).unwrap();
    assert!(gz.len() > 1 << 20, "over the limit: {}", gz.len());
    gz
}

#[tokio::test]
async fn a_stream_content_of_unknown_size_too_large_for_the_engine_still_gets_the_hash_check() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let report = world
        .upload_and_scan("film.mp4.gz", &large_gz(&video, "film.mp4"))
        .await;
    let finding = &report.verdict.findings()[0];
    assert_eq!(finding.signature, "Known.Big.UNOFFICIAL", "{report:#?}");
    assert_eq!(finding.location.as_deref(), Some("film.mp4.gz!/film.mp4"));
    assert!(world.store.keys(PRODUCTION).is_empty());
    assert!(world.store.get(QUARANTINE, "film.mp4.gz").is_some());

    // The same size, other bytes: too large, and it says it was hashed.
    let mut world = World::new();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let mut other = video.clone();
    other[100] ^= 1;
    let report = world
        .upload_and_scan("film.mp4.gz", &large_gz(&other, "film.mp4"))
        .await;
    let detail = too_large(&report);
    assert!(
        detail.ends_with(&format!(
            "no whole-file hash signature matched its {} bytes",
            other.len()
        )),
        "{detail}"
    );
    assert!(world.store.keys(PRODUCTION).is_empty());
}

#[tokio::test]
async fn a_walked_container_whose_sha256_is_a_signature_is_infected_whatever_its_members_hold() {
    use sha2::Digest;
    let mut world = World::new();
    let bytes = large_tar_gz(&[("docs/readme.txt", b"hello")]);
    let line = format!(
        "{}:{}:Known.Bundle\n",
        hex::encode(sha2::Sha256::digest(&bytes)),
        bytes.len()
    );
    let mut index = bucketscan_core::hashes::HashSignatures::new(1 << 20);
    index.add_file("local.hsb", false, &line).unwrap();
    world.scanner.hashes = Some(Arc::new(Arc::new(index)));
    let report = world.upload_and_scan("bundle.tar.gz", &bytes).await;
    assert_eq!(
        report.verdict.findings()[0].signature,
        "Known.Bundle.UNOFFICIAL",
        "{report:#?}"
    );
    assert_eq!(report.coverage, Some(Coverage::Members));
    assert!(world.store.keys(PRODUCTION).is_empty());
    assert!(world.store.get(QUARANTINE, "bundle.tar.gz").is_some());
    // Other bytes of the same size: the members decide (clean).
    let mut world = World::new();
    let other = large_tar_gz(&[("docs/readme.txt", b"hellp")]);
    assert_eq!(other.len(), bytes.len());
    let mut index = bucketscan_core::hashes::HashSignatures::new(1 << 20);
    index.add_file("local.hsb", false, &line).unwrap();
    world.scanner.hashes = Some(Arc::new(Arc::new(index)));
    let report = world.upload_and_scan("bundle.tar.gz", &other).await;
    assert_eq!(report.verdict.result_name(), ResultName::Clean, "{report:#?}");
}

#[tokio::test]
async fn a_walked_container_whose_md5_is_a_signature_is_infected_read_in_order_or_by_its_directory() {
    let filler = bucketscan_unpack::samples::random_bytes((1 << 20) + 4096, 3);
    let (one, two) = filler.split_at(filler.len() / 2);
    let zip = |text: &[u8]| {
        bucketscan_unpack::samples::zip(
            &[("filler-1.bin", one), ("filler-2.bin", two), ("docs/readme.txt", text)],
            0,
        )
    };
    // A tar.gz is read in order; a zip directory first, so its digests
    // need the rest read after the walk.
    let pairs = [
        (
            "bundle.tar.gz",
            large_tar_gz(&[("docs/readme.txt", b"hello")]),
            large_tar_gz(&[("docs/readme.txt", b"hellp")]),
        ),
        ("bundle.zip", zip(b"hello"), zip(b"hellp")),
    ];
    for (key, known, other) in pairs {
        assert_eq!(known.len(), other.len());
        let mut world = World::new();
        world.scanner.hashes = Some(hash_signatures(&md5_line(&known, "Known.Bundle")));
        let report = world.upload_and_scan(key, &known).await;
        assert_eq!(
            report.verdict.findings()[0].signature,
            "Known.Bundle.UNOFFICIAL",
            "{key}: {report:#?}"
        );
        assert_eq!(report.coverage, Some(Coverage::Members));
        assert!(world.store.keys(PRODUCTION).is_empty(), "{key}");
        // Other bytes of the same size: the members decide (clean).
        let mut world = World::new();
        world.scanner.hashes = Some(hash_signatures(&md5_line(&known, "Known.Bundle")));
        let report = world.upload_and_scan(key, &other).await;
        assert_eq!(report.verdict.result_name(), ResultName::Clean, "{key}: {report:#?}");
    }
}

#[tokio::test]
async fn a_member_too_large_for_the_engine_that_no_signature_matches_stays_too_large() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(b"other bytes", "Other")));
    let bytes = large_tar_gz(&[("media/film.mp4", &video)]);
    let report = world.upload_and_scan("media.tar.gz", &bytes).await;
    let detail = too_large(&report);
    assert!(
        detail.starts_with("media.tar.gz!/media.tar!/media/film.mp4: "),
        "{detail}"
    );
    // No signature is for its size: nothing to hash, and it says so not.
    assert!(!detail.contains("hash"), "{detail}");

    let mut world = World::new();
    let mut other = video.clone();
    other[100] ^= 1;
    world.scanner.hashes = Some(hash_signatures(&md5_line(&other, "Near.Miss")));
    let report = world.upload_and_scan("media.tar.gz", &bytes).await;
    let detail = too_large(&report);
    assert!(
        detail.ends_with("no whole-file hash signature matched its bytes"),
        "{detail}"
    );
    assert!(world.store.keys(PRODUCTION).is_empty());
}

#[tokio::test]
async fn a_large_non_container_whose_md5_is_a_signature_is_infected_and_quarantined() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let report = world.upload_and_scan("film.mp4", &video).await;
    assert_eq!(
        report.verdict.findings()[0].signature,
        "Known.Big.UNOFFICIAL",
        "{report:#?}"
    );
    assert_eq!(report.verdict.findings()[0].engine, "clamav");
    assert_eq!(report.coverage, Some(Coverage::Hashes));
    assert!(world.store.keys(PRODUCTION).is_empty());
    let (held, _) = world.store.get(QUARANTINE, "film.mp4").expect("quarantined");
    assert!(
        held.tags.contains(&("bucketscan-coverage".into(), "hashes".into())),
        "{:?}",
        held.tags
    );
    assert_eq!(world.published().len(), 1);
    assert!(world.stages.inspected.lock().unwrap().is_empty(), "no inspector saw it");
}

#[tokio::test]
async fn a_large_non_container_no_signature_matches_is_too_large_with_coverage_hashes() {
    let mut world = World::new();
    let video = large_video();
    // A signature for another file of the same size: the bytes are read.
    let mut other = video.clone();
    other[0] ^= 1;
    world.scanner.hashes = Some(hash_signatures(&md5_line(&other, "Other.Big")));
    let report = world.upload_and_scan("film.mp4", &video).await;
    too_large(&report);
    assert_eq!(report.coverage, Some(Coverage::Hashes));
    let notes = report.host_actions.join("\n");
    assert!(notes.contains("no whole-file hash signature matched"), "{notes}");
    assert!(world.store.keys(PRODUCTION).is_empty(), "never promoted");
}

#[tokio::test]
async fn no_byte_is_read_when_no_signature_is_for_the_objects_size() {
    let mut world = World::new();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&large_video()[1..], "Smaller")));
    let info = world.store.put(STAGING, "film.mp4", &large_video(), &[]);
    world.store.set_faults(Faults {
        read_range_after: Some((0, FetchError::Unavailable("read".into()))),
        ..Faults::default()
    });
    let report = world.scan(&info).await;
    too_large(&report);
    assert_eq!(report.coverage, Some(Coverage::Hashes));
    assert!(report.host_actions.join("\n").contains("nothing read"), "{report:#?}");
}

#[tokio::test]
async fn hashes_suffice_makes_an_unmatched_large_object_clean_and_promotes_it() {
    let mut world = World::new();
    world.scanner.hashes = Some(hash_signatures(&md5_line(b"unrelated", "Small")));
    let video = large_video();
    let info = world.store.put(STAGING, "film.mp4", &video, &[]);
    let report = world.scanner.scan(&HashesSuffice, &event_for(&info)).await;
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert_eq!(report.coverage, Some(Coverage::Hashes));
    assert!(report.host_actions.join("\n").contains("hashed, not scanned"));
    let (promoted, body) = world.store.get(PRODUCTION, "film.mp4").expect("promoted");
    assert_eq!(body, video);
    assert!(promoted.tags.contains(&("bucketscan-coverage".into(), "hashes".into())));
}

#[tokio::test]
async fn hashes_suffice_never_makes_clean_what_is_not_audio_video_or_an_image_by_its_bytes() {
    let mut world = World::new();
    world.scanner.hashes = Some(hash_signatures(&md5_line(b"unrelated", "Small")));
    // A container named as a video, and random bytes: neither is media.
    let zip = large_tar_gz(&[("bin/last.exe", b"xx MALWARE-MARKER xx")]);
    let noise = bucketscan_unpack::samples::random_bytes((1 << 20) + 777, 3);
    for (key, bytes) in [("film.mp4", zip), ("disk.img", noise)] {
        let info = world.store.put(STAGING, key, &bytes, &[]);
        let report = world.scanner.scan(&HashesSuffice, &event_for(&info)).await;
        too_large(&report);
        assert!(
            report
                .host_actions
                .join("\n")
                .contains("applies to audio, video and images"),
            "{report:#?}"
        );
        assert!(world.store.get(PRODUCTION, key).is_none(), "{key} promoted");
    }
}

#[tokio::test]
async fn hashes_suffice_never_makes_clean_what_a_signature_matches_or_unproven_signatures_saw() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let info = world.store.put(STAGING, "film.mp4", &video, &[]);
    let report = world.scanner.scan(&HashesSuffice, &event_for(&info)).await;
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");

    world.scanner.hashes = Some(Arc::new(Unproven));
    let info = world.store.put(STAGING, "other.mp4", &video, &[]);
    let report = world.scanner.scan(&HashesSuffice, &event_for(&info)).await;
    too_large(&report);
    assert_eq!(report.coverage, None);
    assert!(
        report
            .host_actions
            .join("\n")
            .contains("clamd has not loaded the databases")
    );
    assert!(world.store.get(PRODUCTION, "other.mp4").is_none());
}

#[tokio::test]
async fn a_read_failing_while_hashing_is_a_retry_not_a_verdict() {
    let mut world = World::new();
    let video = large_video();
    let mut other = video.clone();
    other[0] ^= 1;
    world.scanner.hashes = Some(hash_signatures(&md5_line(&other, "Other.Big")));
    let info = world.store.put(STAGING, "film.mp4", &video, &[]);
    world.store.set_faults(Faults {
        read_range_after: Some((1, FetchError::Unavailable("503 SlowDown".into()))),
        ..Faults::default()
    });
    let report = world.scan(&info).await;
    assert!(matches!(report.outcome, Outcome::Retry(_)), "{report:#?}");
    assert!(world.store.log().is_empty(), "{:#?}", world.store.log());
}

#[tokio::test]
async fn an_index_built_for_larger_objects_does_not_speak_for_smaller_ones() {
    let mut world = World::new();
    let video = large_video();
    let mut index = bucketscan_core::hashes::HashSignatures::new(64 << 20);
    index
        .add_file("local.hdb", false, &format!("{}:{}:Huge\n", "0".repeat(32), 100 << 20))
        .unwrap();
    world.scanner.hashes = Some(Arc::new(Arc::new(index)));
    let report = world.upload_and_scan("film.mp4", &video).await;
    too_large(&report);
    assert_eq!(report.coverage, None);
    assert!(
        report
            .host_actions
            .join("\n")
            .contains("indexed for objects over 67108864 bytes")
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_that_is_a_container_is_walked_from_its_spooled_bytes() {
    let world = World::new();
    let bytes = large_tar_gz(&[("docs/a.txt", b"hello"), ("bin/last.exe", b"xx MALWARE-MARKER xx")]);
    let info = ObjectInfo {
        bucket: "uploads".into(),
        key: "big.tar.gz".into(),
        size: bytes.len() as u64,
        sha256: Some(bucketscan_core::object::sha256_hex(&bytes)),
        ..ObjectInfo::default()
    };
    let body = ObjectBody::Memory(bytes.into());
    let report = world
        .scanner
        .inspect_only(&any_object(), &[], info, body)
        .await
        .unwrap();
    assert_eq!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert_eq!(
        report.verdict.findings()[0].location.as_deref(),
        Some("big.tar.gz!/big.tar!/bin/last.exe")
    );
    assert_eq!(report.coverage, Some(Coverage::Members));
    assert!(
        report.host_actions.join("\n").contains("from the spooled upload"),
        "{report:#?}"
    );
    assert!(world.store.log().is_empty(), "nothing touched a bucket");
}

#[tokio::test]
async fn a_walked_upload_whose_whole_md5_is_a_signature_is_infected() {
    let mut world = World::new();
    let bytes = large_tar_gz(&[("docs/a.txt", b"hello"), ("docs/b.txt", b"clean too")]);
    world.scanner.hashes = Some(hash_signatures(&md5_line(&bytes, "Known.Tar")));
    let info = |bytes: &[u8]| ObjectInfo {
        bucket: "uploads".into(),
        key: "big.tar.gz".into(),
        size: bytes.len() as u64,
        sha256: Some(bucketscan_core::object::sha256_hex(bytes)),
        ..ObjectInfo::default()
    };
    let report = world
        .scanner
        .inspect_only(
            &any_object(),
            &[],
            info(&bytes),
            ObjectBody::Memory(bytes.clone().into()),
        )
        .await
        .unwrap();
    assert_eq!(report.coverage, Some(Coverage::Members));
    assert_eq!(
        report.verdict.findings()[0].signature,
        "Known.Tar.UNOFFICIAL",
        "{report:#?}"
    );
    // Other bytes of the same size: the walk's verdict stands.
    let other = large_tar_gz(&[("docs/a.txt", b"jello"), ("docs/b.txt", b"clean too")]);
    assert_eq!(other.len(), bytes.len());
    let report = world
        .scanner
        .inspect_only(
            &any_object(),
            &[],
            info(&other),
            ObjectBody::Memory(other.clone().into()),
        )
        .await
        .unwrap();
    assert_eq!(report.verdict.result_name(), ResultName::Clean, "{report:#?}");
}

#[tokio::test]
async fn an_upload_over_the_limit_named_as_something_else_is_not_walked() {
    let world = World::new();
    let bytes = large_tar_gz(&[("bin/last.exe", b"xx MALWARE-MARKER xx")]);
    let info = ObjectInfo {
        bucket: "uploads".into(),
        key: "report.pdf".into(),
        size: bytes.len() as u64,
        ..ObjectInfo::default()
    };
    let body = ObjectBody::Memory(bytes.clone().into());
    let report = world
        .scanner
        .inspect_only(&any_object(), &[], info, body)
        .await
        .unwrap();
    assert_eq!(report.coverage, Some(Coverage::Whole), "{report:#?}");
    assert_eq!(
        world.stages.inspected.lock().unwrap().as_slice(),
        [bytes],
        "whole, to the engine"
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_that_is_not_walked_still_gets_the_hash_check() {
    let mut world = World::new();
    let video = large_video();
    world.scanner.hashes = Some(hash_signatures(&md5_line(&video, "Known.Big")));
    let upload = |bytes: &[u8]| ObjectInfo {
        bucket: "uploads".into(),
        key: "film.mp4".into(),
        size: bytes.len() as u64,
        ..ObjectInfo::default()
    };
    let body = ObjectBody::Memory(video.clone().into());
    let report = world
        .scanner
        .inspect_only(&any_object(), &[], upload(&video), body)
        .await
        .unwrap();
    assert_eq!(
        report.verdict.findings()[0].signature,
        "Known.Big.UNOFFICIAL",
        "{report:#?}"
    );
    assert!(
        report
            .host_actions
            .join("\n")
            .contains("whole-file hash signature in local.hdb")
    );

    let mut other = video.clone();
    other[100] ^= 1;
    let body = ObjectBody::Memory(other.clone().into());
    let report = world
        .scanner
        .inspect_only(&any_object(), &[], upload(&other), body)
        .await
        .unwrap();
    assert_ne!(report.verdict.result_name(), ResultName::Infected, "{report:#?}");
    assert!(
        report
            .host_actions
            .join("\n")
            .contains("no whole-file hash signature matched")
    );
    assert!(world.store.log().is_empty(), "nothing touched a bucket");
}

/// Routes only `staging`: production has no pipeline of its own.
struct StagingOnly;

impl Routing for StagingOnly {
    fn route(&self, bucket: &str, key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        (bucket == STAGING).then(|| any_object().route(bucket, key)).flatten()
    }

    fn max_object_bytes(&self, _bucket: &str) -> u64 {
        1 << 20
    }
}

fn retro_of(copy: &ObjectInfo, origin_key: &str) -> Target {
    Target {
        rescan: true,
        contain_only: true,
        retro: Some(bucketscan_core::report::RetroScan {
            database: "ClamAV 1.4.3/28001".into(),
            previous_engine: Some("ClamAV 1.4.3/28000".into()),
            clean_since: "2026-12-01T10:00:00.000Z".into(),
            origin_bucket: STAGING.into(),
            origin_key: origin_key.into(),
        }),
        ..event_for(copy)
    }
}

#[tokio::test]
async fn a_promotion_is_reported_as_a_copy_and_a_retro_scan_runs_its_origins_pipeline_where_it_lives() {
    let world = World::new();
    let report = world.upload_and_scan("a.txt", b"quarterly figures").await;
    assert_eq!(report.copies.len(), 1, "{report:#?}");
    assert_eq!(
        (report.copies[0].bucket.as_str(), report.copies[0].key.as_str()),
        (PRODUCTION, "a.txt")
    );
    let (copy, _) = world.store.get(PRODUCTION, "a.txt").unwrap();
    // Without the origin, production has no pipeline: nothing to do.
    let unrouted = world.scanner.scan(&StagingOnly, &event_for(&copy)).await;
    assert!(matches!(unrouted.outcome, Outcome::Skipped(_)), "{unrouted:#?}");

    // A clean copy scanned again (an agent's own write, yet rescanned):
    // no action runs, nothing is promoted onto itself.
    let again = world.scanner.scan(&StagingOnly, &retro_of(&copy, "a.txt")).await;
    assert_eq!(again.outcome, Outcome::Done, "{again:#?}");
    assert_eq!(again.result().as_str(), "clean");
    assert!(again.copies.is_empty(), "{again:#?}");
    assert!(
        again
            .host_actions
            .iter()
            .any(|a| a.contains("a retro-scan where it lives")),
        "{again:#?}"
    );
    assert!(world.store.get(PRODUCTION, "a.txt").is_some());

    // Bytes the new signatures catch, served from production: contained
    // from there, and the alert says it is a retro-detection.
    let served = world.store.put(PRODUCTION, "b.txt", b"..MALWARE-MARKER..", &[]);
    let found = world.scanner.scan(&StagingOnly, &retro_of(&served, "b.txt")).await;
    assert_eq!(found.outcome, Outcome::Done, "{found:#?}");
    assert!(
        world.store.get(PRODUCTION, "b.txt").is_none(),
        "{:#?}",
        world.store.log()
    );
    assert_eq!(world.result_tag(QUARANTINE, "b.txt").as_deref(), Some("infected"));
    let alert = world.published().pop().unwrap();
    let retro = alert.retro.expect("the alert names the retro-scan");
    assert_eq!(retro.previous_engine.as_deref(), Some("ClamAV 1.4.3/28000"));
    assert_eq!(retro.database, "ClamAV 1.4.3/28001");
}

fn engine_stage(engine: Option<&str>, rule_sets: &[&str]) -> StageReport {
    StageReport {
        plugin: "p".into(),
        plugin_version: "0".into(),
        kind: bucketscan_core::pipeline::StageKind::Inspector,
        outcome: bucketscan_core::report::StageOutcome::Continue,
        actions: Vec::new(),
        error: None,
        cause: None,
        engine_version: engine.map(str::to_owned),
        rule_sets: rule_sets.iter().map(|s| s.to_string()).collect(),
        duration_ms: 0.0,
    }
}

#[test]
fn the_engine_tag_names_clamd_and_the_rule_sets_and_sweeps_compare_clamd_only() {
    let clamd = "ClamAV 1.4.3/27000/Tue Dec  2 09:00:00 2026";
    assert_eq!(engine_tag(&[engine_stage(Some(clamd), &[])]).as_deref(), Some(clamd));
    let both = [
        engine_stage(None, &["webshells@abc"]),
        engine_stage(Some(clamd), &["webshells@abc", "docs@def"]),
    ];
    let tag = engine_tag(&both).unwrap();
    assert_eq!(tag, format!("{clamd} + yara webshells@abc docs@def"));
    assert_eq!(clamd_part(&tag), clamd);
    let rules_only = engine_tag(&[engine_stage(None, &["webshells@abc"])]).unwrap();
    assert_eq!(rules_only, "yara webshells@abc");
    assert_ne!(clamd_part(&rules_only), clamd, "a rule's verdict is not clamd's");
    assert_eq!(engine_tag(&[engine_stage(None, &[])]), None);
}
