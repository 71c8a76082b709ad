//! The hashes plan: an object over its pipeline's size limit that the
//! host does not walk (a video, a disk image) is still checked against the
//! whole-file hash signatures clamd loads (`bucketscan_core::hashes`). It
//! is read once, front to back, by ranged GETs, hashed with the digests
//! some signature for its size needs; a match is `infected`. When no
//! signature is for its size at all, no byte needs reading to know that
//! none matches.

use crate::path::Inspection;
use crate::ranged::{Failure, RangedReader, StopOnDrop};
use crate::store::FetchError;
use crate::{Routing, Scanner};
use bucketscan_core::hashes::{HashKind, HashMatch, HashSignatures};
use bucketscan_core::object::ObjectInfo;
use bucketscan_core::report::Coverage;
use bucketscan_core::{Finding, Verdict};
use std::io::Read;
use std::sync::Arc;

/// Where the scan path gets the hash signatures clamd runs now.
pub trait HashSource: Send + Sync {
    /// The signatures, or why there are none to trust now (not proven
    /// loaded, stale, a file the host cannot read).
    fn hash_signatures(&self) -> Result<Arc<HashSignatures>, String>;
}

/// A fixed set of signatures (tests, and callers that load them once).
impl HashSource for Arc<HashSignatures> {
    fn hash_signatures(&self) -> Result<Arc<HashSignatures>, String> {
        Ok(self.clone())
    }
}

/// One read of the whole object.
struct Hashed {
    sha256: String,
    found: Option<HashMatch>,
    /// Its first bytes, to tell what it is.
    head: Vec<u8>,
    requests: u64,
}

/// How much of an object's start tells its media type.
const HEAD_BYTES: usize = 8 << 10;

/// The media type of `head` when its magic bytes say audio, video or an
/// image: what `hashes-suffice` may call clean. Archives, documents,
/// executables and anything unrecognised are not.
fn media_type(head: &[u8]) -> Option<&'static str> {
    use infer::MatcherType::{Audio, Image, Video};
    let kind = infer::get(head)?;
    matches!(kind.matcher_type(), Audio | Image | Video).then(|| kind.mime_type())
}

impl Scanner {
    /// Applies the whole-file hash signatures to `inspection`'s object
    /// (over the size limit, not walked; `inspection` holds the verdict
    /// reached without its bytes). `Err` when it could not be read now.
    pub(crate) async fn apply_hashes(
        &self,
        pipelines: &dyn Routing,
        mut inspection: Inspection,
    ) -> Result<Inspection, FetchError> {
        let info = inspection.object.info.clone();
        let not_applied = |mut inspection: Inspection, why: String| {
            inspection
                .notes
                .push(format!("whole-file hash signatures not applied: {why}"));
            Ok(inspection)
        };
        if let Some(coding) = &info.headers.content_encoding {
            let why = format!("stored with Content-Encoding `{coding}`, a client receives other bytes");
            return not_applied(inspection, why);
        }
        let signatures = match self.hashes.as_ref().map(|source| source.hash_signatures()) {
            Some(Ok(signatures)) => signatures,
            Some(Err(why)) => return not_applied(inspection, why),
            None => return not_applied(inspection, "no signature database is known ([signatures])".into()),
        };
        if !signatures.covers(info.size) {
            let why = format!(
                "they were indexed for objects over {} bytes (the size limits when the signatures loaded)",
                signatures.floor()
            );
            return not_applied(inspection, why);
        }
        let suffice = pipelines.hashes_suffice(&info.bucket);
        inspection.coverage = Some(Coverage::Hashes);
        if signatures.kinds_for(info.size).is_empty() && !suffice {
            inspection.notes.push(format!(
                "no whole-file hash signature is for an object of {} bytes: none can match, nothing read",
                info.size
            ));
            return Ok(inspection);
        }
        let hashed = self.hash_whole(&info, signatures).await?;
        inspection.object.info = Arc::new(ObjectInfo {
            walked_sha256: Some(hashed.sha256),
            ..(*info).clone()
        });
        let read = format!("{} bytes read by {} ranged GETs", info.size, hashed.requests);
        match hashed.found {
            Some(found) => inspection.verdict = infected_by(found, &mut inspection.notes, Some(&read)),
            None if suffice => match media_type(&hashed.head) {
                Some(media) => {
                    inspection.notes.push(format!(
                        "clean on whole-file hash signatures alone (large-objects.hashes-suffice; its first bytes \
                         are {media}): hashed, not scanned ({read})"
                    ));
                    inspection.verdict = Verdict::Clean;
                }
                // A zip named `.mp4`, an executable padded past the limit:
                // what hashes cannot speak for stays unproven.
                None => inspection.notes.push(format!(
                    "no whole-file hash signature matched ({read}); large-objects.hashes-suffice applies to audio, \
                     video and images by their first bytes, and these bytes are none of those"
                )),
            },
            None => inspection
                .notes
                .push(format!("no whole-file hash signature matched ({read})")),
        }
        Ok(inspection)
    }

