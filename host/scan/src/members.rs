//! The members plan: an object over its pipeline's size limit that is a
//! container the host walks (`bucketscan_unpack::members`) is read where
//! it lies by ranged GETs, and each member goes through the inspectors as
//! an object of its own, its key the member's path inside the object
//! (`big.tar.gz!/big.tar!/dir/x.exe`). The member verdicts fold into the
//! object's: any infected member makes it infected (the finding names the
//! member) and ends the walk; else the first blocked, else the first
//! unscannable member (or the walk's own stop: malformed, a limit, a
//! bomb) decides; clean only when every member was read and found clean.
//!
//! The walk runs on a blocking thread and hands members over one at a
//! time through a channel of one; two members are inspected at once, their
//! verdicts folded in the walk's order, and at most three are spooled at
//! once (as when they were inspected one at a time), within the spool
//! budget.

use crate::path::Inspection;
use crate::ranged::{Failure, RangedReader, StopOnDrop};
use crate::spool::{NoRoom, SpoolBudget, SpoolConfig, SpoolError, SpoolWriter};
use crate::store::FetchError;
use crate::{Routing, Scanner, hashes};
use bucketscan_core::hashes::{HashKind, HashMatch, HashSignatures};
use bucketscan_core::object::{MemberOf, ObjectBody, ObjectInfo, ScanObject};
use bucketscan_core::report::StageReport;
use bucketscan_core::{Finding, UnscannableReason, Verdict};
use bucketscan_engine::PipelineStage;
use bucketscan_unpack::members::{Halt, MemberPath, Sink, SpooledContainer, SpooledStream, WalkLimits, Walked, walk};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// What the walk hands the scan.
enum Item {
    Member {
        /// Held until the member's inspection ends (see `ChannelSink`).
        permit: tokio::sync::OwnedSemaphorePermit,
        path: MemberPath,
        body: ObjectBody,
        sha256: String,
        size: u64,
    },
    NotHanded {
        path: String,
        verdict: Verdict,
    },
}

/// Where a walk reads the container.
pub(crate) enum Container {
    /// In the store, by ranged GETs pinned to the scanned version.
    Stored,
    /// Already here: an API upload, spooled.
    Local(ObjectBody),
}

/// What reading the container took, for the report.
type Describe = Box<dyn FnOnce() -> String + Send>;

impl Scanner {
    /// The members of `info` (a container over the size limit) through
    /// `stages`; `Err` when the object could not be read now (a retry may).
    pub(crate) async fn inspect_members(
        &self,
        pipelines: &dyn Routing,
        stages: &[PipelineStage],
        info: &ObjectInfo,
        limits: WalkLimits,
        container: Container,
    ) -> Result<Inspection, FetchError> {
        let failure = Failure::default();
        match container {
            Container::Stored => {
                // Whole-file signatures for the object's size: their
                // digests are taken as the walk reads in order.
                let signatures = self.hashes.as_ref().and_then(|source| source.hash_signatures().ok());
                let kinds = signatures
                    .as_ref()
                    .filter(|signatures| signatures.covers(info.size))
                    .map(|signatures| signatures.kinds_for(info.size))
                    .unwrap_or_default();
                let reader = RangedReader::new(
                    self.store.clone(),
                    Arc::new(info.clone()),
                    tokio::runtime::Handle::current(),
                    failure.clone(),
                    kinds,
                );
                let requests = reader.requests.clone();
                // However this ends (a verdict, a failure, the object's
                // deadline dropping the scan), the walk stops reading.
                let stop = StopOnDrop(reader.canceller());
                let describe: Describe = Box::new(move || {
                    format!(
                        "in {} ranged reads",
                        requests.load(std::sync::atomic::Ordering::Relaxed)
                    )
                });
                // The object's digest, for the seal and the copy check,
                // and the whole-file signature it matches: free for a
                // stream, a directory's read more for a zip.
                let digest =
                    move |reader: RangedReader| reader.digest(DIGEST_READ_MORE, signatures.as_deref()).ok().flatten();
                let walk = Walk {
                    limits,
                    failure,
                    describe,
                    spool_held: 0,
                };
                self.walk_members(pipelines, stages, info, walk, reader, digest, Some(stop))
                    .await
            }
            Container::Local(body) => {
                let describe: Describe = Box::new(|| "from the spooled upload".to_owned());
                let spool_held = match body {
                    ObjectBody::File(_) => SpoolBudget::reserved_size(info.size),
                    _ => 0,
                };
                let walk = Walk {
                    limits,
                    failure,
                    describe,
                    spool_held,
                };
                // The upload's SHA-256 was taken as it arrived (its
                // signatures are looked up after the walk); an MD5 or
                // SHA-1 some signature for its size needs is taken from
                // the spool once the walk is done.
                let known = info.sha256.clone();
                let size = info.size;
                let signatures = self.hashes.as_ref().and_then(|source| source.hash_signatures().ok());
                let reader = body.reader();
                let digest = move |reader| {
                    let found = signatures.and_then(|signatures| spooled_match(&signatures, size, reader));
                    known.map(|sha256| (sha256, found))
                };
                self.walk_members(pipelines, stages, info, walk, reader, digest, None)
                    .await
            }
        }
    }

