//! An object read by ranges, as `Read + Seek`, for walks on a blocking
//! thread: how a container too large to spool is read where it lies (a
//! zip's directory at its end, then each member where it starts; a tar.gz
//! front to back). A read after a seek fetches a small part, so a zip's
//! headers cost little; reads that run on grow to 8 MiB parts with several
//! in flight. Every part is pinned to the scanned version or ETag, and
//! memory stays at a few parts whatever the object's size.

use crate::hashes::StreamHash;
use crate::store::{FetchError, Store};
use bucketscan_core::hashes::{HashKind, HashMatch, HashSignatures};
use bucketscan_core::object::ObjectInfo;
use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The first part after a seek.
const FIRST_PART: u64 = 64 << 10;
/// The largest part.
const PART: u64 = 8 << 20;
/// Parts requested ahead of the reader while it reads on.
const IN_FLIGHT: usize = 4;

/// The store error that stopped a reader, for whoever reads its result:
/// the walk sees only an I/O error, and must not take a failed request for
/// a malformed container.
pub(crate) type Failure = Arc<Mutex<Option<FetchError>>>;

/// Sets a reader's cancel flag when dropped.
pub(crate) struct StopOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct RangedReader {
    store: Arc<dyn Store>,
    object: Arc<ObjectInfo>,
    runtime: Handle,
    position: u64,
    current: Option<Part>,
    ahead: VecDeque<Pending>,
    /// Parts read one after another since the last seek.
    run: u32,
    failure: Failure,
    /// Digests of the object's bytes from its start, as far as they were
    /// read in order (a tar.gz: all of it; a zip: up to its directory):
    /// SHA-256 always, MD5 and SHA-1 when a signature for its size needs
    /// them.
    hasher: StreamHash,
    hashed: u64,
    /// Set when the scan no longer needs the bytes: reads fail from then
    /// on, so a walk draining a large member stops at once.
    cancelled: Arc<AtomicBool>,
    /// Ranged GETs made.
    pub(crate) requests: Arc<std::sync::atomic::AtomicU64>,
}

struct Part {
    start: u64,
    bytes: Vec<u8>,
}

