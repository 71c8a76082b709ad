//! Storage actions a stage may ask for, and how they can fail.
//!
//! The Wasm host turns `storage` imports into [`StorageAction`]s, checks
//! them against the stage's grants, and hands them to the object's
//! [`StageStorage`]: the scan path's per-object actions, which perform them
//! through its object store (`Store`: S3, a local file for dry runs, memory
//! in tests) or, in a dry run, only report them. One name per idea: a
//! *store* holds objects; *stage storage* is what a stage's actions reach.

use crate::object::ObjectInfo;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;

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
    /// Every bucket the action touches: a move deletes from the object's
    /// own bucket as well as writing to its destination.
    pub fn buckets<'a>(&'a self, object: &'a ObjectInfo) -> Vec<&'a str> {
        match self {
            Self::Copy { bucket, .. } => vec![bucket],
            Self::Move { bucket, .. } => vec![bucket, &object.bucket],
            Self::Delete | Self::Tag { .. } => vec![&object.bucket],
        }
    }

    /// Tags the plugin asked to write (its own, never the agent's result tags).
    pub fn plugin_tags(&self) -> &[(String, String)] {
        match self {
            Self::Copy { extra_tags, .. } | Self::Move { extra_tags, .. } => extra_tags,
            Self::Tag { tags } => tags,
            Self::Delete => &[],
        }
    }

    /// A one-line summary, e.g. `copy s3://a/k -> s3://b/k`.
    pub fn summary(&self, object: &ObjectInfo) -> String {
        let source = object.url();
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

/// Why a storage action failed. The variants are the ones a caller acts on
/// differently: stop (replaced, gone, refused) or try again later
/// (unavailable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum StorageError {
    /// The key now holds other bytes than the ones scanned; nothing was
    /// done to them (the newer upload is scanned through its own event).
    #[error("{0}")]
    Replaced(String),
    /// The object (or the scanned version) no longer exists.
    #[error("{0}")]
    Gone(String),
    /// Not allowed: a grant, the agent's own tag keys, an S3 limit.
    #[error("{0}")]
    Refused(String),
    /// Throttling, a server error or the network: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl StorageError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Failed(_))
    }
}

/// A boxed future, so stage storage can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Performs the storage actions of one object's stages (what the
/// `storage` capability hands its checked actions to).
pub trait StageStorage: Send + Sync {
    /// Performs `action` on the exact version of `object` that was scanned;
    /// returns a line saying what was done, for the report.
    fn perform<'a>(
        &'a self,
        object: &'a ObjectInfo,
        action: StorageAction,
    ) -> BoxFuture<'a, Result<String, StorageError>>;
}

/// Refuses every action: the stage storage of load checks (`describe`), where no
/// stage may touch storage.
#[derive(Debug, Default)]
pub struct NoStorage;

impl StageStorage for NoStorage {
    fn perform<'a>(
        &'a self,
        _object: &'a ObjectInfo,
        _action: StorageAction,
    ) -> BoxFuture<'a, Result<String, StorageError>> {
        Box::pin(async { Err(StorageError::Refused("no storage is available here".into())) })
    }
}
