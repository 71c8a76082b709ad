//! A local file posing as an S3 object, for dry runs (`bucketscan plugin
//! run`): the scan path reads it like any object, and every write the
//! path would make is reported instead of done.

use crate::store::{Body, Copied, CopyDest, Current, FetchError, Opened, PendingBody, Store, Target};
use async_trait::async_trait;
use bucketscan_core::object::{ObjectBody, ObjectHeaders, ObjectInfo, SpooledFile};
use bucketscan_core::storage::StorageError;
use std::path::PathBuf;
use std::sync::Arc;

/// One local file, and what it pretends to be.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// The tags it pretends to have (to see what the tag limit would do).
    pub tags: Vec<(String, String)>,
}

/// A dry-run store over one local file.
#[derive(Debug, Clone)]
pub struct LocalStore {
    file: LocalFile,
}

impl LocalStore {
    pub fn new(file: LocalFile) -> Self {
        Self { file }
    }
}

struct LocalBody(PathBuf);

#[async_trait]
impl PendingBody for LocalBody {
    async fn read(self: Box<Self>) -> Result<Body, FetchError> {
        let gone = |err: std::io::Error| FetchError::Gone(format!("{}: {err}", self.0.display()));
        let bytes = ObjectBody::File(Arc::new(SpooledFile::open(&self.0).map_err(gone)?));
        // Hashed through the handle the stages read: a file renamed over
        // meanwhile cannot pass its digest to other bytes.
        let sha256 = sha256_of(&bytes).map_err(gone)?;
        Ok(Body { bytes, sha256 })
    }
}

/// SHA-256 (hex) of a body, read in chunks.
fn sha256_of(body: &ObjectBody) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut reader = body.reader();
    let mut hasher = sha2::Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&chunk[..n]);
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn open(&self, target: &Target, limit: u64) -> Result<Opened, FetchError> {
        let size = std::fs::metadata(&self.file.path)
            .map_err(|err| FetchError::Gone(format!("{}: {err}", self.file.path.display())))?
            .len();
        let info = ObjectInfo {
            bucket: target.bucket.clone(),
            key: target.key.clone(),
            version_id: target.version_id.clone(),
            size,
            etag: target.etag.clone(),
            content_type: self.file.content_type.clone(),
            metadata: self.file.metadata.clone(),
            tags: self.file.tags.clone(),
            headers: ObjectHeaders {
                content_encoding: self.file.content_encoding.clone(),
                ..ObjectHeaders::default()
            },
            ..ObjectInfo::default()
        };
        if size > limit {
            return Ok(Opened::TooLarge(info));
        }
        Ok(Opened::Ready {
            info,
            body: Box::new(LocalBody(self.file.path.clone())),
        })
    }

    async fn read_range(&self, _object: &ObjectInfo, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        use std::os::unix::fs::FileExt;
        let gone = |err: std::io::Error| FetchError::Gone(format!("{}: {err}", self.file.path.display()));
        let file = std::fs::File::open(&self.file.path).map_err(gone)?;
        let size = file.metadata().map_err(gone)?.len();
        let mut bytes = vec![0u8; len.min(size.saturating_sub(offset)) as usize];
        file.read_exact_at(&mut bytes, offset).map_err(gone)?;
        Ok(bytes)
    }

    async fn put_tags(&self, _object: &ObjectInfo, _tags: &[(String, String)]) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    async fn current(&self, _bucket: &str, _key: &str) -> Result<Option<Current>, StorageError> {
        Ok(None)
    }

    async fn copy(&self, object: &ObjectInfo, _dest: &CopyDest) -> Result<Copied, StorageError> {
        Ok(Copied {
            etag: object.etag.clone(),
            version_id: None,
            sha256: object.sha256.clone(),
        })
    }

    async fn delete(&self, _object: &ObjectInfo) -> Result<(), StorageError> {
        Ok(())
    }

    fn dry_run(&self) -> bool {
        true
    }
}