impl Part {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

struct Pending {
    start: u64,
    len: u64,
    task: JoinHandle<Result<Vec<u8>, FetchError>>,
}

impl RangedReader {
    /// A reader of `object` whose in-order digests are SHA-256 and the
    /// `kinds` some signature for its size needs.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        object: Arc<ObjectInfo>,
        runtime: Handle,
        failure: Failure,
        mut kinds: Vec<HashKind>,
    ) -> Self {
        if !kinds.contains(&HashKind::Sha256) {
            kinds.push(HashKind::Sha256);
        }
        Self {
            store,
            object,
            runtime,
            position: 0,
            current: None,
            ahead: VecDeque::new(),
            run: 0,
            failure,
            hasher: StreamHash::new(kinds),
            hashed: 0,
            cancelled: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// The flag that stops this reader.
    pub(crate) fn canceller(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    fn size(&self) -> u64 {
        self.object.size
    }

    /// Makes `current` the part holding `position`.
    fn load(&mut self) -> io::Result<()> {
        let sequential = self.current.as_ref().is_some_and(|part| part.end() == self.position);
        // The part requested ahead that holds the position; the ones
        // before it (or all, after a seek elsewhere) are of no use.
        let mut found = None;
        while let Some(pending) = self.ahead.pop_front() {
            if pending.start <= self.position && self.position < pending.start + pending.len {
                found = Some(pending);
                break;
            }
            pending.task.abort();
        }
        let (start, bytes) = match found {
            Some(pending) => {
                self.run += 1;
                (pending.start, self.wait(pending.task)?)
            }
            None => {
                self.run = if sequential { self.run + 1 } else { 0 };
                let task = self.spawn(self.position, self.part_len(self.run));
                (self.position, self.wait(task)?)
            }
        };
        let part = Part { start, bytes };
        self.hash(&part);
        self.current = Some(part);
        if self.run > 0 {
            self.request_ahead();
        }
        Ok(())
    }

    /// Feeds the digest what `part` adds to the bytes hashed in order.
    fn hash(&mut self, part: &Part) {
        if part.start <= self.hashed && self.hashed < part.end() {
            self.hasher.update(&part.bytes[(self.hashed - part.start) as usize..]);
            self.hashed = part.end();
        }
    }

    /// The SHA-256 (hex) of the whole object and the whole-file signature
    /// it matches among `signatures` (by every digest asked for at
    /// [`RangedReader::new`]), reading what the walk left unread after
    /// the bytes hashed in order (a zip's directory) when that is at most
    /// `most` bytes; `None` when more is missing.
    pub(crate) fn digest(
        mut self,
        most: u64,
        signatures: Option<&HashSignatures>,
    ) -> io::Result<Option<(String, Option<HashMatch>)>> {
        let missing = self.size() - self.hashed.min(self.size());
        if missing > most {
            return Ok(None);
        }
        self.seek(SeekFrom::Start(self.hashed))?;
        io::copy(&mut self, &mut io::sink())?;
        if self.hashed < self.size() {
            return Ok(None);
        }
        let hasher = std::mem::replace(&mut self.hasher, StreamHash::new(Vec::new()));
        Ok(Some(hasher.finish(signatures)))
    }

    /// Keeps [`IN_FLIGHT`] parts requested after the current one.
    fn request_ahead(&mut self) {
        let mut next = self
            .ahead
            .back()
            .map(|pending| pending.start + pending.len)
            .or(self.current.as_ref().map(Part::end))
            .unwrap_or(self.position);
        while self.ahead.len() < IN_FLIGHT && next < self.size() {
            let len = self.part_len(self.run + 1 + self.ahead.len() as u32);
            let task = self.spawn(next, len);
            self.ahead.push_back(Pending { start: next, len, task });
            next += len;
        }
    }

    /// The size of the `run`th part read on since a seek: doubling from
    /// [`FIRST_PART`] to [`PART`].
    fn part_len(&self, run: u32) -> u64 {
        // (`checked_shl` checks the shift, not the overflow: past 48 parts
        // 64 KiB << run wraps to 0, a part of nothing.)
        if run >= PART.ilog2() - FIRST_PART.ilog2() {
            PART
        } else {
            FIRST_PART << run
        }
    }

    fn spawn(&self, start: u64, len: u64) -> JoinHandle<Result<Vec<u8>, FetchError>> {
        let store = self.store.clone();
        let object = self.object.clone();
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.runtime
            .spawn(async move { store.read_range(&object, start, len).await })
    }

    fn wait(&mut self, task: JoinHandle<Result<Vec<u8>, FetchError>>) -> io::Result<Vec<u8>> {
        let result = self
            .runtime
            .block_on(task)
            .unwrap_or_else(|err| Err(FetchError::Unavailable(format!("a ranged read: {err}"))));
        result.map_err(|err| {
            let text = err.to_string();
            self.failure.lock().expect("the failure slot").get_or_insert(err);
            io::Error::other(text)
        })
    }

    fn abort_ahead(&mut self) {
        for pending in self.ahead.drain(..) {
            pending.task.abort();
        }
    }
}

impl Read for RangedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other("the scan no longer needs the bytes"));
        }
        if buf.is_empty() || self.position >= self.size() {
            return Ok(0);
        }
        let covered = self
            .current
            .as_ref()
            .is_some_and(|part| part.start <= self.position && self.position < part.end());
        if !covered {
            self.load()?;
        }
        let part = self.current.as_ref().expect("a loaded part");
        let at = (self.position - part.start) as usize;
        if at >= part.bytes.len() {
            // The store returned less than the object's size says.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a ranged read came back short",
            ));
        }
        let n = buf.len().min(part.bytes.len() - at);
        buf[..n].copy_from_slice(&part.bytes[at..at + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for RangedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position =
            target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a seek before the object's start"))?;
        Ok(self.position)
    }
}

impl Drop for RangedReader {
    fn drop(&mut self) {
        self.abort_ahead();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Faults, MemoryStore};
    use std::sync::atomic::Ordering::Relaxed;

    fn object(store: &MemoryStore, bytes: &[u8]) -> Arc<ObjectInfo> {
        Arc::new(store.put("b", "k", bytes, &[]))
    }

