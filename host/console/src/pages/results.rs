//! Results: a search of the results table, and one object's history —
//! every scan of every version, with its findings, stages, actions and
//! what was published.

use super::{Page, layout, object_link, result_badge, unavailable};
use crate::Console;
use crate::identity::User;
use axum::Extension;
use axum::extract::{Query, State};
use bucketscan_runtime::results::StoredResult;
use bucketscan_runtime::results::search::{RESULTS, Search};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;
use time::OffsetDateTime;

/// Rows one search shows.
pub const PAGE_ROWS: usize = 200;
/// The longest range one search reads (each day is its own partition).
const MAX_DAYS: i64 = 31;

/// The search form's fields (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    sha256: String,
    /// `YYYY-MM-DD` (UTC), inclusive; default: the day before `to`.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl SearchForm {
    /// The store's search, or what is wrong with the form.
    fn search(&self) -> Result<Search, String> {
        let day = |field: &str, text: &str, end_of_day: bool| -> Result<Option<OffsetDateTime>, String> {
            if text.is_empty() {
                return Ok(None);
            }
            let time = if end_of_day { "23:59:59.999Z" } else { "00:00:00Z" };
            OffsetDateTime::parse(
                &format!("{text}T{time}"),
                &time::format_description::well_known::Rfc3339,
            )
            .map(Some)
            .map_err(|_| format!("{field}: `{text}` is not a date (YYYY-MM-DD)"))
        };
        if !self.result.is_empty() && !RESULTS.contains(&self.result.as_str()) {
            return Err(format!(
                "result: `{}` is not one of {}",
                self.result,
                RESULTS.join(", ")
            ));
        }
        let sha256 = self.sha256.trim();
        if !sha256.is_empty() && (sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err("sha256: not a SHA-256 (64 hex digits)".into());
        }
        let to = day("to", &self.to, true)?;
        let from = match day("from", &self.from, false)? {
            Some(from) => Some(from),
            None => to.map(|to| to - time::Duration::days(1)),
        };
        let span_ends = (from, to.unwrap_or_else(OffsetDateTime::now_utc));
        if let (Some(from), to) = span_ends
            && to - from > time::Duration::days(MAX_DAYS)
        {
            return Err(format!("from–to: at most {MAX_DAYS} days at once"));
        }
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(Search {
            bucket: text(&self.bucket),
            key_prefix: (!self.prefix.is_empty()).then(|| self.prefix.clone()),
            result: text(&self.result),
            sha256: text(sha256),
            from,
            to,
            limit: PAGE_ROWS,
            summary_only: false,
        })
    }
}

pub async fn search(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(form): Query<SearchForm>,
) -> Page {
    let buckets: Vec<&String> = console.agent.started_with.buckets.keys().collect();
    let found = match (&console.agent.results, form.search()) {
        (None, _) => unavailable("Search", "no results table is configured ([results])"),
        (_, Err(why)) => html! { p.error { (why) } },
        (Some(store), Ok(search)) => match store.search(&search).await {
            Ok(results) => results_table(&results),
            Err(err) => unavailable("The results table", &err),
        },
    };
    let body = html! {
        form.search method="get" action="/console/results" {
            label { "Bucket " select name="bucket" {
                option value="" { "any" }
                @for bucket in &buckets { option value=(bucket) selected[**bucket == form.bucket] { (bucket) } }
            } }
            label { "Key prefix " input type="text" name="prefix" value=(form.prefix); }
            label { "Result " select name="result" {
                option value="" { "any" }
                @for result in RESULTS { option value=(result) selected[result == form.result] { (result) } }
            } }
            label { "From " input type="date" name="from" value=(form.from); }
            label { "To " input type="date" name="to" value=(form.to); }
            label { "SHA-256 " input type="text" name="sha256" size="20" value=(form.sha256); }
            button type="submit" { "Search" }
        }
        p { "Newest first, at most " (PAGE_ROWS) " rows; without dates, the last 24 hours." }
        (found)
    };
    layout(Some(&user), "Results", body)
}

