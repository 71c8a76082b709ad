//! One scan result as a DynamoDB item, and the keys its queries use. The
//! table (`deploy/bucketscan.yaml`, `ResultsTable`) holds every result of
//! every agent:
//!
//! - `pk` = `object#BUCKET#KEY`, `sk` = `TIME#VERSION#NONCE`: one object's
//!   history, oldest first, every version and every scan;
//! - index `by-bucket`: `bucket_day` = `BUCKET#YYYY-MM-DD`, `recorded_at`;
//! - index `by-result`: `result_day` = `RESULT#YYYY-MM-DD`, `recorded_at`;
//! - index `by-sha256`: `sha256`, `recorded_at` (results of unread bytes
//!   carry none and stay out of it);
//! - index `by-sweep`: `sweep_result` = `SWEEP#RESULT#SHARD`, `recorded_at`
//!   (results of a sweep's items only; counted by `sweeps`);
//! - `expires_at`: the table's TTL attribute (epoch seconds).
//!
//! Partition keys of the indexes carry the day so that one busy bucket (or
//! the `clean` result of a whole fleet) is spread over one partition per
//! day rather than one for ever.

use aws_sdk_dynamodb::types::AttributeValue;
use bucketscan_core::report::ScanReport;
use std::collections::HashMap;
use time::OffsetDateTime;

pub const BY_BUCKET: &str = "by-bucket";
pub const BY_RESULT: &str = "by-result";
pub const BY_SHA256: &str = "by-sha256";
pub const BY_SWEEP: &str = "by-sweep";
/// Partitions of `by-sweep` per sweep and result.
pub const SWEEP_SHARDS: u32 = 8;

/// The `by-sweep` partition of `sweep`'s `result`s in `shard`.
pub fn sweep_result(sweep: &str, result: &str, shard: u32) -> String {
    format!("{sweep}#{result}#{shard}")
}

/// The history key of `bucket`/`key`.
pub fn object_pk(bucket: &str, key: &str) -> String {
    format!("object#{bucket}#{key}")
}

/// The `by-bucket` partition of `bucket` on `day` (`YYYY-MM-DD`).
pub fn bucket_day(bucket: &str, day: &str) -> String {
    format!("{bucket}#{day}")
}

/// The `by-result` partition of `result` on `day`.
pub fn result_day(result: &str, day: &str) -> String {
    format!("{result}#{day}")
}

/// `at` in UTC to the millisecond, always as long: sort keys order by it.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day_of(at),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Today (UTC) as the index partitions name days.
pub fn today() -> String {
    day_of(OffsetDateTime::now_utc())
}

/// `at` as the day its index partitions use.
pub fn day_of(at: OffsetDateTime) -> String {
    let date = at.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// What the item records beside the report.
pub struct Recorded<'a> {
    pub agent: &'a str,
    pub at: OffsetDateTime,
    /// Kept this long; `None`: for ever.
    pub keep_days: Option<u32>,
    /// Makes the sort key unique when one agent records twice in a
    /// millisecond.
    pub nonce: &'a str,
    /// The report as published (bounded JSON).
    pub body: String,
    /// The digest of the config the agent runs (empty: unknown).
    pub config: &'a str,
}

/// The item for `report`.
pub fn item(report: &ScanReport, recorded: &Recorded<'_>) -> HashMap<String, AttributeValue> {
    let s = |value: &str| AttributeValue::S(value.to_owned());
    let n = |value: String| AttributeValue::N(value);
    let at = timestamp(recorded.at);
    let day = day_of(recorded.at);
    let result = report.result().as_str();
    let version = report.version_id.as_deref().unwrap_or("-");
    let mut item = HashMap::from([
        ("pk".to_owned(), s(&object_pk(&report.bucket, &report.key))),
        ("sk".to_owned(), s(&format!("{at}#{version}#{}", recorded.nonce))),
        ("bucket".to_owned(), s(&report.bucket)),
        ("key".to_owned(), s(&report.key)),
        ("size".to_owned(), n(report.size.to_string())),
        ("result".to_owned(), s(result)),
        ("detail".to_owned(), s(&detail(report))),
        ("agent".to_owned(), s(recorded.agent)),
        ("recorded_at".to_owned(), s(&at)),
        ("bucket_day".to_owned(), s(&bucket_day(&report.bucket, &day))),
        ("result_day".to_owned(), s(&result_day(result, &day))),
        ("outcome".to_owned(), s(report.outcome.status())),
        ("duration_ms".to_owned(), n(format!("{:.3}", report.duration_ms))),
        ("report".to_owned(), s(&recorded.body)),
    ]);
    let optional = [
        ("version_id", report.version_id.as_deref()),
        ("etag", report.etag.as_deref()),
        ("sha256", report.sha256.as_deref()),
        ("coverage", report.coverage.map(|c| c.as_str())),
        ("config", Some(recorded.config)),
        ("engine", report.engine_version()),
    ];
    for (name, value) in optional {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            item.insert(name.to_owned(), s(value));
        }
    }
    if let Some(sweep) = &report.sweep {
        // Spread over shards: one sweep's results are not one hot
        // partition of the index.
        let shard = report
            .key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % SWEEP_SHARDS;
        item.insert("sweep".to_owned(), s(sweep));
        item.insert("sweep_result".to_owned(), s(&sweep_result(sweep, result, shard)));
    }
    if !report.copies.is_empty() {
        // Where the bytes also live now: what a retro-scan rescans.
        let copies = serde_json::to_string(&report.copies).unwrap_or_default();
        item.insert("copies".to_owned(), s(&copies));
    }
    if let Some(days) = recorded.keep_days {
        let expires = recorded.at.unix_timestamp() + i64::from(days) * 86_400;
        item.insert("expires_at".to_owned(), n(expires.to_string()));
    }
    item
}

