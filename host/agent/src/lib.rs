//! The S3 agent: consumes S3 event notifications from SQS, fetches each
//! object once (in memory, or spooled to a temp file when large), runs its
//! bucket's pipeline, writes the result tags, runs the actions, publishes the
//! result, and only then deletes the message.
//!
//! - [`aws`]: SDK clients from the standard environment (`AWS_ENDPOINT_URL`, credentials).
//! - [`fetch`]: one object version, fetched once.
//! - [`s3_storage`]: the `storage` capability on S3, conditional on the scanned ETag.
//! - [`notify`]: results to SNS.
//! - [`signatures`]: ClamAV databases synced from S3, then RELOAD.
//! - [`worker`]: one object event, start to finish.
//! - [`sweep`]: `bucketscan scan` over existing objects.
//! - [`protect`]: the bucket notification to the agent's queue.
//! - [`agent`]: the receive loop, concurrency and visibility.
//! - [`reload`]: config and plugin changes swapped in without dropping work.
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` over HTTP.
//! - [`metrics`]: per-object counters, as Prometheus text or CloudWatch EMF lines.

pub mod agent;
pub mod aws;
pub mod fetch;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod protect;
pub mod reload;
pub mod s3_storage;
pub mod signatures;
pub mod sweep;
pub mod worker;
