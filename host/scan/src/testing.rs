//! In-memory stand-ins for the scan path's ports, so that its branches
//! are tested without wasm, clamd or AWS: a [`MemoryStore`] of buckets
//! that can be told to fail, [`ScriptedStages`] that answer with a chosen
//! verdict and perform chosen storage actions the way a promoter or a
//! quarantine plugin would, and a [`RecordingPublisher`]. The end-to-end
//! tests drive the same path through the real parts.

use crate::stages::Stages;
use crate::store::{Body, Copied, CopyDest, Current, FetchError, Opened, PendingBody, Store, Target};
use crate::{OnePipeline, PublishError, Publisher, Scanner};
use async_trait::async_trait;
use bucketscan_core::object::{ObjectBody, ObjectInfo, ScanObject, sha256_hex};
use bucketscan_core::pipeline::StageKind;
use bucketscan_core::report::{ScanReport, StageOutcome, StageReport};
use bucketscan_core::seal::Sealer;
use bucketscan_core::storage::{StageStorage, StorageAction, StorageError};
use bucketscan_core::tags::TagKeys;
use bucketscan_core::verdict::Verdict;
use bucketscan_engine::PipelineStage;
use bucketscan_engine::runner::{InspectPolicy, Inspected};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// S3's longest key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Buckets of objects in memory; every write is logged, and any request
/// kind can be made to fail.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), Stored>>,
    log: Mutex<Vec<String>>,
    faults: Mutex<Faults>,
    next_etag: Mutex<u64>,
    dry_run: bool,
}

#[derive(Clone)]
struct Stored {
    info: ObjectInfo,
    body: ObjectBody,
}

/// Requests that fail, and how.
#[derive(Default, Clone)]
pub struct Faults {
    pub open: Option<FetchError>,
    /// Ranged reads fail after this many succeeded.
    pub read_range_after: Option<(usize, FetchError)>,
    pub put_tags: Option<StorageError>,
    pub copy: Option<StorageError>,
    pub delete: Option<StorageError>,
    /// Right after the first tag write, the key is overwritten with these
    /// bytes (an upload racing the scan).
    pub overwrite_after_tagging: Option<Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A store whose report lines say "would" (a dry run's); writes are
    /// still kept, so that what the path would do can be checked.
    pub fn dry_run() -> Arc<Self> {
        Arc::new(Self {
            dry_run: true,
            ..Self::default()
        })
    }

    /// Holds `object` as it is (its info, its body).
    pub fn insert(&self, object: &ScanObject) {
        let info = (*object.info).clone();
        self.objects.lock().unwrap().insert(
            (info.bucket.clone(), info.key.clone()),
            Stored {
                info,
                body: object.body.clone(),
            },
        );
    }

    /// Puts `bytes` under `bucket`/`key` with `tags`, as an uploader would.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8], tags: &[(&str, &str)]) -> ObjectInfo {
        self.put_encoded(bucket, key, bytes, tags, None)
    }

    /// Like [`put`](Self::put), stored with a `Content-Encoding`.
    pub fn put_encoded(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        tags: &[(&str, &str)],
        content_encoding: Option<&str>,
    ) -> ObjectInfo {
        let mut info = ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            size: bytes.len() as u64,
            etag: Some(self.etag()),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..ObjectInfo::default()
        };
        info.headers.content_encoding = content_encoding.map(str::to_owned);
        self.objects.lock().unwrap().insert(
            (bucket.into(), key.into()),
            Stored {
                info: info.clone(),
                body: ObjectBody::from_bytes(bytes.to_vec()),
            },
        );
        info
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// The object under `bucket`/`key`, if any.
    pub fn get(&self, bucket: &str, key: &str) -> Option<(ObjectInfo, Vec<u8>)> {
        let objects = self.objects.lock().unwrap();
        let stored = objects.get(&(bucket.to_owned(), key.to_owned()))?;
        Some((stored.info.clone(), all_of(&stored.body)))
    }

