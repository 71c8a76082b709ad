//! Searching the results table: by bucket, result or SHA-256 over a time
//! range, narrowed by key prefix and result — the console's results page
//! and its overview. Each search reads the index partitions of the days
//! it spans, newest first, and stops at its limit.

use super::record::{self, BY_BUCKET, BY_RESULT, BY_SHA256};
use super::{ResultsStore, StoredResult};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::OffsetDateTime;

/// Every result name the table is partitioned by.
pub const RESULTS: [&str; 5] = ["clean", "infected", "blocked", "unscannable", "error"];
/// Pages one search reads at most, over all its partitions, before it
/// gives up on filling its limit (a prefix that matches nothing in a busy
/// bucket over a long range): a bound on what one request costs.
const MAX_PAGES_PER_SEARCH: usize = 200;
/// Pages one count reads at most (a page is up to 1 MB of items).
const MAX_PAGES_PER_COUNT: usize = 2000;

/// What to look for. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub bucket: Option<String>,
    pub key_prefix: Option<String>,
    pub result: Option<String>,
    pub sha256: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub limit: usize,
    /// Only when, how long, by which agent and the result: what charts
    /// need, a fraction of each item's bytes (no report).
    pub summary_only: bool,
}

impl Search {
    fn range(&self) -> (OffsetDateTime, OffsetDateTime) {
        let to = self.to.unwrap_or_else(OffsetDateTime::now_utc);
        let from = self.from.unwrap_or(to - time::Duration::days(1));
        (from, to)
    }
}

/// One index partition and the filters applied inside it.
struct Partition {
    index: &'static str,
    attribute: &'static str,
    value: String,
}

impl ResultsStore {
    /// The results `search` names, newest first, at most its limit.
    pub async fn search(&self, search: &Search) -> Result<Vec<StoredResult>, String> {
        let (from, to) = search.range();
        let mut found = Vec::new();
        let mut pages_left = MAX_PAGES_PER_SEARCH;
        for partition in partitions(search, from, to) {
            let left = search.limit.saturating_sub(found.len());
            if left == 0 || pages_left == 0 {
                break;
            }
            found.extend(
                self.read_partition(&partition, search, (from, to), left, &mut pages_left)
                    .await?,
            );
        }
        // Partitions of one day (all results at once) interleave in time.
        found.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at));
        found.truncate(search.limit);
        Ok(found)
    }

    /// How many results `search` names (its limit ignored): counted by
    /// the table, nothing transferred but the count; `false` when it
    /// stopped at its page bound (the count is then a lower bound).
    pub async fn count(&self, search: &Search) -> Result<(usize, bool), String> {
        let (from, to) = search.range();
        let mut total = 0usize;
        let mut pages_left = MAX_PAGES_PER_COUNT;
        for partition in partitions(search, from, to) {
            let expression = Expression::new(&partition, search, from, to);
            let mut start = None;
            loop {
                if pages_left == 0 {
                    return Ok((total, false));
                }
                pages_left -= 1;
                let page = expression
                    .query(self, &partition)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())?;
                total += usize::try_from(page.count()).unwrap_or(0);
                start = page.last_evaluated_key().cloned();
                if start.is_none() {
                    break;
                }
            }
        }
        Ok((total, true))
    }

    /// Up to `limit` results of one partition within `from..=to`.
    async fn read_partition(
        &self,
        partition: &Partition,
        search: &Search,
        (from, to): (OffsetDateTime, OffsetDateTime),
        limit: usize,
        pages_left: &mut usize,
    ) -> Result<Vec<StoredResult>, String> {
        let mut expression = Expression::new(partition, search, from, to);
        if search.summary_only {
            expression.project(&[
                "recorded_at",
                "duration_ms",
                "agent",
                "config",
                "result",
                "bucket",
                "key",
            ]);
        }
        let mut found = Vec::new();
        let mut start = None;
        while *pages_left > 0 {
            *pages_left -= 1;
            let page = expression
                .query(self, partition)
                .limit(i32::try_from(limit.clamp(25, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())?;
            found.extend(page.items().iter().map(StoredResult::from_item));
            start = page.last_evaluated_key().cloned();
            if found.len() >= limit || start.is_none() {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }
}

/// Every result of a search, page by page: what a retro-scan walks (no
/// limit, no page bound: the caller decides when to stop).
pub struct Pages<'s> {
    store: &'s ResultsStore,
    search: Search,
    range: (OffsetDateTime, OffsetDateTime),
    newest_first: bool,
    projection: Vec<&'static str>,
    partitions: std::collections::VecDeque<Partition>,
    start: Option<HashMap<String, AttributeValue>>,
}

impl<'s> Pages<'s> {
    /// The next page (possibly empty: a page the filters emptied), or
    /// `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<StoredResult>>, String> {
        let Some(partition) = self.partitions.front() else {
            return Ok(None);
        };
        let (from, to) = self.range;
        let mut expression = Expression::new(partition, &self.search, from, to);
        expression.forward = !self.newest_first;
        if !self.projection.is_empty() {
            expression.project(&self.projection);
        }
        let page = expression
            .query(self.store, partition)
            .set_exclusive_start_key(self.start.take())
            .send()
            .await
            .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())?;
        self.start = page.last_evaluated_key().cloned();
        if self.start.is_none() {
            self.partitions.pop_front();
        }
        Ok(Some(page.items().iter().map(StoredResult::from_item).collect()))
    }
}

