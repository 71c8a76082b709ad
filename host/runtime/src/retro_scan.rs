//! Retro-scans: malware uploaded today is often unknown to the signatures
//! until tomorrow. When an agent has proven a new signature database
//! loaded, the objects its buckets' results store recorded `clean` within
//! the window (`[buckets.NAME] retro-scan = { within-days = 7 }`) by an
//! older database are queued for a rescan against the new one — where
//! they live now (the promoted copy; the upload itself when nothing was
//! copied) — as sweep items on the sweep queue, so live uploads keep
//! their slots.
//!
//! Once per database version for the fleet: the walk of each bucket is a
//! claim in the results table ([`crate::results::claims`]); the agent
//! that takes it walks, the others find it held or done. A holder that
//! dies stops renewing its lease, and the next agent to look takes over.
//!
//! The rescan runs the pipeline of the upload's bucket on the copy,
//! contained where it lives if it must be, never promoted again
//! (`bucketscan_scan::Target::retro`); its report, and so the alert,
//! names the database that found what the earlier one missed.

use crate::events::retro_item_message;
use crate::fleet_sweep::{BATCH, send_messages};
use crate::results::claims::Claim;
use crate::results::search::Search;
use crate::results::{ResultsStore, StoredResult};
use bucketscan_core::config::RetroScanConfig;
use bucketscan_core::report::{CopyRef, RetroScan};
use bucketscan_core::tags::sanitize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a claim holds without renewal: a walk renews it every page.
const LEASE: Duration = Duration::from_secs(600);
/// What a walk reads of each result.
const PROJECTION: [&str; 7] = ["bucket", "key", "version_id", "etag", "recorded_at", "engine", "copies"];

/// The retro-scans of one agent's buckets.
pub struct RetroScans {
    results: Arc<ResultsStore>,
    sqs: aws_sdk_sqs::Client,
    /// Marks the items: only the fleet may queue a retro item.
    sealer: bucketscan_core::seal::Sealer,
    /// The sweep queue the items go to.
    queue_url: String,
    buckets: Vec<(String, RetroScanConfig)>,
    /// Databases every bucket's walk is done for (nothing left to claim).
    settled: Mutex<HashSet<String>>,
    /// A walk of this agent is under way.
    walking: AtomicBool,
}

/// What one bucket's walk did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walked {
    /// Clean results read within the window.
    pub results: u64,
    /// Results already from this database (nothing to rescan).
    pub current: u64,
    /// Items queued (each copy of each result, once).
    pub queued: u64,
    /// Their sweep (`bucketscan sweep status ID`).
    pub sweep_id: String,
    /// Results recorded before results named their copies: the upload
    /// itself is rescanned, a promoted copy of it is not.
    pub unknown_copies: u64,
}

impl RetroScans {
    /// The retro-scans `config` asks for; `None` when no bucket does (or
    /// the sections they need are missing: the config check refuses that).
    pub fn new(
        config: &crate::config::Config,
        results: Arc<ResultsStore>,
        sqs: aws_sdk_sqs::Client,
        sealer: bucketscan_core::seal::Sealer,
    ) -> Option<Self> {
        let buckets: Vec<(String, RetroScanConfig)> = config
            .buckets
            .iter()
            .filter_map(|(name, bucket)| Some((name.clone(), bucket.retro_scan.clone()?)))
            .collect();
        let queue_url = config.agent.sweep_queues.first()?.clone();
        (!buckets.is_empty()).then(|| Self {
            results,
            sqs,
            sealer,
            queue_url,
            buckets,
            settled: Mutex::default(),
            walking: AtomicBool::new(false),
        })
    }

