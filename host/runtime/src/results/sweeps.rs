//! A sweep's progress, from the results table: what `scan --enqueue`
//! queued (the `sweep#ID` item it keeps up to date), what the agents
//! scanned (results carrying the sweep's id, counted on the `by-sweep`
//! index by result) and what they skipped (already current, gone: a
//! counter on the same item). `bucketscan sweep status ID` reads it.

use super::record::{self, BY_SWEEP, SWEEP_SHARDS};
use super::search::RESULTS;
use super::{ResultsStore, error_text, number_of, text_of};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const SK: &str = "sweep";

fn pk(id: &str) -> String {
    format!("sweep#{id}")
}

/// What `scan --enqueue` says of a sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepRecord {
    pub id: String,
    pub bucket: String,
    /// `s3://bucket/prefix`, or the inventory's manifest.
    pub source: String,
    /// `queuing`, `queued` (all of it), `stopped` (resume it).
    pub state: String,
    pub queued: u64,
    pub bytes: u64,
    pub last_key: Option<String>,
    pub resume_at: Option<String>,
    pub started_at: String,
    pub updated_at: String,
}

/// A sweep's progress as `sweep status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepProgress {
    pub sweep: SweepRecord,
    /// Results recorded for the sweep's items, by result.
    pub scanned: BTreeMap<String, u64>,
    /// Items the agents had nothing to do for (already current, gone).
    pub skipped: u64,
    /// Items not accounted for yet (queued, or in flight).
    pub remaining: u64,
    /// Items accounted for per second since the sweep started.
    pub per_second: f64,
    /// Seconds until the rest is done at that rate, once there is one.
    pub eta_seconds: Option<u64>,
}

impl ResultsStore {
    /// Writes the sweep's record (its `skipped` counter, which the agents
    /// keep, is left as it is).
    pub async fn save_sweep(&self, sweep: &SweepRecord) -> Result<(), String> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: u64| AttributeValue::N(v.to_string());
        let mut values = HashMap::from([
            (":bucket".to_owned(), s(&sweep.bucket)),
            (":source".to_owned(), s(&sweep.source)),
            (":state".to_owned(), s(&sweep.state)),
            (":queued".to_owned(), n(sweep.queued)),
            (":bytes".to_owned(), n(sweep.bytes)),
            (":started".to_owned(), s(&sweep.started_at)),
            (":updated".to_owned(), s(&sweep.updated_at)),
        ]);
        let mut update = "SET #bucket = :bucket, #source = :source, #state = :state, queued = :queued, \
                          #bytes = :bytes, started_at = :started, updated_at = :updated"
            .to_owned();
        for (name, value) in [("last_key", &sweep.last_key), ("resume_at", &sweep.resume_at)] {
            if let Some(value) = value {
                update.push_str(&format!(", {name} = :{name}"));
                values.insert(format!(":{name}"), s(value));
            }
        }
        self.client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", s(&pk(&sweep.id)))
            .key("sk", s(SK))
            .update_expression(update)
            .expression_attribute_names("#bucket", "bucket")
            .expression_attribute_names("#source", "source")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#bytes", "bytes")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(error_text)
    }

    /// The sweep's record, if `scan --enqueue` wrote one.
    pub async fn load_sweep(&self, id: &str) -> Result<Option<SweepRecord>, String> {
        let item = self.get_item(&pk(id), SK).await?;
        if !item.contains_key("queued") {
            return Ok(None);
        }
        let text = |name: &str| text_of(&item, name);
        let number = |name: &str| number_of(&item, name);
        Ok(Some(SweepRecord {
            id: id.to_owned(),
            bucket: text("bucket").unwrap_or_default(),
            source: text("source").unwrap_or_default(),
            state: text("state").unwrap_or_default(),
            queued: number("queued"),
            bytes: number("bytes"),
            last_key: text("last_key"),
            resume_at: text("resume_at"),
            started_at: text("started_at").unwrap_or_default(),
            updated_at: text("updated_at").unwrap_or_default(),
        }))
    }

    /// Counts one item of `sweep` the agents had nothing to do for.
    pub async fn count_skipped(&self, sweep: &str) -> Result<(), String> {
        self.client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk(sweep)))
            .key("sk", AttributeValue::S(SK.to_owned()))
            .update_expression("ADD skipped :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map(|_| ())
            .map_err(error_text)
    }

    /// The progress of sweep `id`; `None` when no enqueue recorded it.
    pub async fn sweep_progress(&self, id: &str) -> Result<Option<SweepProgress>, String> {
        let Some(sweep) = self.load_sweep(id).await? else {
            return Ok(None);
        };
        let mut scanned = BTreeMap::new();
        for result in RESULTS {
            let mut count = 0;
            for shard in 0..SWEEP_SHARDS {
                count += self.count_partition(&record::sweep_result(id, result, shard)).await?;
            }
            if count > 0 {
                scanned.insert(result.to_owned(), count);
            }
        }
        let skipped = self.skipped(id).await?;
        Ok(Some(progress(sweep, scanned, skipped, time::OffsetDateTime::now_utc())))
    }

    async fn skipped(&self, id: &str) -> Result<u64, String> {
        Ok(number_of(&self.get_item(&pk(id), SK).await?, "skipped"))
    }

    async fn count_partition(&self, value: &str) -> Result<u64, String> {
        let mut total = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.config.table)
                .index_name(BY_SWEEP)
                .key_condition_expression("sweep_result = :p")
                .expression_attribute_values(":p", AttributeValue::S(value.to_owned()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(error_text)?;
            total += u64::try_from(page.count()).unwrap_or(0);
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(total);
            }
        }
    }
}

