//! The one scan path: every object — from an agent's event, a `bucketscan
//! scan` sweep or a `bucketscan plugin run --config` dry run — goes through
//! [`Scanner::scan`], whose phases and rules are `bucketscan_core::phases`.
//! What differs between those callers is only the [`Store`] (S3, or a local
//! file that writes nothing) and the [`Publisher`] (SNS, or a line in the
//! dry run's report): a dry run shows exactly what the agent would do.
//!
//! - `path`: the [`Scanner`] and its phases, in order.
//! - [`store`]: the port to where objects live.
//! - [`stages`]: the port to the pipeline's stages (the wasm runner).
//! - [`actions`]: one object's storage actions (result tags on copies,
//!   deferred deletes, the agent's keys kept from plugins).
//! - [`local`]: a local file as a dry-run store.
//! - [`spool`]: where bytes land while they are scanned (memory or a
//!   reserved temp file), hashed as they arrive.
//! - [`content`]: what a client receives: the `Content-Encoding` undone,
//!   the containers inside surveyed.
//! - `members`: objects too large for the engine whole that are
//!   containers, scanned member by member (read by `ranged` GETs).
//! - `hashes`: objects too large for the engine that are not walked,
//!   checked against the whole-file hash signatures ([`HashSource`]).
//! - [`ScanSlot`]: what bounds the objects read and inspected at once,
//!   given back once an object is contained.
//! - `take_back`: result tags off bytes they are not about.
//! - [`testing`]: in-memory stand-ins for the ports, for tests of the
//!   path's branches without wasm, clamd or AWS (always built: a cargo
//!   feature would split the workspace's builds in two).

pub mod actions;
pub mod content;
mod hashes;
mod inspect_only;
pub mod local;
mod members;
mod path;
mod ranged;
mod slot;
pub mod spool;
pub mod stages;
pub mod store;
mod take_back;
pub mod testing;

use async_trait::async_trait;
use bucketscan_core::config::LargeObjects;
use bucketscan_core::formats::Format;
use bucketscan_core::report::ScanReport;
use bucketscan_engine::{LoadedPipelines, PipelineStage};
use bucketscan_unpack::members::WalkLimits;
use std::sync::Arc;

pub use hashes::HashSource;
pub use path::Scanner;
pub use slot::{ScanSlot, TAILS_PER_SLOT};
pub use stages::{Stages, WasmStages};
pub use store::{FetchError, Opened, PendingBody, Store, Target};

/// Which pipeline scans an object, and how large it may be: a config's
/// loaded pipelines, or the one stage of `bucketscan plugin run PLUGIN`.
pub trait Routing: Send + Sync {
    /// The pipeline for `bucket`/`key` and where it applies (for logs).
    fn route(&self, bucket: &str, key: &str) -> Option<(String, Arc<[PipelineStage]>)>;
    /// The largest object `bucket`'s pipelines scan.
    fn max_object_bytes(&self, bucket: &str) -> u64;
    /// Container formats `bucket` lets an engine call clean unopened.
    fn let_through(&self, _bucket: &str) -> Vec<Format> {
        Vec::new()
    }
    /// How `bucket`'s objects over the size limit are walked member by
    /// member; `None`: they are not.
    fn walk_limits(&self, bucket: &str) -> Option<WalkLimits> {
        walk_limits(&LargeObjects::default(), self.max_object_bytes(bucket))
    }
    /// Whether `bucket` lets an object over the size limit that is not
    /// walked be clean on the whole-file hash signatures alone.
    fn hashes_suffice(&self, _bucket: &str) -> bool {
        false
    }
}

/// The walk a bucket's `large-objects` settings allow, members up to
/// `member_bytes` handed to the engine whole.
fn walk_limits(large: &LargeObjects, member_bytes: u64) -> Option<WalkLimits> {
    large.walk.then(|| WalkLimits {
        max_depth: large.max_depth,
        max_members: large.max_members,
        max_expanded: large.max_expanded_bytes,
        member_bytes,
        ..WalkLimits::default()
    })
}

impl Routing for LoadedPipelines {
    fn route(&self, bucket: &str, key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        self.pipeline_for(bucket, key)
    }

    fn max_object_bytes(&self, bucket: &str) -> u64 {
        self.config.max_object_bytes(bucket)
    }

    fn let_through(&self, bucket: &str) -> Vec<Format> {
        self.config.let_through(bucket).to_vec()
    }

    fn walk_limits(&self, bucket: &str) -> Option<WalkLimits> {
        walk_limits(&self.config.large_objects(bucket), self.max_object_bytes(bucket))
    }

    fn hashes_suffice(&self, bucket: &str) -> bool {
        self.config.large_objects(bucket).hashes_suffice
    }
}

/// One pipeline for every object, up to a size.
pub struct OnePipeline {
    pub stages: Arc<[PipelineStage]>,
    pub max_object_bytes: u64,
}

impl Routing for OnePipeline {
    fn route(&self, _bucket: &str, _key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        Some(("the given plugin".into(), self.stages.clone()))
    }

    fn max_object_bytes(&self, _bucket: &str) -> u64 {
        self.max_object_bytes
    }
}

/// Every question about one bucket answered as for another bucket and key:
/// a retro-scan of a promoted copy runs the pipeline of the upload it
/// was copied from (the production bucket usually has none).
pub struct RoutedAs<'a> {
    pub inner: &'a dyn Routing,
    pub bucket: &'a str,
    pub key: &'a str,
}

impl Routing for RoutedAs<'_> {
    fn route(&self, _bucket: &str, _key: &str) -> Option<(String, Arc<[PipelineStage]>)> {
        let (scope, stages) = self.inner.route(self.bucket, self.key)?;
        Some((format!("{scope} (a retro-scan of its copy)"), stages))
    }

    fn max_object_bytes(&self, _bucket: &str) -> u64 {
        self.inner.max_object_bytes(self.bucket)
    }

    fn let_through(&self, _bucket: &str) -> Vec<Format> {
        self.inner.let_through(self.bucket)
    }

    fn walk_limits(&self, _bucket: &str) -> Option<WalkLimits> {
        self.inner.walk_limits(self.bucket)
    }

    fn hashes_suffice(&self, _bucket: &str) -> bool {
        self.inner.hashes_suffice(self.bucket)
    }
}

/// Where results are published (SNS for the agent).
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `report` now: its caller waits (it holds a scan slot, or
    /// answers a request). Returns a line saying where, for the report.
    async fn publish(&self, report: &ScanReport) -> Result<String, PublishError>;

    /// Publishes `report` of an object that gave its scan slot back: a
    /// destination that writes in batches may hold it for one.
    async fn publish_batched(&self, report: &ScanReport) -> Result<String, PublishError> {
        self.publish(report).await
    }

    /// [`Publisher::publish_batched`] when `batched`, else
    /// [`Publisher::publish`].
    async fn publish_as(&self, report: &ScanReport, batched: bool) -> Result<String, PublishError> {
        match batched {
            true => self.publish_batched(report).await,
            false => self.publish(report).await,
        }
    }
}

/// A result that could not be published: where to, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing to {destination}: {detail}")]
pub struct PublishError {
    /// The topic (or other destination) it was meant for.
    pub destination: String,
    pub detail: String,
}

/// Today in RFC 3339 UTC, for the date tag.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
