//! The overview: this task's readiness and signatures, the queues, and
//! the last 24 hours of results from the results table — counts by
//! result, the agents that recorded them, and per-hour charts of
//! throughput and time to verdict.

use super::{Page, layout, result_badge, unavailable};
use crate::Console;
use crate::identity::User;
use aws_sdk_sqs::types::QueueAttributeName;
use axum::Extension;
use axum::extract::State;
use bucketscan_runtime::results::StoredResult;
use bucketscan_runtime::results::search::{RESULTS, Search};
use maud::{Markup, html};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// Results the charts are drawn from (the newest); the counts are exact.
pub const CHART_LIMIT: usize = 20_000;

pub async fn page(State(console): State<Arc<Console>>, Extension(user): Extension<User>) -> Page {
    let body = html! {
        h2 { "This task" }
        (this_task(&console).await)
        h2 { "Queues" }
        (queues(&console).await)
        h2 { "The last 24 hours" }
        (last_day(&console).await)
    };
    layout(Some(&user), "Overview", body)
}

async fn this_task(console: &Console) -> Markup {
    let agent = &console.agent;
    let readiness = bucketscan_runtime::health::cached_readiness(agent).await;
    let version = agent.clamd().version().await;
    let notes = bucketscan_runtime::health::notes(agent);
    html! {
        table {
            tr { th { "Readiness" } td {
                @match &readiness {
                    Ok(()) => span.ok { "ready" },
                    Err(problems) => span.error { "not ready: " (problems.join("; ")) },
                }
            } }
            tr { th { "ClamAV and signatures" } td {
                @match &version {
                    Ok(version) => (version),
                    Err(err) => span.error { (err.to_string()) },
                }
            } }
            tr { th { "Config" } td {
                code { (agent.started_with.text.source.display().to_string()) }
                " · running " code { (config_digest(agent)) }
                " · pipelines reloaded " (agent.pipelines.generation().saturating_sub(1)) " times since"
            } }
            @for note in &notes { tr { th { "Note" } td { (note) } } }
        }
    }
}

/// The digest of the config whose pipelines this task runs now (after
/// any reload): the same digest on two tasks means the same config.
pub fn config_digest(agent: &bucketscan_runtime::agent::Agent) -> String {
    bucketscan_runtime::config::digest(&agent.pipelines.snapshot().config.text.text)
}

async fn queues(console: &Console) -> Markup {
    let agent = &console.agent;
    let names = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ];
    let mut rows = Vec::new();
    for queue in &agent.started_with.agent.queues {
        let answer = agent
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .set_attribute_names(Some(names.clone().to_vec()))
            .send()
            .await;
        let counts = answer.map(|answer| {
            let attributes = answer.attributes().cloned().unwrap_or_default();
            names
                .clone()
                .map(|name| attributes.get(&name).cloned().unwrap_or_else(|| "?".into()))
        });
        rows.push((queue.clone(), counts));
    }
    html! {
        @if rows.is_empty() { p { "This task reads no queue ([agent] queues is empty)." } }
        @else {
            table {
                tr { th { "Queue" } th { "Waiting" } th { "Being scanned" } th { "Delayed" } }
                @for (queue, counts) in &rows {
                    tr {
                        td.key { (queue) }
                        @match counts {
                            Ok([waiting, scanning, delayed]) => { td { (waiting) } td { (scanning) } td { (delayed) } },
                            Err(err) => td colspan="3" { (unavailable("depth", &bucketscan_runtime::aws::error_text(err))) },
                        }
                    }
                }
            }
            p { "The age of the oldest message is CloudWatch's ApproximateAgeOfOldestMessage; the stack's queue-depth alarm watches it." }
        }
    }
}

/// How long the last-24-hours counts are shown before they are counted
/// again (the page says when they were counted).
pub const RECOUNT_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// The last 24 hours, from the cache when it is fresh. One recount at a
/// time: viewers arriving meanwhile wait for it rather than start their own.
async fn last_day(console: &Console) -> Markup {
    let mut cached = console.last_day.lock().await;
    if let Some((at, markup)) = cached.as_ref()
        && at.elapsed() < RECOUNT_AFTER
    {
        return markup.clone();
    }
    match count_last_day(console).await {
        Ok(counts) => {
            let counted = html! {
                p { "Counted at " (bucketscan_runtime::results::record::timestamp(OffsetDateTime::now_utc()))
                    " (again at most every " (RECOUNT_AFTER.as_secs()) " s)." }
                (counts)
            };
            *cached = Some((std::time::Instant::now(), counted.clone()));
            counted
        }
        // A failure is not kept: the next view tries again.
        Err(unavailable) => unavailable,
    }
}

