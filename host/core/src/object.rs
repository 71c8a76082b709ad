//! The object under scan: its metadata and its bytes, fetched once and
//! shared by every stage of a pipeline run.

use serde::Serialize;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Metadata of one object version, fixed for the whole pipeline run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    /// The version scanned; `None` on an unversioned bucket (S3's `null`
    /// version counts as none: it can be overwritten in place).
    pub version_id: Option<String>,
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// SHA-256 (hex) of the bytes the agent read; `None` before they are
    /// read, and for objects never downloaded (over the size limit).
    pub sha256: Option<String>,
    /// SHA-256 (hex) of an object over the size limit, computed while its
    /// members were walked: copies are checked against it. Seals leave it
    /// out: they bind such an object by version or ETag, the only identity
    /// a later open (which reads no byte of it) can check.
    #[serde(skip)]
    pub walked_sha256: Option<String>,
    /// Headers a copy must carry over when it replaces the metadata.
    #[serde(skip)]
    pub headers: ObjectHeaders,
    /// Set on a member of a container walked member by member: where it
    /// lies (its `key` is then its location, `KEY!/NAME…`).
    #[serde(skip)]
    pub member: Option<MemberOf>,
}

/// Where a member of a walked container lies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberOf {
    /// The key of the object walked.
    pub container_key: String,
    /// The member's names inside it, outermost first.
    pub path: Vec<String>,
}

/// HTTP headers of an object that S3 stores with it, besides its type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
}

impl ObjectInfo {
    /// What a seal on this object is bound to.
    pub fn seal_subject(&self) -> crate::seal::SealSubject<'_> {
        crate::seal::SealSubject {
            bucket: &self.bucket,
            key: &self.key,
            etag: self.etag.as_deref().unwrap_or_default(),
            version_id: self.version_id.as_deref(),
            sha256: self.sha256.as_deref(),
        }
    }

    /// `s3://bucket/key` with `?versionId=` when versioned, for messages
    /// (control characters in the key are escaped: keys are the
    /// uploader's).
    pub fn url(&self) -> String {
        let key = printable(&self.key);
        match &self.version_id {
            Some(version) => format!("s3://{}/{key}?versionId={version}", self.bucket),
            None => format!("s3://{}/{key}", self.bucket),
        }
    }

    /// Whether the scanned bytes are pinned by a version ID: requests then
    /// name that version and cannot touch a newer upload. Without one
    /// (unversioned or suspended buckets) the ETag is all that tells the
    /// scanned bytes from a later overwrite.
    pub fn is_versioned(&self) -> bool {
        self.version_id.is_some()
    }
}

/// The object under scan: metadata and bytes, shared read-only by every
/// stage (the `object` resource of the contract).
///
/// `body` holds what a client receives: with a `Content-Encoding`, the
/// decoded bytes (`decoded` says so); `info` describes the stored object
/// (its size, ETag and SHA-256 are those of the stored bytes).
#[derive(Debug, Clone)]
pub struct ScanObject {
    pub info: Arc<ObjectInfo>,
    pub body: ObjectBody,
    /// Set when the stored bytes were decoded for the scan.
    pub decoded: Option<Decoded>,
    /// The container and compression formats the host found in `body`.
    pub survey: Arc<crate::formats::Survey>,
}

impl ScanObject {
    /// The stored bytes themselves, nothing decoded or surveyed yet.
    pub fn new(info: Arc<ObjectInfo>, body: ObjectBody) -> Self {
        Self {
            info,
            body,
            decoded: None,
            survey: Arc::default(),
        }
    }

    /// The size of what the stages read: the decoded size when the host
    /// decoded the bytes, else the object's.
    pub fn size(&self) -> u64 {
        self.decoded.as_ref().map_or(self.info.size, |decoded| decoded.bytes)
    }
}

/// What the host decoded before the scan: the object's `Content-Encoding`,
/// undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decoded {
    /// The codings, in the order the header lists them (applied first to
    /// last, undone last to first).
    pub content_encoding: Vec<String>,
    /// The size of the decoded bytes.
    pub bytes: u64,
}