    /// Walks `reader` on a blocking thread, each member through the
    /// inspectors as it comes, and folds their verdicts.
    #[allow(clippy::too_many_arguments)]
    async fn walk_members<R: Read + std::io::Seek + Send + 'static>(
        &self,
        pipelines: &dyn Routing,
        stages: &[PipelineStage],
        info: &ObjectInfo,
        walk_with: Walk,
        reader: R,
        digest: impl FnOnce(R) -> Option<WholeDigest> + Send + 'static,
        stop_walk: Option<StopOnDrop>,
    ) -> Result<Inspection, FetchError> {
        let Walk {
            limits,
            failure,
            describe,
            spool_held,
        } = walk_with;
        let (sender, mut members) = mpsc::channel(1);
        let spooled = Arc::new(tokio::sync::Semaphore::new(MEMBERS_AT_ONCE + 1));
        let mut sink = ChannelSink {
            sender,
            spooled: spooled.clone(),
            runtime: tokio::runtime::Handle::current(),
            spool: self.spool.clone(),
            member_bytes: limits.member_bytes,
            failure: failure.clone(),
            hashes: self.hashes.as_ref().and_then(|source| source.hash_signatures().ok()),
            containers_held: Arc::new(AtomicU64::new(spool_held)),
        };
        let name = info.key.clone();
        let walking = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let walked = walk(&mut reader, &name, &limits, &mut sink);
            let digest = match &walked {
                Ok(_) => digest(reader),
                Err(_) => None,
            };
            (walked, digest)
        });
        let mut folded = MemberVerdicts::default();
        // Two members in the inspectors at once, so the engine is not left
        // idle while the next member's own work (its survey, the stages
        // before the engine) runs; verdicts fold in the walk's order.
        let mut inspecting = FuturesOrdered::new();
        let mut more = true;
        loop {
            tokio::select! {
                item = members.recv(), if more && inspecting.len() < MEMBERS_AT_ONCE => match item {
                    Some(item) => inspecting.push_back(self.inspect_member(pipelines, stages, info, item)),
                    None => more = false,
                },
                Some(done) = inspecting.next(), if !inspecting.is_empty() => {
                    let go_on = match done {
                        Ok((key, verdict, stages)) => folded.add(&key, verdict, stages),
                        Err(err) => {
                            drop(inspecting);
                            spooled.close();
                            drop(stop_walk);
                            drop(members);
                            let _ = walking.await;
                            return Err(err);
                        }
                    };
                    if !go_on {
                        break;
                    }
                }
                else => break,
            }
        }
        drop(inspecting);
        // A walk still going stops at its next read, permit or send.
        spooled.close();
        drop(stop_walk);
        drop(members);
        let (walked, whole) = walking
            .await
            .map_err(|err| FetchError::Unavailable(format!("{}: walking its members: {err}", info.url())))?;
        if !folded.infected() {
            // A failed request shows to the walk as a broken container: it
            // is a retry, not a verdict.
            if let Some(err) = failure.lock().expect("the failure slot").take() {
                return Err(err);
            }
        }
        let mut inspection = folded.into_inspection(info, walked, &describe());
        let infected = matches!(inspection.verdict, Verdict::Infected { .. });
        let digest = whole.as_ref().map(|(sha256, _)| sha256.clone());
        let found = whole
            .filter(|_| !infected)
            .and_then(|(sha256, found)| found.or_else(|| self.whole_sha256_signature(info, &sha256)));
        if let Some(found) = found {
            inspection.verdict = hashes::infected_by(found, &mut inspection.notes, None);
        }
        inspection.object.info = Arc::new(ObjectInfo {
            walked_sha256: digest,
            ..info.clone()
        });
        Ok(inspection)
    }

    /// One item of the walk through the inspectors: a member's key, verdict
    /// and stages (a member not handed over has its verdict already).
    fn inspect_member<'a>(
        &'a self,
        pipelines: &'a dyn Routing,
        stages: &'a [PipelineStage],
        info: &'a ObjectInfo,
        item: Item,
    ) -> InspectingMember<'a> {
        Box::pin(async move {
            match item {
                Item::Member {
                    permit,
                    path,
                    body,
                    sha256,
                    size,
                } => {
                    let member = member_info(info, &path, size, sha256);
                    let limit = member.size;
                    let inspection = self.inspect_bytes(pipelines, stages, &member, body, limit).await?;
                    drop(permit);
                    Ok((member.key, inspection.verdict, inspection.stages))
                }
                Item::NotHanded { path, verdict } => Ok((path.to_string(), verdict, Vec::new())),
            }
        })
    }

    /// The SHA-256 whole-file signature for a walked object's size that its
    /// digest matches: a container known bad as a whole is infected
    /// whatever its members hold. For an upload walked from the spool,
    /// whose SHA-256 alone was taken as it arrived (an object read by
    /// ranges gets every digest its size needs as the walk reads it).
    fn whole_sha256_signature(&self, info: &ObjectInfo, sha256: &str) -> Option<HashMatch> {
        let signatures = self.hashes.as_ref()?.hash_signatures().ok()?;
        let for_its_size = signatures.covers(info.size) && signatures.kinds_for(info.size).contains(&HashKind::Sha256);
        let raw = hex::decode(sha256).ok().filter(|_| for_its_size)?;
        signatures.lookup(&[(HashKind::Sha256, &raw)], info.size)
    }
}