/// The signature names, or the reason; for bytes the allow-list passed
/// (a release among them), on whose word and why: what a list of results
/// shows, and the audit trail of releases.
fn detail(report: &ScanReport) -> String {
    use bucketscan_core::Verdict;
    match &report.verdict {
        Verdict::Clean => match &report.allowed {
            Some(allowed) => match &allowed.entry.note {
                Some(note) => format!("{}: {note}", allowed.entry.source),
                None => allowed.entry.source.clone(),
            },
            None => String::new(),
        },
        Verdict::Infected { findings } => findings
            .iter()
            .map(|f| f.signature.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        Verdict::Blocked { reason } => reason.clone(),
        Verdict::Unscannable { reason, .. } => reason.as_str().to_owned(),
        Verdict::Error { message } => message.clone(),
    }
    .chars()
    .take(1024)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucketscan_core::object::ObjectInfo;
    use bucketscan_core::{Finding, Verdict};

    fn report(verdict: Verdict) -> ScanReport {
        let info = ObjectInfo {
            bucket: "staging".into(),
            key: "in/<img src=x>.pdf".into(),
            version_id: Some("v1".into()),
            size: 68,
            sha256: Some("ab".repeat(32)),
            ..ObjectInfo::default()
        };
        ScanReport::new(&info, verdict)
    }

    fn recorded(keep_days: Option<u32>) -> Recorded<'static> {
        Recorded {
            agent: "agent-1",
            at: OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap(),
            keep_days,
            nonce: "0a1b",
            body: "{}".into(),
            config: "2e42c2ff6f57",
        }
    }

    fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
        match &item[name] {
            AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn an_infected_result_is_keyed_for_its_history_its_bucket_its_result_and_its_digest() {
        let verdict = Verdict::Infected {
            findings: vec![Finding::new("clamav", "Eicar-Test-Signature")],
        };
        let item = item(&report(verdict), &recorded(Some(90)));
        assert_eq!(text(&item, "pk"), "object#staging#in/<img src=x>.pdf");
        assert_eq!(text(&item, "sk"), "2026-11-30T00:53:20.000Z#v1#0a1b");
        assert_eq!(text(&item, "bucket_day"), "staging#2026-11-30");
        assert_eq!(text(&item, "result_day"), "infected#2026-11-30");
        assert_eq!(text(&item, "sha256"), "ab".repeat(32));
        assert_eq!(text(&item, "detail"), "Eicar-Test-Signature");
        assert_eq!(text(&item, "expires_at"), (1_796_000_000i64 + 90 * 86_400).to_string());
        assert_eq!(text(&item, "config"), "2e42c2ff6f57");
    }

    #[test]
    fn a_release_records_on_whose_word_and_why() {
        let mut report = report(Verdict::Clean);
        report.allowed = Some(bucketscan_core::allow::AllowMatch {
            sha256: "ab".repeat(32),
            verdict: Verdict::Infected {
                findings: vec![Finding::new("clamav", "Eicar")],
            },
            entry: bucketscan_core::allow::AllowEntry {
                source: "released by arn:aws:iam::1:user/ana at 2026-12-04T10:00:00Z".into(),
                note: Some("vendor test file".into()),
            },
        });
        let item = item(&report, &recorded(Some(1)));
        assert_eq!(
            text(&item, "detail"),
            "released by arn:aws:iam::1:user/ana at 2026-12-04T10:00:00Z: vendor test file"
        );
    }

    #[test]
    fn unread_bytes_stay_out_of_the_digest_index_and_kept_for_ever_has_no_expiry() {
        let mut report = report(Verdict::Unscannable {
            reason: bucketscan_core::UnscannableReason::TooLarge,
            detail: "over".into(),
        });
        report.sha256 = None;
        let item = item(&report, &recorded(None));
        assert!(!item.contains_key("sha256"));
        assert!(!item.contains_key("expires_at"));
        assert_eq!(text(&item, "detail"), "too-large");
    }
}
