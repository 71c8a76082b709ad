//! The port to where objects live. The agent and sweeps implement it on S3
//! (`bucketscan-agent`); dry runs on a local file ([`crate::local`]). The
//! scan path decides *what* to do; a store only knows *how*, and keeps
//! every request pinned to the scanned bytes.

use async_trait::async_trait;
use bucketscan_core::Verdict;
use bucketscan_core::object::{ObjectBody, ObjectInfo};
use bucketscan_core::storage::StorageError;

/// The object an event (or a listing, or a request) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub key: String,
    /// Scan exactly this version (versioned buckets).
    pub version_id: Option<String>,
    /// The ETag the event reported: on an unversioned bucket, a key now
    /// holding other bytes is a newer upload with an event of its own.
    pub etag: Option<String>,
    /// The size the event or listing reported: checked before any request.
    pub size: Option<u64>,
    /// Scan even when the object's result tags say an agent scanned or
    /// wrote exactly these bytes (`bucketscan scan --rescan`).
    pub rescan: bool,
    /// Skip objects an agent sealed a result on, for exactly these bytes,
    /// with this engine and signature version (a sweep's "already current").
    pub skip_if_scanned_with: Option<String>,
    /// Run actions only for verdicts that keep the object out. For an
    /// on-demand scan of a version that is not the current one: promoting
    /// it would roll the current object back to older bytes.
    pub contain_only: bool,
    /// A retro-scan (signatures changed since this object was found
    /// clean): routed through its origin's pipeline, contained if it must
    /// be, never promoted again; the report (and the alert) carries it.
    pub retro: Option<bucketscan_core::report::RetroScan>,
    /// The sweep that queued this object, when one did: recorded with
    /// the result, so the sweep's progress can be counted.
    pub sweep: Option<String>,
}

impl Target {
    /// The object under `bucket`/`key`, with what an event says of it.
    pub fn new(bucket: &str, key: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: None,
            etag: None,
            size: None,
            rescan: false,
            skip_if_scanned_with: None,
            contain_only: false,
            retro: None,
            sweep: None,
        }
    }

    /// Whatever the key holds now (after it was overwritten).
    pub fn current(&self) -> Self {
        Self {
            version_id: None,
            etag: None,
            size: None,
            ..self.clone()
        }
    }
}

impl Target {
    /// For messages, control characters escaped.
    pub fn url(&self) -> String {
        let key = bucketscan_core::object::printable(&self.key);
        match &self.version_id {
            Some(version) => format!("s3://{}/{key}?versionId={version}", self.bucket),
            None => format!("s3://{}/{key}", self.bucket),
        }
    }
}

/// An object opened for scanning: its metadata and tags are known, its
/// bytes not yet read.
pub enum Opened {
    Ready {
        info: ObjectInfo,
        body: Box<dyn PendingBody>,
    },
    /// Over the pipeline's size limit: decided without reading the bytes.
    TooLarge(ObjectInfo),
    /// The store will not hand the agent the bytes, for a reason that is
    /// the object's (a customer key, an archive tier, a key the agent may
    /// not use): `verdict` says which. Retrying would not help.
    Unreadable { info: ObjectInfo, verdict: Verdict },
}

/// The bytes of an opened object, read when the scan path decides to.
#[async_trait]
pub trait PendingBody: Send {
    async fn read(self: Box<Self>) -> Result<Body, FetchError>;
}

/// An object's bytes, read, and their SHA-256 (hex), computed on the way.
pub struct Body {
    pub bytes: ObjectBody,
    pub sha256: String,
}

/// Why an object could not be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The object (or the version) no longer exists.
    #[error("{0}")]
    Gone(String),
    /// The key holds other bytes than the event named: a newer upload.
    #[error("{0}")]
    Replaced(String),
    /// Not now: the spool budget is used up by other objects.
    #[error("{0}")]
    OverBudget(String),
    /// S3 or the network failed; worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl FetchError {
    /// The fetch error a failed storage request amounts to.
    pub fn from_storage(err: StorageError) -> Self {
        match err {
            StorageError::Gone(why) => Self::Gone(why),
            StorageError::Replaced(why) => Self::Replaced(why),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Where a copy goes and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDest {
    pub bucket: String,
    pub key: String,
    /// The copy's complete tag set (it replaces the source's).
    pub tags: Vec<(String, String)>,
    /// User metadata added to the source's (the source's is kept).
    pub extra_metadata: Vec<(String, String)>,
}

/// What a copy produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// SHA-256 (hex) of the bytes the copy holds, as the store computed it;
    /// `None` when it could not (a copy made in parts).
    pub sha256: Option<String>,
}

/// The tags of a key's current object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub etag: String,
    pub version_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Opens `target`: metadata and tags, and the bytes unless the object
    /// is over `limit` bytes (then nothing of it is downloaded).
    async fn open(&self, target: &Target, limit: u64) -> Result<Opened, FetchError>;

    /// Up to `len` bytes of exactly `object` from `offset` (fewer only at
    /// its end), pinned to its version or ETag like every other request:
    /// a key overwritten meanwhile is [`FetchError::Replaced`].
    async fn read_range(&self, object: &ObjectInfo, offset: u64, len: u64) -> Result<Vec<u8>, FetchError>;

    /// Replaces the tags of exactly `object`. On an unversioned object the
    /// request cannot be pinned, so the store looks again afterwards and
    /// returns `Some(etag)` when the key then held other bytes: the tags
    /// may have landed on them.
    async fn put_tags(&self, object: &ObjectInfo, tags: &[(String, String)]) -> Result<Option<String>, StorageError>;

    /// The current object under a key, with its tags; `None` when absent.
    async fn current(&self, bucket: &str, key: &str) -> Result<Option<Current>, StorageError>;

    /// Copies exactly `object` (conditional on its version or ETag).
    async fn copy(&self, object: &ObjectInfo, dest: &CopyDest) -> Result<Copied, StorageError>;

    /// Deletes exactly `object`: its version, or the key only while it
    /// still holds the scanned ETag.
    async fn delete(&self, object: &ObjectInfo) -> Result<(), StorageError>;

    /// True when nothing is really written (a dry run): report lines then
    /// say "would".
    fn dry_run(&self) -> bool {
        false
    }
}