/// Members in the inspectors at once.
const MEMBERS_AT_ONCE: usize = 2;

/// A member's inspection under way: its key, verdict and stages.
type InspectingMember<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(String, Verdict, Vec<StageReport>), FetchError>> + Send + 'a>,
>;

/// The whole-file signature other than by SHA-256 that the spooled
/// `body` of `size` bytes matches, if any signature for its size is by
/// MD5 or SHA-1 (the SHA-256 one is looked up from the digest taken on
/// arrival).
fn spooled_match(signatures: &HashSignatures, size: u64, mut body: impl Read + std::io::Seek) -> Option<HashMatch> {
    let kinds = signatures.kinds_for(size);
    if !signatures.covers(size) || kinds.iter().all(|kind| *kind == HashKind::Sha256) {
        return None;
    }
    body.seek(std::io::SeekFrom::Start(0)).ok()?;
    match hashes::match_stream(signatures, size, &mut body, &|| false) {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "whole-file hash signatures of a spooled upload not applied");
            None
        }
    }
}

/// A walked object's SHA-256 (hex), and the whole-file signature its
/// digests matched, when they were all taken.
type WholeDigest = (String, Option<HashMatch>);

/// One walk's limits, failure slot and account of its reads.
struct Walk {
    limits: WalkLimits,
    failure: Failure,
    describe: Describe,
    /// Spool the object itself holds while it is walked (an upload's file).
    spool_held: u64,
}

/// The most the digest reads past what the walk read in order.
const DIGEST_READ_MORE: u64 = 256 << 20;

/// What a member is, as the inspectors see it: an object of its own keyed
/// by its location in the container, in the scanned object's bucket and
/// version, which says where it lies.
fn member_info(object: &ObjectInfo, path: &MemberPath, size: u64, sha256: String) -> ObjectInfo {
    ObjectInfo {
        bucket: object.bucket.clone(),
        key: path.to_string(),
        version_id: object.version_id.clone(),
        size,
        sha256: Some(sha256),
        member: Some(MemberOf {
            container_key: object.key.clone(),
            path: path.names().to_vec(),
        }),
        ..ObjectInfo::default()
    }
}

