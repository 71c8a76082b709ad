//! What every entry of bucketscan runs on — the SQS agent
//! (`bucketscan-agent`), the HTTP API (`bucketscan-serve`), sweeps and
//! releases: the agent a config describes (its scanner on S3, pipelines,
//! clients, signatures, allow-list), one object event start to finish, and
//! the services around it. The SQS loop and the API each build on this
//! crate, and neither on the other.
//!
//! - [`config`]: the config file, composed from every crate's sections.
//! - [`events`]: S3 event notifications as they arrive on the queue (native,
//!   through SNS, from EventBridge), keys decoded once.
//! - [`aws`]: SDK clients from the standard environment (`AWS_ENDPOINT_URL`, credentials).
//! - [`s3_store`]: the scan path's store on S3, pinned to the scanned bytes.
//! - [`notify`]: results to SNS and EventBridge.
//! - [`results`]: every result recorded in a DynamoDB table, and read back.
//! - [`allow_list`]: the allow-list object, reloaded and appended to.
//! - [`signatures`]: ClamAV databases synced from S3, loaded, proven and kept fresh.
//! - [`agent`]: the agent a config describes — its scanner, pipelines,
//!   clients and signatures — and one object event, start to finish.
//! - [`sweep`]: `bucketscan scan` over existing objects.
//! - [`fleet_sweep`]: `bucketscan scan --enqueue`: a sweep as queue items for the fleet.
//! - [`inventory`]: S3 Inventory reports (CSV, Parquet) as a sweep's listing.
//! - [`retro_scan`]: clean results rescanned when a new signature database arrives.
//! - [`protect`]: the bucket notification to the agent's queue.
//! - [`quarantine`]: what the quarantine holds, and `release` of a false positive.
//! - [`live`]: the pipelines objects are scanned with now, swapped whole.
//! - [`reload`]: config and plugin changes swapped in without dropping work.
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` over HTTP.
//! - [`http`]: the one HTTP server skeleton (axum; header timeout,
//!   connection cap, drain) the health endpoints and the API run on.
//! - [`metrics`]: per-object counters, as Prometheus text or CloudWatch EMF lines.

pub mod agent;
pub mod allow_list;
pub mod aws;
pub mod config;
mod error;
pub mod events;
pub mod fleet_sweep;
pub mod health;
pub mod http;
pub mod inventory;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod organization;
pub mod protect;
pub mod quarantine;
pub mod reload;
pub mod results;
pub mod retro_scan;
pub mod s3_store;
pub mod signatures;
pub mod sweep;
pub mod yara_rules;

pub use error::StartError;