async fn count_last_day(console: &Console) -> Result<Markup, Markup> {
    let Some(store) = &console.agent.results else {
        return Ok(html! { p { "No results table is configured ([results]): counts and history need one." } });
    };
    let now = OffsetDateTime::now_utc();
    let day = |result: Option<&str>, limit: usize| Search {
        result: result.map(str::to_owned),
        from: Some(now - time::Duration::days(1)),
        to: Some(now),
        limit,
        summary_only: true,
        ..Search::default()
    };
    let mut counts = Vec::new();
    for result in RESULTS {
        match store.count(&day(Some(result), 0)).await {
            Ok((count, complete)) => counts.push((result, count, complete)),
            Err(err) => return Err(unavailable("The results table", &err)),
        }
    }
    let sample = store
        .search(&day(None, CHART_LIMIT))
        .await
        .map_err(|err| unavailable("The results table", &err))?;
    let total: usize = counts.iter().map(|(_, count, _)| count).sum();
    let hours = per_hour(&sample, now);
    Ok(html! {
        div.cards {
            @for (result, count, complete) in &counts {
                div.card {
                    span.count id={ "count-" (result) } { (count) @if !complete { "+" } }
                    (result_badge(result))
                }
            }
        }
        @if total > sample.len() {
            p { "The charts and the agents below are drawn from " (sample.len()) " of the " (total) " results." }
        }
        h2 { "Results per hour" }
        (bar_chart(&hours.iter().map(|h| h.count as f64).collect::<Vec<_>>(), "results"))
        h2 { "Median time to verdict per hour (ms)" }
        (bar_chart(&hours.iter().map(|h| h.median_ms).collect::<Vec<_>>(), "ms"))
        h2 { "Agents that recorded results" }
        (agents(&sample))
    })
}

/// One hour of the last 24: how many results, and their median time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hour {
    pub count: usize,
    pub median_ms: f64,
}

/// The last 24 hours before `now`, oldest first.
pub fn per_hour(results: &[StoredResult], now: OffsetDateTime) -> Vec<Hour> {
    let mut durations: Vec<Vec<f64>> = vec![Vec::new(); 24];
    for result in results {
        let Ok(at) = OffsetDateTime::parse(&result.recorded_at, &time::format_description::well_known::Rfc3339) else {
            continue;
        };
        let ago = (now - at).whole_hours();
        if (0..24).contains(&ago) {
            durations[23 - ago as usize].push(result.duration_ms.unwrap_or(0.0));
        }
    }
    durations
        .into_iter()
        .map(|mut hour| {
            hour.sort_by(f64::total_cmp);
            Hour {
                count: hour.len(),
                median_ms: hour.get(hour.len() / 2).copied().unwrap_or(0.0),
            }
        })
        .collect()
}

/// 24 bars, drawn on the server.
fn bar_chart(values: &[f64], unit: &str) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 120.0;
    let max = values.iter().copied().fold(0.0, f64::max).max(1.0);
    let bar = WIDTH / values.len().max(1) as f64;
    html! {
        svg.chart width=(WIDTH) height=(HEIGHT + 14.0) viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 14.0) } role="img" {
            title { "per hour, the last 24 hours, oldest on the left; highest " (format!("{max:.0}")) " " (unit) }
            @for (index, value) in values.iter().enumerate() {
                @let height = value / max * HEIGHT;
                rect x=(format!("{:.1}", index as f64 * bar + 1.0)) y=(format!("{:.1}", HEIGHT - height))
                     width=(format!("{:.1}", bar - 2.0)) height=(format!("{height:.1}")) {
                    title { (format!("{value:.0}")) " " (unit) }
                }
            }
            text x="2" y=(HEIGHT + 12.0) { "24 h ago" }
            text x=(WIDTH - 30.0) y=(HEIGHT + 12.0) { "now" }
            text x="2" y="10" { (format!("{max:.0}")) " " (unit) }
        }
    }
}

/// Each agent: how many results, when it last recorded one, and the
/// config it ran then.
fn agents(results: &[StoredResult]) -> Markup {
    let mut seen: BTreeMap<&str, (usize, &str, &str)> = BTreeMap::new();
    for result in results {
        let entry = seen.entry(result.agent.as_str()).or_insert((0, "", ""));
        entry.0 += 1;
        if result.recorded_at.as_str() > entry.1 {
            entry.1 = &result.recorded_at;
            entry.2 = &result.config;
        }
    }
    html! {
        @if seen.is_empty() { p { "None in the last 24 hours." } }
        @else {
            table id="agents" {
                tr { th { "Agent" } th { "Results" } th { "Last recorded" } th { "Config then" } }
                @for (agent, (count, last, config)) in &seen {
                    tr { td { (agent) } td { (count) } td { (last) } td { code { (config) } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes_ago: i64, now: OffsetDateTime, ms: f64) -> StoredResult {
        let when = now - time::Duration::minutes(minutes_ago);
        StoredResult {
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            sha256: None,
            result: "clean".into(),
            detail: String::new(),
            coverage: None,
            agent: "a".into(),
            config: String::new(),
            recorded_at: bucketscan_runtime::results::record::timestamp(when),
            duration_ms: Some(ms),
            report: String::new(),
            ..StoredResult::default()
        }
    }

    #[test]
    fn results_fall_in_their_hour_and_older_ones_out() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let results = [
            at(5, now, 10.0),
            at(20, now, 30.0),
            at(50, now, 20.0),
            at(90, now, 7.0),
            at(60 * 30, now, 1.0),
        ];
        let hours = per_hour(&results, now);
        assert_eq!(hours.len(), 24);
        assert_eq!(
            hours[23],
            Hour {
                count: 3,
                median_ms: 20.0
            }
        );
        assert_eq!(
            hours[22],
            Hour {
                count: 1,
                median_ms: 7.0
            }
        );
        assert_eq!(hours.iter().map(|h| h.count).sum::<usize>(), 4);
    }
}