/// The walk's side of the channel: spools each member and sends it.
struct ChannelSink {
    sender: mpsc::Sender<Item>,
    /// One permit per member spooled and not yet inspected to its end:
    /// two in the inspectors and one waiting, as many as before members
    /// were inspected two at a time (one in, one waiting, one spooling).
    spooled: Arc<tokio::sync::Semaphore>,
    runtime: tokio::runtime::Handle,
    spool: SpoolConfig,
    member_bytes: u64,
    failure: Failure,
    /// The whole-file hash signatures clamd runs, for members too large
    /// for it; none when they cannot be trusted now.
    hashes: Option<Arc<HashSignatures>>,
    /// Spool this walk holds: the object's own, and that of the
    /// containers it is inside of.
    containers_held: Arc<AtomicU64>,
}

impl ChannelSink {
    fn send(&self, item: Item) -> Result<(), Halt> {
        // A closed channel: the scan has its verdict, or gave up.
        self.sender.blocking_send(item).map_err(|_| Halt::BySink)
    }

    fn fail(&self, err: FetchError) -> Halt {
        self.failure.lock().expect("the failure slot").get_or_insert(err);
        Halt::BySink
    }

    /// A member whose bytes a whole-file hash signature matched: infected,
    /// under clamd's name for the signature.
    fn matched_by_hash(&self, path: &MemberPath, found: HashMatch) -> Result<(), Halt> {
        self.send(Item::NotHanded {
            path: path.to_string(),
            verdict: Verdict::Infected {
                findings: vec![Finding::new("clamav", found.name)],
            },
        })
    }

    /// The next bytes of a container being spooled. A closed channel (the
    /// scan has its verdict, or gave up) stops it; a read error is the
    /// walk's to name (it sees it too).
    fn read_to_spool(&self, body: &mut dyn Read, chunk: &mut [u8]) -> Result<usize, Halt> {
        if self.sender.is_closed() {
            return Err(Halt::BySink);
        }
        body.read(chunk).map_err(|_| Halt::BySink)
    }

    /// The most spool a container inside the object may take: what the
    /// budget holds beside the members spooled at once and the containers
    /// this walk is already inside of (a retry would find no more).
    fn container_room(&self) -> u64 {
        let beside = (MEMBERS_AT_ONCE as u64 + 1).saturating_mul(SpoolBudget::reserved_size(self.member_bytes));
        let held = self.containers_held.load(Ordering::Relaxed);
        self.spool.budget.capacity().saturating_sub(beside).saturating_sub(held)
    }

    /// The spool settings for a container: on disk whatever the
    /// threshold, since nested ones would add up in memory.
    fn on_disk(&self) -> SpoolConfig {
        SpoolConfig {
            threshold_bytes: 0,
            ..self.spool.clone()
        }
    }

    /// The whole-file hash signatures when some is for a member of `size`
    /// bytes: none costs no hashing.
    fn signatures_for(&self, size: u64) -> Option<Arc<HashSignatures>> {
        self.hashes
            .clone()
            .filter(|signatures| signatures.covers(size) && !signatures.kinds_for(size).is_empty())
    }

    /// For a member whose size is known only at its end (a compressed
    /// stream's content): the signatures and a hash to feed from its first
    /// byte, when some signature is for a size over the engine's limit, so
    /// that it gets the check a member of known size gets if it turns out
    /// too large. None costs nothing.
    fn hash_for_unknown_size(&self) -> Option<(Arc<HashSignatures>, hashes::StreamHash)> {
        let signatures = self.hashes.clone()?;
        let kinds = signatures.kinds_over(self.member_bytes);
        (!kinds.is_empty()).then(|| (signatures, hashes::StreamHash::new(kinds)))
    }

    /// A member found too large mid-stream: too large, unless it is being
    /// hashed; then the rest of its bytes are hashed (the walk's expansion
    /// limits still bound them) and looked up for its full length.
    fn too_large_midway(
        &mut self,
        path: &MemberPath,
        hash: Option<(Arc<HashSignatures>, hashes::StreamHash)>,
        body: &mut dyn Read,
        detail: String,
    ) -> Result<(), Halt> {
        let Some((signatures, mut hash)) = hash else {
            return self.not_handed(path, UnscannableReason::TooLarge, detail);
        };
        // A read error is the walk's to name (it sees it too); a closed
        // channel means the scan has its verdict or gave up: stop reading.
        let sender = self.sender.clone();
        hash.read_all(body, &|| sender.is_closed()).map_err(|_| Halt::BySink)?;
        let signatures = &*signatures;
        let len = hash.len();
        if !signatures.covers(len) {
            return self.not_handed(path, UnscannableReason::TooLarge, detail);
        }
        match hash.look_up(signatures) {
            Some(found) => self.matched_by_hash(path, found),
            None => {
                let detail = format!("{detail}; no whole-file hash signature matched its {len} bytes");
                self.not_handed(path, UnscannableReason::TooLarge, detail)
            }
        }
    }
}