    /// Reads `info` front to back and looks its digests up.
    async fn hash_whole(&self, info: &Arc<ObjectInfo>, signatures: Arc<HashSignatures>) -> Result<Hashed, FetchError> {
        let failure = Failure::default();
        let size = info.size;
        // The reader takes every digest a signature for this size needs.
        let reader = RangedReader::new(
            self.store.clone(),
            info.clone(),
            tokio::runtime::Handle::current(),
            failure.clone(),
            signatures.kinds_for(size),
        );
        let requests = reader.requests.clone();
        // However this ends (the object's deadline dropping the scan
        // included), the reading stops.
        let _stop = StopOnDrop(reader.canceller());
        type Outcome = (String, Option<HashMatch>, Vec<u8>);
        let hashing = tokio::task::spawn_blocking(move || -> std::io::Result<Outcome> {
            let mut reader = reader;
            let mut buffer = vec![0u8; 1 << 20];
            let mut head = Vec::new();
            loop {
                let n = reader.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                let wanted = HEAD_BYTES.saturating_sub(head.len()).min(n);
                head.extend_from_slice(&buffer[..wanted]);
            }
            let (sha256, found) = reader
                .digest(0, Some(&signatures))?
                .ok_or_else(|| std::io::Error::other("the object ended before its size"))?;
            Ok((sha256, found, head))
        });
        let joined = hashing
            .await
            .map_err(|err| FetchError::Unavailable(format!("{}: hashing it: {err}", info.url())))?;
        if let Some(err) = failure.lock().expect("the failure slot").take() {
            return Err(err);
        }
        let (sha256, found, head) =
            joined.map_err(|err| FetchError::Unavailable(format!("{}: hashing it: {err}", info.url())))?;
        Ok(Hashed {
            sha256,
            found,
            head,
            requests: requests.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

/// What a whole-file hash signature's match makes the bytes: infected,
/// under clamd's name for the signature; a note says which digest of
/// which database file matched (and `how` the bytes were read).
pub(crate) fn infected_by(found: HashMatch, notes: &mut Vec<String>, how: Option<&str>) -> Verdict {
    let how = how.map(|how| format!(" ({how})")).unwrap_or_default();
    notes.push(format!(
        "its {} is that of a whole-file hash signature in {}{how}",
        found.kind.as_str(),
        found.file
    ));
    Verdict::Infected {
        findings: vec![Finding::new("clamav", found.name)],
    }
}

/// Hashes `body`, which its container says holds `size` bytes, with the
/// digests some signature for that size needs, and looks them up: a
/// member too large for the engine gets the same check as an object.
/// `Ok(None)` when none matches; an error when `body` fails or holds
/// another size.
pub(crate) fn match_stream(
    signatures: &HashSignatures,
    size: u64,
    body: &mut dyn Read,
    stop: &dyn Fn() -> bool,
) -> std::io::Result<Option<HashMatch>> {
    let mut hash = StreamHash::new(signatures.kinds_for(size));
    // One byte past the stated size tells a longer member without
    // decoding the rest of it.
    hash.read_all(&mut body.take(size.saturating_add(1)), stop)?;
    if hash.len != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it holds {} bytes; its container says {size}", hash.len),
        ));
    }
    Ok(hash.look_up(signatures))
}

/// The whole-file digests of a stream fed to it piece by piece, for a
/// member whose size is known only at its end.
pub(crate) struct StreamHash {
    kinds: Vec<HashKind>,
    digests: Digests,
    sha256: sha2::Sha256,
    len: u64,
}

impl StreamHash {
    /// Hashes with `kinds` (what some signature needs).
    pub(crate) fn new(kinds: Vec<HashKind>) -> Self {
        use sha2::Digest;
        Self {
            digests: Digests::for_kinds(&kinds),
            kinds,
            sha256: sha2::Sha256::new(),
            len: 0,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.digests.update(bytes);
        if self.kinds.contains(&HashKind::Sha256) {
            self.sha256.update(bytes);
        }
        self.len += bytes.len() as u64;
    }

    /// Feeds the rest of `body`; asks `stop` before each read, and fails
    /// when it says stop (nobody wants the answer any more).
    pub(crate) fn read_all(&mut self, body: &mut dyn Read, stop: &dyn Fn() -> bool) -> std::io::Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            if stop() {
                return Err(std::io::Error::other("stopped: nobody waits for the digests"));
            }
            let n = body.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            self.update(&buffer[..n]);
        }
    }

