//! Claims: work the fleet must do once, whichever agent gets to it first
//! (a retro-scan per database version). A claim is an item of the results
//! table (`pk` = `claim#ID`, outside every index), taken with a
//! conditional write. Its holder renews a lease while it works; a claim
//! whose holder died (lease run out, not done) can be taken over, so a
//! task stopped mid-way loses nothing.

use super::{ResultsStore, error_text, text_of};
use aws_sdk_dynamodb::types::AttributeValue;
use std::time::Duration;
use time::OffsetDateTime;

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This agent holds it now.
    Taken,
    /// Done, by some agent.
    Done { by: String },
    /// Another agent holds it, its lease still running.
    Held { by: String },
}

const SK: &str = "claim";
const DONE: &str = "done";
const RUNNING: &str = "running";

fn pk(id: &str) -> String {
    format!("claim#{id}")
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl ResultsStore {
    /// Takes claim `id` for `lease` (unless it is done, or held by an
    /// agent whose lease runs).
    pub async fn claim(&self, id: &str, lease: Duration) -> Result<Claim, String> {
        let now = now_secs();
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let put = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .item("pk", s(&pk(id)))
            .item("sk", s(SK))
            .item("state", s(RUNNING))
            .item("agent", s(&self.agent_id))
            .item(
                "lease_until",
                AttributeValue::N((now + lease.as_secs() as i64).to_string()),
            )
            .item("started_at", s(&super::record::timestamp(OffsetDateTime::now_utc())))
            .condition_expression("attribute_not_exists(pk) OR (#state <> :done AND lease_until < :now)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s(DONE))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Taken),
            Err(err) if is_condition_failure(&err) => self.holder(id).await,
            Err(err) => Err(error_text(err)),
        }
    }

    /// Extends this agent's lease on `id`; an error when it lost the claim.
    pub async fn renew(&self, id: &str, lease: Duration) -> Result<(), String> {
        let until = now_secs() + lease.as_secs() as i64;
        self.update_own(
            id,
            "SET lease_until = :until",
            (":until", AttributeValue::N(until.to_string())),
        )
        .await
    }

    /// Gives up this agent's claim on `id` (its work failed): the next
    /// attempt, here or elsewhere, may take it at once.
    pub async fn release(&self, id: &str) -> Result<(), String> {
        self.update_own(id, "SET lease_until = :zero", (":zero", AttributeValue::N("0".into())))
            .await
    }

    /// Marks `id` done, with a line saying what was done.
    pub async fn finish(&self, id: &str, summary: &str) -> Result<(), String> {
        self.update_own(
            id,
            "SET #state = :done_now, summary = :summary",
            (":summary", AttributeValue::S(summary.to_owned())),
        )
        .await
    }

    async fn update_own(&self, id: &str, update: &str, value: (&str, AttributeValue)) -> Result<(), String> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk(id)))
            .key("sk", AttributeValue::S(SK.to_owned()))
            .update_expression(update)
            .condition_expression("#agent = :me")
            .expression_attribute_names("#agent", "agent")
            .expression_attribute_values(":me", AttributeValue::S(self.agent_id.clone()))
            .expression_attribute_values(value.0, value.1);
        if update.contains("#state") {
            request = request
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":done_now", AttributeValue::S(DONE.to_owned()));
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(format!("claim {id}: taken over by another agent")),
            Err(err) => Err(error_text(err)),
        }
    }

    /// Who holds `id`, and whether it is done.
    async fn holder(&self, id: &str) -> Result<Claim, String> {
        let item = self.get_item(&pk(id), SK).await?;
        let by = text_of(&item, "agent").unwrap_or_default();
        Ok(match text_of(&item, "state").unwrap_or_default().as_str() {
            DONE => Claim::Done { by },
            _ => Claim::Held { by },
        })
    }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}