impl Sink for ChannelSink {
    fn member(&mut self, path: &MemberPath, size: Option<u64>, body: &mut dyn Read) -> Result<(), Halt> {
        // Closed: the scan has its verdict, or gave up.
        let permit = self
            .runtime
            .block_on(self.spooled.clone().acquire_owned())
            .map_err(|_| Halt::BySink)?;
        let mut writer = SpoolWriter::new(&self.spool, size, self.member_bytes);
        let mut hash = match size {
            None => self.hash_for_unknown_size(),
            Some(_) => None,
        };
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            // A read error is the walk's to name (it sees it too).
            let n = body.read(&mut chunk).map_err(|_| Halt::BySink)?;
            if n == 0 {
                break;
            }
            if let Some((_, hash)) = &mut hash {
                hash.update(&chunk[..n]);
            }
            match writer.append(&chunk[..n]) {
                Ok(()) => {}
                Err(SpoolError::TooLarge { limit }) => {
                    // Its spool file and budget are freed before the rest
                    // is read.
                    drop(writer);
                    let detail = format!("{path}: more than the {limit}-byte limit of the engine");
                    return self.too_large_midway(path, hash, body, detail);
                }
                Err(SpoolError::NoRoom(never @ NoRoom::Never { .. })) => {
                    drop(writer);
                    return self.too_large_midway(path, hash, body, format!("{path}: {never}"));
                }
                Err(SpoolError::NoRoom(refusal)) => {
                    return Err(self.fail(FetchError::OverBudget(format!("{path}: {refusal}"))));
                }
                Err(SpoolError::Io(err)) => return Err(self.fail(FetchError::Unavailable(format!("{path}: {err}")))),
            }
        }
        let spooled = writer
            .finish()
            .map_err(|err| self.fail(FetchError::Unavailable(format!("{path}: {err}"))))?;
        self.send(Item::Member {
            permit,
            path: path.clone(),
            body: spooled.body,
            sha256: spooled.sha256,
            size: spooled.len,
        })
    }

    /// A member too large for the engine, checked against the whole-file
    /// hash signatures when some is for its size: a match is infected; no
    /// match leaves it too large, never clean.
    fn oversized(&mut self, path: &MemberPath, size: u64, body: &mut dyn Read, detail: String) -> Result<(), Halt> {
        let Some(signatures) = self.signatures_for(size) else {
            return self.not_handed(path, UnscannableReason::TooLarge, detail);
        };
        let sender = self.sender.clone();
        match hashes::match_stream(&signatures, size, body, &|| sender.is_closed()) {
            Ok(Some(found)) => self.matched_by_hash(path, found),
            Ok(None) => {
                let detail = format!("{detail}; no whole-file hash signature matched its bytes");
                self.not_handed(path, UnscannableReason::TooLarge, detail)
            }
            // The walk names a failed read (it sees it too).
            Err(err) if err.kind() != std::io::ErrorKind::InvalidData => Err(Halt::BySink),
            Err(err) => Err(Halt::Stop {
                reason: UnscannableReason::Malformed,
                detail: format!("{path}: {err}"),
            }),
        }
    }

    /// A zip, 7z or ISO image over the engine's limit inside the object:
    /// written to the spool (whole-file hash signatures applied on the
    /// way) for the walk to read by seeking. No room when the spool could
    /// never hold it beside the containers this walk is already inside of
    /// and the members it spools: a retry would fail the same way.
    fn spool(
        &mut self,
        path: &MemberPath,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Option<Box<dyn SpooledContainer>>, Halt> {
        if SpoolBudget::reserved_size(size) > self.container_room() {
            return Ok(None);
        }
        let mut writer = SpoolWriter::new(&self.on_disk(), Some(size), size);
        let mut hash = self
            .signatures_for(size)
            .map(|signatures| (hashes::StreamHash::new(signatures.kinds_for(size)), signatures));
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = self.read_to_spool(body, &mut chunk)?;
            if n == 0 {
                break;
            }
            if let Some((hash, _)) = &mut hash {
                hash.update(&chunk[..n]);
            }
            writer.append(&chunk[..n]).map_err(|err| match err {
                // More than its container said: not a retry, a broken one.
                SpoolError::TooLarge { .. } => Halt::Stop {
                    reason: UnscannableReason::Malformed,
                    detail: format!("{path}: it holds more than the {size} bytes its container says"),
                },
                SpoolError::NoRoom(refusal) => self.fail(FetchError::OverBudget(format!("{path}: {refusal}"))),
                SpoolError::Io(err) => {
                    self.fail(FetchError::Unavailable(format!("{path}: spooling it to walk: {err}")))
                }
            })?;
        }
        let spooled = writer
            .finish()
            .map_err(|err| self.fail(FetchError::Unavailable(format!("{path}: {err}"))))?;
        if spooled.len != size {
            return Err(Halt::Stop {
                reason: UnscannableReason::Malformed,
                detail: format!("{path}: it holds {} bytes; its container says {size}", spooled.len),
            });
        }
        if let Some(found) = hash.and_then(|(hash, signatures)| hash.look_up(&signatures)) {
            // Known as a whole: its members need no look.
            self.matched_by_hash(path, found)?;
            return Err(Halt::BySink);
        }
        Ok(Some(Box::new(HeldContainer::new(
            spooled.body.reader(),
            spooled.reserved,
            self.containers_held.clone(),
        ))))
    }

    /// A zip, 7z or ISO image whose size is known only at its end (a
    /// compressed stream's content): spooled as far as the room
    /// [`Sink::spool`] would give one, its length then known. Past that
    /// room it is too large, checked against the whole-file hash
    /// signatures from its first byte like any member of unknown size.
    fn spool_unsized(&mut self, path: &MemberPath, body: &mut dyn Read) -> Result<Option<SpooledStream>, Halt> {
        let room = self.container_room();
        if room < self.member_bytes {
            // Less room than a member that fits takes: as any member of
            // unknown size, with the spool set aside for those.
            return self.member(path, None, body).map(|()| None);
        }
        let mut writer = SpoolWriter::new(&self.on_disk(), None, room);
        let mut hash = self.hash_for_unknown_size();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = self.read_to_spool(body, &mut chunk)?;
            if n == 0 {
                break;
            }
            if let Some((_, hash)) = &mut hash {
                hash.update(&chunk[..n]);
            }
            let refused = match writer.append(&chunk[..n]) {
                Ok(()) => continue,
                Err(SpoolError::TooLarge { .. }) => format!("no spool room past {room} bytes to walk it"),
                Err(SpoolError::NoRoom(never @ NoRoom::Never { .. })) => never.to_string(),
                Err(SpoolError::NoRoom(refusal)) => {
                    return Err(self.fail(FetchError::OverBudget(format!("{path}: {refusal}"))));
                }
                Err(SpoolError::Io(err)) => {
                    return Err(self.fail(FetchError::Unavailable(format!("{path}: spooling it to walk: {err}"))));
                }
            };
            // Its spool file and budget are freed before the rest is read.
            drop(writer);
            let detail = format!(
                "{path}: more than the {}-byte limit of the engine, and {refused}",
                self.member_bytes
            );
            return self.too_large_midway(path, hash, body, detail).map(|()| None);
        }
        let spooled = writer
            .finish()
            .map_err(|err| self.fail(FetchError::Unavailable(format!("{path}: {err}"))))?;
        let len = spooled.len;
        let found = hash
            .filter(|(signatures, _)| signatures.covers(len))
            .and_then(|(signatures, hash)| hash.look_up(&signatures));
        if let Some(found) = found {
            // Known as a whole: its members need no look.
            self.matched_by_hash(path, found)?;
            return Err(Halt::BySink);
        }
        // Held as reserved: a growing file took room ahead of its bytes.
        let held = HeldContainer::new(spooled.body.reader(), spooled.reserved, self.containers_held.clone());
        Ok(Some(SpooledStream {
            body: Box::new(held),
            len,
        }))
    }

    fn not_handed(&mut self, path: &MemberPath, reason: UnscannableReason, detail: String) -> Result<(), Halt> {
        self.send(Item::NotHanded {
            path: path.to_string(),
            verdict: Verdict::Unscannable { reason, detail },
        })
    }
}