/// The sums, rate and ETA of a sweep at `now`.
fn progress(
    sweep: SweepRecord,
    scanned: BTreeMap<String, u64>,
    skipped: u64,
    now: time::OffsetDateTime,
) -> SweepProgress {
    let done = scanned.values().sum::<u64>() + skipped;
    let remaining = sweep.queued.saturating_sub(done);
    let started = time::OffsetDateTime::parse(&sweep.started_at, &time::format_description::well_known::Rfc3339).ok();
    let elapsed = started.map(|at| (now - at).as_seconds_f64()).unwrap_or(0.0);
    let per_second = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
    let eta_seconds = (per_second > 0.0).then(|| (remaining as f64 / per_second).ceil() as u64);
    SweepProgress {
        sweep,
        scanned,
        skipped,
        remaining,
        per_second,
        eta_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_results_and_skips_against_what_was_queued() {
        let sweep = SweepRecord {
            queued: 1000,
            started_at: "2026-12-04T10:00:00Z".into(),
            ..SweepRecord::default()
        };
        let scanned = BTreeMap::from([("clean".to_owned(), 590), ("infected".to_owned(), 10)]);
        let now = time::OffsetDateTime::parse("2026-12-04T10:01:40Z", &time::format_description::well_known::Rfc3339)
            .unwrap();
        let progress = progress(sweep, scanned, 100, now);
        assert_eq!(progress.remaining, 300);
        assert_eq!(progress.per_second, 7.0);
        assert_eq!(progress.eta_seconds, Some(43));
    }

    #[test]
    fn a_sweep_with_nothing_done_has_no_eta_and_more_done_than_queued_leaves_none_remaining() {
        let sweep = SweepRecord {
            queued: 10,
            started_at: "2026-12-04T10:00:00Z".into(),
            ..SweepRecord::default()
        };
        let now = time::OffsetDateTime::parse("2026-12-04T10:00:10Z", &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(progress(sweep.clone(), BTreeMap::new(), 0, now).eta_seconds, None);
        // Duplicates (an item queued twice on a resume) are counted, not
        // taken off what remains below zero.
        let over = BTreeMap::from([("clean".to_owned(), 12)]);
        assert_eq!(progress(sweep, over, 0, now).remaining, 0);
    }
}