impl ResultsStore {
    /// Walks every result `search` names, in day order (newest or oldest
    /// first), returning only `projection` (all attributes when empty).
    pub fn pages(&self, search: &Search, newest_first: bool, projection: &[&'static str]) -> Pages<'_> {
        let (from, to) = search.range();
        let mut partitions: std::collections::VecDeque<Partition> = partitions(search, from, to).into();
        if !newest_first {
            partitions = partitions.into_iter().rev().collect();
        }
        Pages {
            store: self,
            search: search.clone(),
            range: (from, to),
            newest_first,
            projection: projection.to_vec(),
            partitions,
            start: None,
        }
    }
}

/// One partition's key condition, filters and projection, with every
/// value a placeholder: nothing a user types becomes expression text.
struct Expression {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    filters: Vec<String>,
    projection: Option<String>,
    /// Oldest first (the default is newest first).
    forward: bool,
}

impl Expression {
    fn new(partition: &Partition, search: &Search, from: OffsetDateTime, to: OffsetDateTime) -> Self {
        let mut expression = Self {
            names: HashMap::from([
                ("#p".to_owned(), partition.attribute.to_owned()),
                ("#t".to_owned(), "recorded_at".to_owned()),
            ]),
            values: HashMap::from([
                (":p".to_owned(), AttributeValue::S(partition.value.clone())),
                (":from".to_owned(), AttributeValue::S(record::timestamp(from))),
                (":to".to_owned(), AttributeValue::S(record::timestamp(to))),
            ]),
            filters: Vec::new(),
            projection: None,
            forward: false,
        };
        if partition.index != BY_BUCKET {
            expression.narrow("b", "bucket", &search.bucket, "#b = :b");
        }
        if partition.index != BY_RESULT {
            expression.narrow("r", "result", &search.result, "#r = :r");
        }
        expression.narrow("k", "key", &search.key_prefix, "begins_with(#k, :k)");
        expression
    }

    fn narrow(&mut self, name: &str, attribute: &str, value: &Option<String>, condition: &str) {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            self.names.insert(format!("#{name}"), attribute.to_owned());
            self.values.insert(format!(":{name}"), AttributeValue::S(value.clone()));
            self.filters.push(condition.to_owned());
        }
    }

    /// Only `attributes` come back.
    fn project(&mut self, attributes: &[&str]) {
        let mut placeholders = Vec::new();
        for (index, attribute) in attributes.iter().enumerate() {
            let placeholder = format!("#a{index}");
            self.names.insert(placeholder.clone(), (*attribute).to_owned());
            placeholders.push(placeholder);
        }
        self.projection = Some(placeholders.join(", "));
    }

    fn query(
        &self,
        store: &ResultsStore,
        partition: &Partition,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut query = store
            .client
            .query()
            .table_name(&store.config.table)
            .index_name(partition.index)
            .key_condition_expression("#p = :p AND #t BETWEEN :from AND :to")
            .set_expression_attribute_names(Some(self.names.clone()))
            .set_expression_attribute_values(Some(self.values.clone()))
            .scan_index_forward(self.forward);
        if !self.filters.is_empty() {
            query = query.filter_expression(self.filters.join(" AND "));
        }
        if let Some(projection) = &self.projection {
            query = query.projection_expression(projection);
        }
        query
    }
}

/// The index partitions a search reads, newest day first.
fn partitions(search: &Search, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Partition> {
    if let Some(sha256) = search.sha256.as_ref().filter(|s| !s.is_empty()) {
        return vec![Partition {
            index: BY_SHA256,
            attribute: "sha256",
            value: sha256.to_ascii_lowercase(),
        }];
    }
    let mut days = Vec::new();
    let mut day = to;
    // A range of more than a year is read as its last year.
    while record::day_of(day) >= record::day_of(from) && days.len() < 366 {
        days.push(record::day_of(day));
        day -= time::Duration::days(1);
    }
    let mut partitions = Vec::new();
    for day in days {
        if let Some(bucket) = search.bucket.as_ref().filter(|b| !b.is_empty()) {
            partitions.push(Partition {
                index: BY_BUCKET,
                attribute: "bucket_day",
                value: record::bucket_day(bucket, &day),
            });
            continue;
        }
        let results: Vec<&str> = match search.result.as_deref().filter(|r| !r.is_empty()) {
            Some(result) => vec![result],
            None => RESULTS.to_vec(),
        };
        for result in results {
            partitions.push(Partition {
                index: BY_RESULT,
                attribute: "result_day",
                value: record::result_day(result, &day),
            });
        }
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn values(search: &Search) -> Vec<String> {
        let (from, to) = search.range();
        partitions(search, from, to).into_iter().map(|p| p.value).collect()
    }

    #[test]
    fn a_bucket_search_reads_its_days_newest_first() {
        let search = Search {
            bucket: Some("staging".into()),
            from: Some(at("2026-11-29T23:00:00Z")),
            to: Some(at("2026-12-01T01:00:00Z")),
            ..Search::default()
        };
        assert_eq!(
            values(&search),
            ["staging#2026-12-01", "staging#2026-11-30", "staging#2026-11-29"]
        );
    }

    #[test]
    fn without_a_bucket_every_result_of_each_day_is_read_and_a_digest_reads_its_own_index() {
        let search = Search {
            to: Some(at("2026-12-01T01:00:00Z")),
            ..Search::default()
        };
        let read = values(&search);
        assert_eq!(read.len(), 10);
        assert_eq!(read[0], "clean#2026-12-01");
        assert_eq!(read[9], "error#2026-11-30");
        let by_digest = Search {
            sha256: Some("AB".repeat(32)),
            bucket: Some("staging".into()),
            ..Search::default()
        };
        assert_eq!(values(&by_digest), ["ab".repeat(32)]);
    }
}