fn results_table(results: &[StoredResult]) -> Markup {
    html! {
        @if results.is_empty() { p id="no-results" { "Nothing recorded matches." } }
        @else {
            table id="results" {
                tr { th { "Recorded" } th { "Object" } th { "Result" } th { "Finding or reason" } th { "Coverage" } th { "SHA-256" } th { "Agent" } }
                @for result in results {
                    tr {
                        td { (result.recorded_at) }
                        td.key { (object_link(&result.bucket, &result.key)) }
                        td { (result_badge(&result.result)) }
                        td { (result.detail) }
                        td { (result.coverage.as_deref().unwrap_or("")) }
                        td.digest { (result.sha256.as_deref().unwrap_or("")) }
                        td { (result.agent) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ObjectForm {
    bucket: String,
    key: String,
}

/// Scans of one object shown, newest first.
const HISTORY_LIMIT: i32 = 200;

pub async fn history(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Query(form): Query<ObjectForm>,
) -> Page {
    let title = format!("s3://{}/{}", form.bucket, bucketscan_core::object::printable(&form.key));
    let body = match &console.agent.results {
        None => unavailable("History", "no results table is configured ([results])"),
        Some(store) => match store.latest_history(&form.bucket, &form.key, HISTORY_LIMIT).await {
            Ok(results) => {
                html! {
                    @if results.is_empty() { p { "Nothing recorded for this object." } }
                    @for result in &results { (one_scan(result)) }
                }
            }
            Err(err) => unavailable("The results table", &err),
        },
    };
    layout(Some(&user), &title, body)
}

/// One recorded scan: the summary, then what the published report says.
fn one_scan(result: &StoredResult) -> Markup {
    let report: serde_json::Value = serde_json::from_str(&result.report).unwrap_or_default();
    let list = |name: &str| report.get(name).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let text = |value: &serde_json::Value, name: &str| match value.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    html! {
        section.scan {
            h2 { (result.recorded_at) " · " (result_badge(&result.result)) }
            table {
                tr { th { "Version" } td { (result.version_id.as_deref().unwrap_or("(unversioned)")) } }
                tr { th { "Finding or reason" } td { (result.detail) } }
                tr { th { "SHA-256" } td.digest { (result.sha256.as_deref().unwrap_or("(not read)")) } }
                tr { th { "Coverage" } td { (result.coverage.as_deref().unwrap_or("")) } }
                tr { th { "Agent" } td { (result.agent) } }
                tr { th { "Outcome" } td { (report.get("outcome").map(|o| text(o, "status")).unwrap_or_default()) } }
                @if let Some(ms) = result.duration_ms { tr { th { "Took" } td { (format!("{ms:.1} ms")) } } }
            }
            @let findings = list("findings");
            @if !findings.is_empty() {
                h3 { "Findings" }
                table {
                    tr { th { "Engine" } th { "Signature" } th { "Where" } }
                    @for finding in &findings {
                        tr { td { (text(finding, "engine")) } td.finding { (text(finding, "signature")) } td.key { (text(finding, "location")) } }
                    }
                }
            }
            @let stages = list("stages");
            @if !stages.is_empty() {
                h3 { "Stages" }
                table {
                    tr { th { "Plugin" } th { "Kind" } th { "Outcome" } th { "Actions" } th { "ms" } }
                    @for stage in &stages {
                        tr {
                            td { (text(stage, "plugin")) " " (text(stage, "plugin_version")) }
                            td { (text(stage, "kind")) }
                            td { (text(stage, "outcome")) " " (text(stage, "error")) }
                            td { (stage.get("actions").and_then(|a| a.as_array()).map(|a| a.iter().map(|x| x.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>().join("; ")).unwrap_or_default()) }
                            td { (text(stage, "duration_ms")) }
                        }
                    }
                }
            }
            @let actions = list("actions");
            @if !actions.is_empty() {
                h3 { "Host actions" }
                ul { @for action in &actions { li { (action.as_str().map(str::to_owned).unwrap_or_else(|| action.to_string())) } } }
            }
            details {
                summary { "The report as published" }
                pre { (serde_json::to_string_pretty(&report).unwrap_or_default()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_a_search_or_names_its_bad_field() {
        let form = SearchForm {
            bucket: "staging".into(),
            prefix: "in/".into(),
            result: "infected".into(),
            from: "2026-11-01".into(),
            to: "2026-11-03".into(),
            ..SearchForm::default()
        };
        let search = form.search().unwrap();
        assert_eq!(search.bucket.as_deref(), Some("staging"));
        assert_eq!(search.from.unwrap().unix_timestamp(), 1_793_491_200);
        assert_eq!(search.to.unwrap().hour(), 23);
        let bad_day = SearchForm {
            to: "03/11/2026".into(),
            ..SearchForm::default()
        };
        assert_eq!(
            bad_day.search().unwrap_err(),
            "to: `03/11/2026` is not a date (YYYY-MM-DD)"
        );
        let bad_result = SearchForm {
            result: "fine".into(),
            ..SearchForm::default()
        };
        assert!(
            bad_result
                .search()
                .unwrap_err()
                .starts_with("result: `fine` is not one of clean")
        );
        let bad_digest = SearchForm {
            sha256: "abc".into(),
            ..SearchForm::default()
        };
        assert!(bad_digest.search().unwrap_err().starts_with("sha256:"));
        let a_year = SearchForm {
            from: "2025-11-01".into(),
            to: "2026-11-03".into(),
            ..SearchForm::default()
        };
        assert_eq!(a_year.search().unwrap_err(), "from–to: at most 31 days at once");
    }

    #[test]
    fn a_recorded_scan_shows_its_hostile_text_as_text() {
        let report = serde_json::json!({
            "findings": [{"engine": "clamav", "signature": "<script>alert(1)</script>", "location": null}],
            "stages": [{"plugin": "clamav-bridge", "kind": "inspector", "outcome": "infected", "actions": ["<b>x</b>"], "duration_ms": 3.5}],
            "outcome": "done",
        });
        let result = StoredResult {
            bucket: "staging".into(),
            key: "<img src=x>".into(),
            version_id: None,
            sha256: None,
            result: "infected".into(),
            detail: "<script>alert(2)</script>".into(),
            coverage: Some("whole".into()),
            agent: "a".into(),
            config: String::new(),
            recorded_at: "2026-12-01T00:00:00.000Z".into(),
            duration_ms: Some(3.5),
            report: report.to_string(),
            ..StoredResult::default()
        };
        let html = one_scan(&result).into_string();
        assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    }
}
