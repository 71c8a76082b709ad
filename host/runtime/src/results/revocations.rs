//! Revoked allow-list digests in the results table: the audit trail of
//! each revocation (who, when, why, from where) and the copy of it that an
//! older list object written back cannot undo. Agents read them at every
//! reload of the allow-list.
//!
//! One partition, `allow-list#revoked`, sorted by time: revocations are
//! few, and an agent reads them all. Items are written only if new, so a
//! writer of results cannot replace one; they carry no TTL.

use super::{ResultsStore, error_text, text_of};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::OffsetDateTime;

/// The partition every revocation is kept in.
const PARTITION: &str = "allow-list#revoked";

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRevocation {
    /// The digest no longer allowed.
    pub sha256: String,
    /// Who revoked it (the console's signed-in user, or the CLI's caller).
    pub by: String,
    pub reason: String,
    /// Where the request came from (the client's address, or `cli`).
    pub from: String,
    /// When, as results are timed (UTC, to the millisecond).
    pub at: String,
}

impl StoredRevocation {
    /// Longest reason kept: it is copied into every agent's memory and
    /// into the list object.
    pub const MAX_REASON_CHARS: usize = 500;

    /// A revocation of `sha256` made now.
    pub fn now(sha256: &str, by: &str, reason: &str, from: &str) -> Self {
        Self {
            sha256: sha256.to_ascii_lowercase(),
            by: by.to_owned(),
            reason: reason.chars().take(Self::MAX_REASON_CHARS).collect(),
            from: from.to_owned(),
            at: super::record::timestamp(OffsetDateTime::now_utc()),
        }
    }

    /// The note a `revoke` line of the list object carries.
    pub fn note(&self) -> String {
        format!("revoked by {} at {}: {}", self.by, self.at, self.reason)
    }

    fn item(&self, nonce: &str) -> HashMap<String, AttributeValue> {
        let s = |value: &str| AttributeValue::S(value.to_owned());
        HashMap::from([
            ("pk".to_owned(), s(PARTITION)),
            ("sk".to_owned(), s(&format!("{}#{}#{nonce}", self.at, self.sha256))),
            // Not `sha256`: that would put it in the index of results.
            ("revoked".to_owned(), s(&self.sha256)),
            ("by".to_owned(), s(&self.by)),
            ("reason".to_owned(), s(&self.reason)),
            ("from".to_owned(), s(&self.from)),
            ("recorded_at".to_owned(), s(&self.at)),
        ])
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let text = |name| text_of(item, name).unwrap_or_default();
        let sha256 = text_of(item, "revoked")?;
        bucketscan_core::allow::check_digest(&sha256).ok()?;
        Some(Self {
            sha256,
            by: text("by"),
            reason: text("reason"),
            from: text("from"),
            at: text("recorded_at"),
        })
    }
}

impl ResultsStore {
    /// Records `revocation`; a write that fails is returned, never
    /// retried here (the caller says so to whoever asked).
    pub async fn record_revocation(&self, revocation: &StoredRevocation) -> Result<(), String> {
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).map_err(|err| err.to_string())?;
        self.client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(revocation.item(&hex::encode(nonce))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(error_text)
    }

    /// Every revocation recorded, oldest first (read consistently, page
    /// by page). Items that are not a revocation are skipped.
    pub async fn revocations(&self) -> Result<Vec<StoredRevocation>, String> {
        let mut revocations = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.config.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(PARTITION.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(error_text)?;
            revocations.extend(page.items().iter().filter_map(StoredRevocation::from_item));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(revocations);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_back_as_the_revocation_and_anything_else_is_skipped() {
        let revocation = StoredRevocation::now(
            &"AB".repeat(32),
            "rel@example.com (console)",
            "a real sample",
            "10.0.0.7",
        );
        assert_eq!(revocation.sha256, "ab".repeat(32));
        let long = StoredRevocation::now(&"ab".repeat(32), "x", &"é".repeat(600), "cli");
        assert_eq!(long.reason.chars().count(), StoredRevocation::MAX_REASON_CHARS);
        let item = revocation.item("0a1b");
        assert_eq!(StoredRevocation::from_item(&item), Some(revocation.clone()));
        assert!(!item.contains_key("sha256"), "kept out of the results' SHA-256 index");
        assert!(!item.contains_key("expires_at"), "kept for good");
        let mut broken = item.clone();
        broken.insert("revoked".into(), AttributeValue::S("not-a-digest".into()));
        assert_eq!(StoredRevocation::from_item(&broken), None);
        assert!(
            revocation
                .note()
                .starts_with("revoked by rel@example.com (console) at ")
        );
        assert!(revocation.note().ends_with(": a real sample"));
    }
}