    /// Bytes hashed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The SHA-256 (hex) of the bytes, and the signature they match for
    /// their length among `signatures`, if any. Kinds other than SHA-256
    /// are hashed only when [`StreamHash::new`] was asked for them.
    pub(crate) fn finish(self, signatures: Option<&HashSignatures>) -> (String, Option<HashMatch>) {
        use sha2::Digest;
        let sha256 = self.sha256.finalize();
        let found = signatures.and_then(|signatures| self.digests.look_up(&sha256, &self.kinds, signatures, self.len));
        (hex::encode(sha256), found)
    }

    /// The signature the stream's bytes match, for its length.
    pub(crate) fn look_up(self, signatures: &HashSignatures) -> Option<HashMatch> {
        use sha2::Digest;
        let sha256 = self.sha256.finalize();
        self.digests.look_up(&sha256, &self.kinds, signatures, self.len)
    }
}

/// The digests other than SHA-256 (which the reader keeps) that some
/// signature needs.
struct Digests {
    md5: Option<md5::Md5>,
    sha1: Option<sha1::Sha1>,
}

impl Digests {
    fn for_kinds(kinds: &[HashKind]) -> Self {
        use sha2::Digest;
        Self {
            md5: kinds.contains(&HashKind::Md5).then(md5::Md5::new),
            sha1: kinds.contains(&HashKind::Sha1).then(sha1::Sha1::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        if let Some(md5) = &mut self.md5 {
            md5.update(bytes);
        }
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(bytes);
        }
    }

    /// The signature these digests (and `sha256`) match for `size`, if any.
    fn look_up(self, sha256: &[u8], kinds: &[HashKind], signatures: &HashSignatures, size: u64) -> Option<HashMatch> {
        let digests = self.finish(sha256, kinds);
        let digests: Vec<(HashKind, &[u8])> = digests.iter().map(|(kind, digest)| (*kind, &digest[..])).collect();
        signatures.lookup(&digests, size)
    }

    /// Each wanted kind with its digest.
    fn finish(self, sha256: &[u8], kinds: &[HashKind]) -> Vec<(HashKind, Vec<u8>)> {
        use sha2::Digest;
        let mut out = Vec::new();
        if let Some(md5) = self.md5 {
            out.push((HashKind::Md5, md5.finalize().to_vec()));
        }
        if let Some(sha1) = self.sha1 {
            out.push((HashKind::Sha1, sha1.finalize().to_vec()));
        }
        if kinds.contains(&HashKind::Sha256) {
            out.push((HashKind::Sha256, sha256.to_vec()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signatures(line: &str, file: &str) -> HashSignatures {
        let mut index = HashSignatures::new(10);
        index.add_file(file, false, line).unwrap();
        index
    }

    #[test]
    fn a_stream_hash_matches_a_sha256_only_signature_by_its_final_length() {
        use sha2::Digest;
        let bytes = vec![7u8; 3000];
        let line = format!("{}:3000:Only.Sha256\n", hex::encode(sha2::Sha256::digest(&bytes)));
        let index = signatures(&line, "local.hsb");
        assert_eq!(index.kinds_over(100), [HashKind::Sha256]);
        let mut hash = StreamHash::new(index.kinds_over(100));
        hash.update(&bytes[..1000]);
        hash.read_all(&mut &bytes[1000..], &|| false).unwrap();
        assert_eq!(hash.len(), 3000);
        assert_eq!(hash.look_up(&index).unwrap().name, "Only.Sha256.UNOFFICIAL");
        // One byte more is another file.
        let mut hash = StreamHash::new(index.kinds_over(100));
        hash.read_all(&mut &[bytes.as_slice(), b"x"].concat()[..], &|| false)
            .unwrap();
        assert_eq!(hash.look_up(&index), None);
    }

    #[test]
    fn hashing_stops_when_nobody_waits_and_a_member_of_another_size_is_malformed() {
        let index = signatures(&format!("{}:3000:Big\n", "0".repeat(32)), "local.hdb");
        let stopped = match_stream(&index, 3000, &mut &[0u8; 3000][..], &|| true).unwrap_err();
        assert_ne!(stopped.kind(), std::io::ErrorKind::InvalidData, "{stopped}");
        let longer = match_stream(&index, 3000, &mut &[0u8; 3001][..], &|| false).unwrap_err();
        assert_eq!(longer.kind(), std::io::ErrorKind::InvalidData, "{longer}");
        assert_eq!(
            match_stream(&index, 3000, &mut &[0u8; 3000][..], &|| false).unwrap(),
            None
        );
    }
}