/// A spooled container being walked: counts its bytes as held by the walk
/// until the walk is done with it.
struct HeldContainer {
    reader: bucketscan_core::object::BodyReader,
    size: u64,
    held: Arc<AtomicU64>,
}

impl HeldContainer {
    fn new(reader: bucketscan_core::object::BodyReader, size: u64, held: Arc<AtomicU64>) -> Self {
        held.fetch_add(size, Ordering::Relaxed);
        Self { reader, size, held }
    }
}

impl Drop for HeldContainer {
    fn drop(&mut self) {
        self.held.fetch_sub(self.size, Ordering::Relaxed);
    }
}

impl Read for HeldContainer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl std::io::Seek for HeldContainer {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        self.reader.seek(position)
    }
}

/// The member verdicts, folded as they come.
#[derive(Default)]
struct MemberVerdicts {
    /// The verdict that decides so far, other than clean.
    deciding: Option<Verdict>,
    /// The stages of the member that decided, else of the last one read.
    stages: Vec<StageReport>,
    clean: u64,
    other: u64,
}

impl MemberVerdicts {
    /// Folds in `path`'s verdict; `false` when the walk may stop (the
    /// object's verdict can no longer change but to its detriment).
    fn add(&mut self, path: &str, verdict: Verdict, stages: Vec<StageReport>) -> bool {
        let rank = |verdict: &Verdict| match verdict {
            Verdict::Clean => 0,
            Verdict::Unscannable { .. } => 1,
            Verdict::Blocked { .. } => 2,
            Verdict::Error { .. } => 3,
            Verdict::Infected { .. } => 4,
        };
        if verdict.is_clean() {
            self.clean += 1;
        } else {
            self.other += 1;
        }
        let current = self.deciding.as_ref().map_or(0, rank);
        if rank(&verdict) > current || (current == 0 && !stages.is_empty()) {
            self.stages = stages;
        }
        if rank(&verdict) > current {
            self.deciding = Some(located(path, verdict));
        }
        !matches!(self.deciding, Some(Verdict::Infected { .. } | Verdict::Error { .. }))
    }

