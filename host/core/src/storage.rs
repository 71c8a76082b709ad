//! Storage actions a stage may ask for, and the backend that performs them.
//!
//! The Wasm host turns `storage` imports into [`StorageAction`]s, checks them
//! against the stage's grants and hands them to a [`StorageBackend`]: S3 in
//! the agent, [`DryRunStorage`] in `bucketscan plugin run`.

use crate::object::ObjectInfo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// One storage action on the object under scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageAction {
    Copy {
        bucket: String,
        key: String,
        extra_tags: Vec<(String, String)>,
    },
    Move {
        bucket: String,
        key: String,
        extra_tags: Vec<(String, String)>,
    },
    Delete,
    Tag {
        tags: Vec<(String, String)>,
    },
}

impl StorageAction {
    /// The bucket the action writes to.
    pub fn target_bucket<'a>(&'a self, object: &'a ObjectInfo) -> &'a str {
        match self {
            Self::Copy { bucket, .. } | Self::Move { bucket, .. } => bucket,
            Self::Delete | Self::Tag { .. } => &object.bucket,
        }
    }

    /// A one-line description, e.g. `copy s3://a/k -> s3://b/k`.
    pub fn describe(&self, object: &ObjectInfo) -> String {
        let source = source_url(object);
        match self {
            Self::Copy { bucket, key, .. } => format!("copy {source} -> s3://{bucket}/{key}"),
            Self::Move { bucket, key, .. } => format!("move {source} -> s3://{bucket}/{key}"),
            Self::Delete => format!("delete {source}"),
            Self::Tag { tags } => {
                let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("tag {source} {}", tags.join(","))
            }
        }
    }
}

fn source_url(object: &ObjectInfo) -> String {
    match &object.version_id {
        Some(version) => format!("s3://{}/{}?versionId={version}", object.bucket, object.key),
        None => format!("s3://{}/{}", object.bucket, object.key),
    }
}

/// A boxed future, so backends can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Performs storage actions for the host.
pub trait StorageBackend: Send + Sync {
    /// Performs `action` on the exact version of `object` that was scanned.
    /// The error is a message for the plugin and the report.
    fn perform<'a>(&'a self, object: &'a ObjectInfo, action: StorageAction) -> BoxFuture<'a, Result<(), String>>;
}

/// Records what would be done instead of doing it: `bucketscan plugin run`
/// reports the actions a pipeline asked for without touching any bucket.
#[derive(Debug, Default)]
pub struct DryRunStorage {
    performed: Mutex<Vec<String>>,
}

impl DryRunStorage {
    /// Descriptions of every action asked for so far.
    pub fn performed(&self) -> Vec<String> {
        self.performed.lock().unwrap().clone()
    }
}

impl StorageBackend for DryRunStorage {
    fn perform<'a>(&'a self, object: &'a ObjectInfo, action: StorageAction) -> BoxFuture<'a, Result<(), String>> {
        let line = format!("would {}", action.describe(object));
        Box::pin(async move {
            self.performed.lock().unwrap().push(line);
            Ok(())
        })
    }
}