    /// Runs `read` on a blocking thread over a reader of `bytes`.
    async fn with_reader<T: Send + 'static>(
        bytes: Vec<u8>,
        faults: Faults,
        read: impl FnOnce(&mut RangedReader) -> T + Send + 'static,
    ) -> (T, u64, Option<FetchError>) {
        let store = MemoryStore::new();
        let info = object(&store, &bytes);
        store.set_faults(faults);
        let failure = Failure::default();
        let mut reader = RangedReader::new(store, info, Handle::current(), failure.clone(), Vec::new());
        let requests = reader.requests.clone();
        let out = tokio::task::spawn_blocking(move || read(&mut reader)).await.unwrap();
        let failed = failure.lock().unwrap().take();
        (out, requests.load(Relaxed), failed)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_front_to_back_yields_every_byte_in_growing_parts() {
        let bytes = pattern((20 << 20) + 123);
        let (read, requests, failed) = with_reader(bytes.clone(), Faults::default(), |reader| {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        })
        .await;
        assert!(read == bytes, "the bytes differ");
        assert!(failed.is_none());
        // 64 KiB doubling to 8 MiB: far fewer requests than 64 KiB parts.
        assert!(requests < 16, "{requests} requests");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_digest_covers_the_whole_object_even_after_seeks() {
        let bytes = pattern((3 << 20) + 7);
        let expected = bucketscan_core::object::sha256_hex(&bytes);
        let (digest, _, _) = with_reader(bytes, Faults::default(), |reader| {
            let mut tail = [0u8; 22];
            reader.seek(SeekFrom::End(-22)).unwrap();
            reader.read_exact(&mut tail).unwrap();
            reader.seek(SeekFrom::Start(0)).unwrap();
            let mut front = vec![0u8; 1 << 20];
            reader.read_exact(&mut front).unwrap();
            let reader = std::mem::replace(reader, dummy());
            reader.digest(4 << 20, None).unwrap()
        })
        .await;
        assert_eq!(digest.map(|(sha256, _)| sha256), Some(expected));
    }

    /// A reader of nothing, to take a reader out of a `&mut`.
    fn dummy() -> RangedReader {
        RangedReader::new(
            MemoryStore::new(),
            Arc::new(ObjectInfo::default()),
            Handle::current(),
            Failure::default(),
            Vec::new(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_grow_to_eight_mib_and_stay_there_however_long_the_read() {
        let reader = dummy();
        assert_eq!(reader.part_len(0), FIRST_PART);
        assert_eq!(reader.part_len(1), 2 * FIRST_PART);
        for run in [7, 8, 47, 48, 49, 64, 1000, u32::MAX] {
            assert_eq!(reader.part_len(run), PART, "run {run}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeks_read_where_they_land() {
        let bytes = pattern(3 << 20);
        let (read, _, _) = with_reader(bytes.clone(), Faults::default(), |reader| {
            let mut tail = [0u8; 10];
            reader.seek(SeekFrom::End(-10)).unwrap();
            reader.read_exact(&mut tail).unwrap();
            let mut middle = [0u8; 10];
            reader.seek(SeekFrom::Start(1 << 20)).unwrap();
            reader.read_exact(&mut middle).unwrap();
            let mut head = [0u8; 10];
            reader.seek(SeekFrom::Start(0)).unwrap();
            reader.read_exact(&mut head).unwrap();
            (tail, middle, head)
        })
        .await;
        assert_eq!(read.0, bytes[bytes.len() - 10..]);
        assert_eq!(read.1, bytes[1 << 20..(1 << 20) + 10]);
        assert_eq!(read.2, bytes[..10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_part_is_an_io_error_and_the_store_error_is_kept() {
        let faults = Faults {
            read_range_after: Some((2, FetchError::Unavailable("503 SlowDown".into()))),
            ..Faults::default()
        };
        let (read, _, failed) = with_reader(pattern(4 << 20), faults, |reader| {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all.len())
        })
        .await;
        assert!(read.is_err());
        assert_eq!(failed, Some(FetchError::Unavailable("503 SlowDown".into())));
    }
}