    fn infected(&self) -> bool {
        matches!(self.deciding, Some(Verdict::Infected { .. }))
    }

    fn into_inspection(mut self, info: &ObjectInfo, walked: Result<Walked, Halt>, read: &str) -> Inspection {
        let mut notes = vec![format!(
            "over the size limit, scanned member by member: {} clean, {} not, {read}",
            self.clean, self.other
        )];
        match walked {
            Ok(walked) => {
                if walked.members == 0 {
                    self.add(
                        &info.key,
                        Verdict::Unscannable {
                            reason: UnscannableReason::Malformed,
                            detail: format!("{}: over the size limit, and no member in it", info.key),
                        },
                        Vec::new(),
                    );
                }
                notes.push(format!("{} bytes decompressed", walked.expanded));
            }
            Err(Halt::Stop { reason, detail }) => {
                notes.push(format!("the walk stopped: {detail}"));
                self.add(&info.key, Verdict::Unscannable { reason, detail }, Vec::new());
            }
            Err(Halt::BySink) => {}
        }
        let object = ScanObject::new(Arc::new(info.clone()), ObjectBody::NotFetched);
        let mut inspection = Inspection::decided(object, self.deciding.unwrap_or(Verdict::Clean));
        inspection.stages = self.stages;
        inspection.notes = notes;
        inspection
    }
}