    /// The keys in `bucket`.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// The writes done, in order: `tag s3://… [tags]`, `copy s3://… ->
    /// s3://… [tags]`, `delete s3://…`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn etag(&self) -> String {
        let mut next = self.next_etag.lock().unwrap();
        *next += 1;
        format!("etag-{next}")
    }

    fn fault<T: Clone>(&self, pick: impl FnOnce(&Faults) -> Option<T>) -> Option<T> {
        pick(&self.faults.lock().unwrap())
    }

    /// The stored object `object` names, if the key still holds its bytes.
    fn exact(&self, object: &ObjectInfo) -> Result<Stored, StorageError> {
        let objects = self.objects.lock().unwrap();
        let stored = objects
            .get(&(object.bucket.clone(), object.key.clone()))
            .ok_or_else(|| StorageError::Gone(format!("{}: gone", object.url())))?;
        if stored.info.etag != object.etag {
            return Err(StorageError::Replaced(format!("{}: holds other bytes", object.url())));
        }
        Ok(stored.clone())
    }
}

fn all_of(body: &ObjectBody) -> Vec<u8> {
    let len = body.len().unwrap_or(0) as usize;
    body.read_at(0, len).unwrap_or_default()
}

struct Ready(ObjectBody);

#[async_trait]
impl PendingBody for Ready {
    async fn read(self: Box<Self>) -> Result<Body, FetchError> {
        Ok(Body {
            sha256: sha256_hex(&all_of(&self.0)),
            bytes: self.0,
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn open(&self, target: &Target, limit: u64) -> Result<Opened, FetchError> {
        if let Some(err) = self.fault(|f| f.open.clone()) {
            return Err(err);
        }
        let stored = {
            let objects = self.objects.lock().unwrap();
            objects.get(&(target.bucket.clone(), target.key.clone())).cloned()
        };
        let Some(stored) = stored else {
            return Err(FetchError::Gone(format!("{}: gone", target.url())));
        };
        if target.etag.is_some() && target.etag != stored.info.etag {
            return Err(FetchError::Replaced(format!("{}: holds other bytes", target.url())));
        }
        if stored.info.size > limit {
            return Ok(Opened::TooLarge(stored.info));
        }
        Ok(Opened::Ready {
            info: stored.info,
            body: Box::new(Ready(stored.body)),
        })
    }

    async fn read_range(&self, object: &ObjectInfo, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        {
            let mut faults = self.faults.lock().unwrap();
            if let Some((left, err)) = &mut faults.read_range_after {
                if *left == 0 {
                    return Err(err.clone());
                }
                *left -= 1;
            }
        }
        let stored = self.exact(object).map_err(FetchError::from_storage)?;
        let size = stored.body.len().unwrap_or(0);
        let len = len.min(size.saturating_sub(offset)) as usize;
        stored
            .body
            .read_at(offset, len)
            .map_err(|err| FetchError::Unavailable(err.to_string()))
    }

    async fn put_tags(&self, object: &ObjectInfo, tags: &[(String, String)]) -> Result<Option<String>, StorageError> {
        if let Some(err) = self.fault(|f| f.put_tags.clone()) {
            return Err(err);
        }
        self.exact(object)?;
        {
            let mut objects = self.objects.lock().unwrap();
            let stored = objects
                .get_mut(&(object.bucket.clone(), object.key.clone()))
                .expect("exact");
            stored.info.tags = tags.to_vec();
        }
        self.log.lock().unwrap().push(format!("tag {} {tags:?}", object.url()));
        // An unversioned object cannot be pinned: an upload in between
        // means the tags may have landed on it (the real store looks again).
        let overwrite = self.faults.lock().unwrap().overwrite_after_tagging.take();
        if let Some(bytes) = overwrite {
            let now = self.put(&object.bucket, &object.key, &bytes, &[]);
            return Ok(now.etag);
        }
        Ok(None)
    }

    async fn current(&self, bucket: &str, key: &str) -> Result<Option<Current>, StorageError> {
        Ok(self.get(bucket, key).map(|(info, _)| Current {
            etag: info.etag.unwrap_or_default(),
            version_id: info.version_id,
            tags: info.tags,
        }))
    }

    async fn copy(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError> {
        if let Some(err) = self.fault(|f| f.copy.clone()) {
            return Err(err);
        }
        if dest.key.len() > MAX_KEY_BYTES {
            return Err(StorageError::Refused(format!(
                "KeyTooLongError: {} bytes",
                dest.key.len()
            )));
        }
        let source = self.exact(object)?;
        let mut metadata = source.info.metadata.clone();
        metadata.extend(dest.extra_metadata.iter().cloned());
        let info = ObjectInfo {
            bucket: dest.bucket.clone(),
            key: dest.key.clone(),
            etag: source.info.etag.clone(),
            tags: dest.tags.clone(),
            metadata,
            ..source.info.clone()
        };
        self.objects.lock().unwrap().insert(
            (dest.bucket.clone(), dest.key.clone()),
            Stored {
                info,
                body: source.body.clone(),
            },
        );
        self.log.lock().unwrap().push(format!(
            "copy {} -> s3://{}/{} {:?}",
            object.url(),
            dest.bucket,
            dest.key,
            dest.tags
        ));
        Ok(Copied {
            etag: source.info.etag,
            version_id: None,
            sha256: Some(sha256_hex(&all_of(&source.body))),
        })
    }

    async fn delete(&self, object: &ObjectInfo) -> Result<(), StorageError> {
        if let Some(err) = self.fault(|f| f.delete.clone()) {
            return Err(err);
        }
        self.exact(object)?;
        self.objects
            .lock()
            .unwrap()
            .remove(&(object.bucket.clone(), object.key.clone()));
        self.log.lock().unwrap().push(format!("delete {}", object.url()));
        Ok(())
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

/// What the scripted inspection says of some bytes.
pub type VerdictOf = Box<dyn Fn(&[u8]) -> Verdict + Send + Sync>;

/// Stages with scripted answers: the inspection says `verdict` (of the
/// bytes, so decoded and stored bytes may differ); the actions perform
/// `on_clean` or `on_contain` through the scan path's storage, one stage
/// report each, as a promoter or a quarantine plugin would.
pub struct ScriptedStages {
    pub verdict: VerdictOf,
    pub on_clean: Vec<StorageAction>,
    pub on_contain: Vec<StorageAction>,
    /// The bytes each inspection read, in order.
    pub inspected: Mutex<Vec<Vec<u8>>>,
}

impl ScriptedStages {
    /// Stages that find `signature` in any bytes containing `marker`.
    pub fn finding(marker: &'static [u8], signature: &'static str) -> Self {
        Self {
            verdict: Box::new(move |bytes| {
                if bytes.windows(marker.len()).any(|w| w == marker) {
                    Verdict::Infected {
                        findings: vec![bucketscan_core::verdict::Finding {
                            engine: "scripted".into(),
                            signature: signature.into(),
                            location: None,
                        }],
                    }
                } else {
                    Verdict::Clean
                }
            }),
            on_clean: Vec::new(),
            on_contain: Vec::new(),
            inspected: Mutex::default(),
        }
    }

    /// The same, with a promotion to `production` and a quarantine move.
    pub fn promoting(self, production: &str, quarantine: &str) -> Self {
        Self {
            on_clean: vec![StorageAction::Move {
                bucket: production.into(),
                key: String::new(),
                extra_tags: Vec::new(),
            }],
            on_contain: vec![StorageAction::Move {
                bucket: quarantine.into(),
                key: String::new(),
                extra_tags: Vec::new(),
            }],
            ..self
        }
    }
}

/// A stage report for one scripted stage.
fn report(kind: StageKind, outcome: StageOutcome, actions: Vec<String>, error: Option<String>) -> StageReport {
    StageReport {
        plugin: "scripted".into(),
        plugin_version: "0.0.0".into(),
        kind,
        outcome,
        actions,
        error,
        cause: None,
        engine_version: None,
        rule_sets: Vec::new(),
        duration_ms: 0.0,
    }
}

#[async_trait]
impl Stages for ScriptedStages {
    async fn inspect(&self, _stages: &[PipelineStage], object: &ScanObject, _policy: &InspectPolicy) -> Inspected {
        let bytes = all_of(&object.body);
        let verdict = (self.verdict)(&bytes);
        self.inspected.lock().unwrap().push(bytes);
        let outcome = StageOutcome::Verdict(verdict.result_name());
        Inspected {
            verdict,
            later: Vec::new(),
            stages: vec![report(StageKind::Inspector, outcome, Vec::new(), None)],
        }
    }

    async fn act(
        &self,
        _stages: &[PipelineStage],
        object: &ScanObject,
        verdict: &Verdict,
        storage: &Arc<dyn StageStorage>,
        _before: &[StageReport],
    ) -> Vec<StageReport> {
        let actions = if verdict.contains() {
            &self.on_contain
        } else {
            &self.on_clean
        };
        let mut reports = Vec::new();
        for action in actions {
            // An empty destination key means "the object's own key".
            let action = match action.clone() {
                StorageAction::Move {
                    bucket,
                    key,
                    extra_tags,
                } if key.is_empty() => StorageAction::Move {
                    bucket,
                    key: object.info.key.clone(),
                    extra_tags,
                },
                other => other,
            };
            reports.push(match storage.perform(&object.info, action).await {
                Ok(line) => report(StageKind::Action, StageOutcome::Done, vec![line], None),
                Err(err) => report(
                    StageKind::Action,
                    StageOutcome::Failed,
                    Vec::new(),
                    Some(err.to_string()),
                ),
            });
        }
        reports
    }

    fn not_run(&self, _stages: &[PipelineStage]) -> Vec<StageReport> {
        Vec::new()
    }
}

/// Keeps what is published, and whether it could wait for a batch;
/// fails while told to.
#[derive(Default)]
pub struct RecordingPublisher {
    pub published: Mutex<Vec<ScanReport>>,
    pub batched: Mutex<Vec<bool>>,
    pub failing: std::sync::atomic::AtomicBool,
}

impl RecordingPublisher {
    fn keep(&self, report: &ScanReport, batched: bool) -> Result<String, PublishError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PublishError {
                destination: "recorded".into(),
                detail: "told to fail".into(),
            });
        }
        self.published.lock().unwrap().push(report.clone());
        self.batched.lock().unwrap().push(batched);
        Ok("published to recorded".into())
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.keep(report, false)
    }

    async fn publish_batched(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.keep(report, true)
    }
}

/// A scanner over the stand-ins, with a fresh seal key and a spool in the
/// temp dir.
pub fn scanner(store: Arc<MemoryStore>, stages: Arc<ScriptedStages>, publisher: Arc<RecordingPublisher>) -> Scanner {
    Scanner {
        stages,
        store,
        publisher: Some(publisher),
        tag_keys: TagKeys::default(),
        sealer: Sealer::ephemeral(),
        allow_list: Default::default(),
        spool: crate::spool::SpoolConfig::in_temp_dir(1 << 30),
        hashes: None,
    }
}

/// One pipeline (the scripted stages stand for it) for every object.
pub fn any_object() -> OnePipeline {
    OnePipeline {
        stages: Arc::from(Vec::new()),
        max_object_bytes: 1 << 20,
    }
}

/// The target an upload event for `info` names.
pub fn event_for(info: &ObjectInfo) -> Target {
    Target {
        etag: info.etag.clone(),
        size: Some(info.size),
        ..Target::new(&info.bucket, &info.key)
    }
}