    /// Called after each signature round that proved `database` (clamd's
    /// VERSION) loaded: starts the walks not done yet for it, in the
    /// background (the signature keeper does not wait).
    pub fn after_proven(self: &Arc<Self>, database: &str) {
        let database = sanitize(database);
        if self.settled.lock().unwrap().contains(&database) || self.walking.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if this.walk_all(&database).await {
                this.settled.lock().unwrap().insert(database);
            }
            this.walking.store(false, Ordering::SeqCst);
        });
    }

    /// Every bucket's walk for `database`; whether all of them are done.
    async fn walk_all(&self, database: &str) -> bool {
        let mut all_done = true;
        for (bucket, config) in &self.buckets {
            let id = format!("retro-scan#{bucket}#{database}");
            match self.results.claim(&id, LEASE).await {
                Ok(Claim::Taken) => {}
                Ok(Claim::Done { .. }) => continue,
                Ok(Claim::Held { by }) => {
                    tracing::debug!(bucket, database, "retro-scan walked by {by}");
                    all_done = false;
                    continue;
                }
                Err(err) => {
                    tracing::error!(
                        bucket,
                        database,
                        "retro-scan not claimed (tried again next round): {err}"
                    );
                    all_done = false;
                    continue;
                }
            }
            match self.walk(&id, bucket, config, database).await {
                Ok(walked) => {
                    if walked.unknown_copies > 0 {
                        tracing::warn!(
                            bucket,
                            results = walked.unknown_copies,
                            "retro-scan: these clean results predate recorded copies, so only their uploads are \
                             rescanned; sweep the buckets they were promoted to (scan --enqueue --rescan) to cover \
                             the copies"
                        );
                    }
                    tracing::info!(
                        bucket,
                        database,
                        results = walked.results,
                        current = walked.current,
                        queued = walked.queued,
                        sweep = %walked.sweep_id,
                        "retro-scan queued"
                    );
                    let summary = format!("{} queued from {} clean results", walked.queued, walked.results);
                    if let Err(err) = self.results.finish(&id, &summary).await {
                        tracing::error!(bucket, "retro-scan done but not marked so: {err}");
                    }
                }
                Err(err) => {
                    // The walk starts again (here or elsewhere): what
                    // was queued twice is skipped as current when scanned.
                    tracing::error!(bucket, database, "retro-scan stopped (tried again next round): {err}");
                    if let Err(err) = self.results.release(&id).await {
                        tracing::warn!(bucket, "retro-scan claim kept until its lease runs out: {err}");
                    }
                    all_done = false;
                }
            }
        }
        all_done
    }

    /// Queues the rescans of `bucket`'s clean results in the window.
    async fn walk(&self, id: &str, bucket: &str, config: &RetroScanConfig, database: &str) -> Result<Walked, String> {
        let now = OffsetDateTime::now_utc();
        let search = Search {
            bucket: Some(bucket.to_owned()),
            result: Some("clean".into()),
            from: Some(now - time::Duration::days(i64::from(config.within_days))),
            to: Some(now),
            ..Search::default()
        };
        let sweep_id = format!("retro-{}", &crate::config::digest(id));
        let mut pages = self.results.pages(&search, config.newest_first, &PROJECTION);
        let mut walked = Walked::default();
        let mut seen = HashSet::new();
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        while let Some(page) = pages.next().await? {
            for result in page {
                walked.results += 1;
                if is_current(&result, database) {
                    walked.current += 1;
                    continue;
                }
                if result.engine.is_none() {
                    // Recorded before results kept their copies: where a
                    // promotion put the bytes is not known.
                    walked.unknown_copies += 1;
                }
                let retro = retro_of(&result, database);
                for place in where_it_lives(&result) {
                    if seen.insert((place.bucket.clone(), place.key.clone(), place.version_id.clone())) {
                        batch.push(retro_item_message(&place, &retro, &sweep_id, &self.sealer));
                        if batch.len() == BATCH {
                            walked.queued += self.send(&mut batch).await?;
                        }
                    }
                }
            }
            self.results.renew(id, LEASE).await?;
        }
        walked.queued += self.send(&mut batch).await?;
        let now = bucketscan_scan::now_rfc3339();
        let record = crate::results::sweeps::SweepRecord {
            id: sweep_id.clone(),
            bucket: bucket.to_owned(),
            source: format!("retro-scan of {bucket} for {database}"),
            state: crate::fleet_sweep::QUEUED.to_owned(),
            queued: walked.queued,
            started_at: now.clone(),
            updated_at: now,
            ..Default::default()
        };
        if let Err(err) = self.results.save_sweep(&record).await {
            tracing::warn!(sweep = %sweep_id, "the retro-scan's sweep record was not written: {err}");
        }
        walked.sweep_id = sweep_id;
        Ok(walked)
    }

    async fn send(&self, batch: &mut Vec<String>) -> Result<u64, String> {
        if batch.is_empty() {
            return Ok(0);
        }
        let bodies: Vec<&str> = batch.iter().map(String::as_str).collect();
        let (sent, failure) = send_messages(&self.sqs, &self.queue_url, &bodies).await;
        batch.clear();
        match failure {
            None => Ok(sent as u64),
            Some(why) => Err(why),
        }
    }
}