/// The bytes of the object: held in memory when small, spooled to a local
/// file when large, so ranged reads never load more than asked for.
#[derive(Debug, Clone)]
pub enum ObjectBody {
    Memory(Arc<[u8]>),
    File(Arc<SpooledFile>),
    /// Not downloaded (over the pipeline's size limit): reads fail.
    NotFetched,
}

/// A local file holding an object's bytes. Removed on drop when it was a
/// temporary spool file.
pub struct SpooledFile {
    path: PathBuf,
    file: std::fs::File,
    remove_on_drop: bool,
    /// Held as long as the file exists (e.g. its share of a spool budget).
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for SpooledFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpooledFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SpooledFile {
    /// Opens an existing file (kept on drop).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(path)?,
            path: path.to_owned(),
            remove_on_drop: false,
            _guard: None,
        })
    }

    /// Adopts a temporary file that is removed when the body is dropped.
    pub fn temporary(path: PathBuf) -> io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(&path)?,
            path,
            remove_on_drop: true,
            _guard: None,
        })
    }

    /// Keeps `guard` alive as long as the file (released after removal).
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpooledFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub use crate::text::printable;

/// SHA-256 of `bytes`, as hex: the identity of scanned bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

impl ObjectBody {
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::Memory(bytes.into())
    }

    pub fn len(&self) -> io::Result<u64> {
        match self {
            Self::Memory(bytes) => Ok(bytes.len() as u64),
            Self::File(file) => Ok(file.file.metadata()?.len()),
            Self::NotFetched => Err(not_fetched()),
        }
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `len` bytes at `offset`; fewer at the end, none past it.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Self::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(len).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Self::File(spooled) => {
                let mut buf = vec![0; len];
                let mut filled = 0;
                while filled < len {
                    let n = spooled.file.read_at(&mut buf[filled..], offset + filled as u64)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                Ok(buf)
            }
            Self::NotFetched => Err(not_fetched()),
        }
    }
}

impl ObjectBody {
    /// A reader over the bytes, from the start (seekable).
    pub fn reader(&self) -> BodyReader {
        BodyReader {
            body: self.clone(),
            position: 0,
        }
    }
}

/// Reads an [`ObjectBody`] as a stream (`Read` + `Seek`), for decoders and
/// container walkers.
#[derive(Debug, Clone)]
pub struct BodyReader {
    body: ObjectBody,
    position: u64,
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.body.read_at(self.position, buf.len().min(1 << 20))?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.position += chunk.len() as u64;
        Ok(chunk.len())
    }
}

impl io::Seek for BodyReader {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let len = self.body.len()?;
        let target = match to {
            io::SeekFrom::Start(offset) => Some(offset),
            io::SeekFrom::End(delta) => len.checked_add_signed(delta),
            io::SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

fn not_fetched() -> io::Error {
    io::Error::other("the object was not downloaded (it is over the pipeline's size limit)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_control_characters_are_escaped_in_messages() {
        let info = ObjectInfo {
            bucket: "b".into(),
            key: "a\nlevel=ERROR\u{1b}[31m".into(),
            ..ObjectInfo::default()
        };
        assert_eq!(info.url(), "s3://b/a\\nlevel=ERROR\\u{1b}[31m");
        assert_eq!(printable("plain key.txt"), "plain key.txt");
    }

    #[test]
    fn ranged_reads_stop_at_the_end() {
        let body = ObjectBody::from_bytes(b"0123456789".to_vec());
        assert_eq!(body.read_at(0, 4).unwrap(), b"0123");
        assert_eq!(body.read_at(8, 4).unwrap(), b"89");
        assert!(body.read_at(10, 4).unwrap().is_empty());
        assert!(body.read_at(u64::MAX, 4).unwrap().is_empty());
    }

    #[test]
    fn file_bodies_read_the_same_as_memory() {
        let dir = std::env::temp_dir().join(format!("bucketscan-object-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let body = ObjectBody::File(Arc::new(SpooledFile::temporary(dir.clone()).unwrap()));
        assert_eq!(body.read_at(3, 100).unwrap(), b"3456789");
        assert_eq!(body.len().unwrap(), 10);
        drop(body);
        assert!(!dir.exists(), "temporary spool file is removed on drop");
    }
}
