//! What the quarantine holds, and giving back a false positive.
//!
//! - [`list`]: the objects in the quarantine buckets, with the results
//!   their tags record.
//! - [`release`]: a quarantined object's exact bytes back where they came
//!   from (or elsewhere), tagged `allowed`, allow-listed, announced.

pub mod list;
pub mod release;

use crate::config::Config;
use bucketscan_core::ResultName;
use std::collections::BTreeSet;

/// The buckets a config quarantines into: every bucket a stage that runs
/// only on verdicts that keep objects out may write to, other than the
/// bucket it scans.
pub fn quarantine_buckets(config: &Config) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (bucket, bucket_config) in &config.buckets {
        let stages = bucket_config
            .stages
            .iter()
            .chain(bucket_config.prefixes.iter().flat_map(|prefix| prefix.stages.iter()));
        for stage in stages {
            let on = stage.on.get_ref();
            if on.is_empty() || on.contains(&ResultName::Clean) {
                continue;
            }
            for target in &stage.grants.get_ref().storage {
                if target != bucket {
                    found.insert(target.clone());
                }
            }
        }
    }
    found
}

/// Where a quarantined object came from: by the quarantine's key
/// convention (`SOURCE-BUCKET/KEY`), or for a key shortened to S3's limit,
/// by its metadata when the key proves it. Only declared buckets count.
pub(crate) fn origin(
    agent: &crate::agent::Agent,
    key: &str,
    metadata: &[(String, String)],
) -> Option<(String, String)> {
    let (bucket, rest) = bucketscan_scan::actions::shortened_source(key, metadata).or_else(|| {
        let (bucket, rest) = key.split_once('/')?;
        Some((bucket.to_owned(), rest.to_owned()))
    })?;
    (agent.started_with.buckets.contains_key(&bucket) && !rest.is_empty()).then_some((bucket, rest))
}