/// Whether `result` was reached with `database` already.
fn is_current(result: &StoredResult, database: &str) -> bool {
    result.engine.as_deref().map(sanitize).as_deref() == Some(database)
}

/// What the rescan of `result` carries into its report.
fn retro_of(result: &StoredResult, database: &str) -> RetroScan {
    RetroScan {
        database: database.to_owned(),
        previous_engine: result.engine.clone(),
        clean_since: result.recorded_at.clone(),
        origin_bucket: result.bucket.clone(),
        origin_key: result.key.clone(),
    }
}

/// Where the bytes of `result` are served from now: the copies its
/// actions made (a promotion), else the upload itself.
fn where_it_lives(result: &StoredResult) -> Vec<CopyRef> {
    if !result.copies.is_empty() {
        return result.copies.clone();
    }
    vec![CopyRef {
        bucket: result.bucket.clone(),
        key: result.key.clone(),
        version_id: result.version_id.clone(),
        etag: result.etag.clone(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(engine: Option<&str>, copies: Vec<CopyRef>) -> StoredResult {
        StoredResult {
            bucket: "staging".into(),
            key: "in/a.pdf".into(),
            version_id: Some("v1".into()),
            etag: Some("e1".into()),
            result: "clean".into(),
            recorded_at: "2026-12-01T10:00:00.000Z".into(),
            engine: engine.map(str::to_owned),
            copies,
            ..StoredResult::default()
        }
    }

    #[test]
    fn a_promoted_result_is_rescanned_in_production_and_one_from_this_database_not_at_all() {
        let copy = CopyRef {
            bucket: "production".into(),
            key: "in/a.pdf".into(),
            version_id: Some("p7".into()),
            etag: Some("e1".into()),
        };
        let promoted = clean(Some("ClamAV 1.4.3/28000/Tue Dec  1 10:00:00 2026"), vec![copy.clone()]);
        let database = sanitize("ClamAV 1.4.3/28001/Wed Dec  2 10:00:00 2026");
        assert!(!is_current(&promoted, &database));
        assert_eq!(where_it_lives(&promoted), [copy]);
        let retro = retro_of(&promoted, &database);
        assert_eq!(
            (retro.origin_bucket.as_str(), retro.origin_key.as_str()),
            ("staging", "in/a.pdf")
        );
        assert_eq!(retro.clean_since, "2026-12-01T10:00:00.000Z");
        assert!(is_current(
            &clean(Some("ClamAV 1.4.3/28001/Wed Dec  2 10:00:00 2026"), vec![]),
            &database
        ));
    }

    #[test]
    fn a_result_without_copies_is_rescanned_where_it_was_and_one_without_an_engine_is_never_current() {
        let kept = clean(None, vec![]);
        assert!(!is_current(&kept, "ClamAV 1.4.3/28001"));
        let places = where_it_lives(&kept);
        assert_eq!(places.len(), 1);
        assert_eq!(
            (places[0].bucket.as_str(), places[0].version_id.as_deref()),
            ("staging", Some("v1"))
        );
    }
}