/// `verdict` about the member at `path`, saying where.
fn located(path: &str, verdict: Verdict) -> Verdict {
    let at = |text: String| {
        if text.starts_with(path) {
            text
        } else {
            format!("{path}: {text}")
        }
    };
    match verdict {
        Verdict::Infected { findings } => Verdict::Infected {
            findings: findings
                .into_iter()
                .map(|mut finding| {
                    finding.location.get_or_insert_with(|| path.to_owned());
                    finding
                })
                .collect(),
        },
        Verdict::Blocked { reason } => Verdict::Blocked { reason: at(reason) },
        Verdict::Unscannable { reason, detail } => Verdict::Unscannable {
            reason,
            detail: at(detail),
        },
        Verdict::Error { message } => Verdict::Error { message: at(message) },
        Verdict::Clean => Verdict::Clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::verdict::Finding;

    fn infected() -> Verdict {
        Verdict::Infected {
            findings: vec![Finding::new("clamav", "Eicar")],
        }
    }

    fn unscannable() -> Verdict {
        Verdict::Unscannable {
            reason: UnscannableReason::Encrypted,
            detail: "encrypted".into(),
        }
    }

    fn folded(verdicts: Vec<(&str, Verdict)>, walked: Result<Walked, Halt>) -> (Verdict, Vec<bool>) {
        let mut folded = MemberVerdicts::default();
        let go_on = verdicts
            .into_iter()
            .map(|(path, verdict)| folded.add(path, verdict, Vec::new()))
            .collect();
        let inspection = folded.into_inspection(&ObjectInfo::default(), walked, "in 0 ranged reads");
        (inspection.verdict, go_on)
    }

    fn walked(members: u64) -> Result<Walked, Halt> {
        Ok(Walked { members, expanded: 0 })
    }

    #[test]
    fn clean_only_when_every_member_was_read_and_clean() {
        let (verdict, go_on) = folded(vec![("a", Verdict::Clean), ("b", Verdict::Clean)], walked(2));
        assert_eq!(verdict, Verdict::Clean);
        assert_eq!(go_on, [true, true]);
    }

    #[test]
    fn an_infected_member_makes_the_object_infected_names_the_member_and_stops_the_walk() {
        let (verdict, go_on) = folded(
            vec![("o.zip!/a", unscannable()), ("o.zip!/b.exe", infected())],
            Err(Halt::BySink),
        );
        assert_eq!(verdict.findings()[0].location.as_deref(), Some("o.zip!/b.exe"));
        assert_eq!(go_on, [true, false]);
        assert!(verdict.to_string().contains("Eicar in o.zip!/b.exe"), "{verdict}");
    }

    #[test]
    fn an_unscannable_member_keeps_the_object_out_and_the_walk_goes_on() {
        let (verdict, go_on) = folded(
            vec![("o.zip!/s", unscannable()), ("o.zip!/b", Verdict::Clean)],
            walked(2),
        );
        let Verdict::Unscannable { reason, detail } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(reason, UnscannableReason::Encrypted);
        assert!(detail.starts_with("o.zip!/s: "), "{detail}");
        assert_eq!(go_on, [true, true]);
    }

    #[test]
    fn blocked_outranks_unscannable_and_infected_outranks_both() {
        let blocked = Verdict::Blocked {
            reason: "an executable".into(),
        };
        let (verdict, _) = folded(vec![("a", unscannable()), ("b", blocked.clone())], walked(2));
        assert!(matches!(verdict, Verdict::Blocked { .. }), "{verdict:?}");
        let (verdict, _) = folded(vec![("a", blocked), ("b", infected())], Err(Halt::BySink));
        assert!(matches!(verdict, Verdict::Infected { .. }), "{verdict:?}");
    }

    #[test]
    fn a_member_error_is_the_object_error_and_stops() {
        let (verdict, go_on) = folded(vec![("a", Verdict::error("clamd down"))], Err(Halt::BySink));
        assert!(matches!(verdict, Verdict::Error { .. }), "{verdict:?}");
        assert_eq!(go_on, [false]);
    }

    #[test]
    fn a_walk_that_stopped_is_never_clean() {
        let stop = Halt::Stop {
            reason: UnscannableReason::Malformed,
            detail: "o.tar.gz: unexpected end".into(),
        };
        let (verdict, _) = folded(vec![("a", Verdict::Clean)], Err(stop));
        assert!(
            matches!(
                verdict,
                Verdict::Unscannable {
                    reason: UnscannableReason::Malformed,
                    ..
                }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_container_with_no_member_is_not_clean() {
        let (verdict, _) = folded(Vec::new(), walked(0));
        assert!(
            matches!(
                verdict,
                Verdict::Unscannable {
                    reason: UnscannableReason::Malformed,
                    ..
                }
            ),
            "{verdict:?}"
        );
    }
}
