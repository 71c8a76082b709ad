//! `[organization]` and `[accounts]`: buckets of member accounts, protected
//! by a tag rather than listed one by one.
//!
//! ```toml
//! [organization]
//! role-name = "bucketscan-scanner"     # the member template's role, same in every account
//! external-id = "…"
//!
//! [accounts."111122223333"]            # that account's tagged buckets
//! [[accounts."111122223333".stages]]
//! plugin = "clamav-bridge"
//! grants = { clamav = true }
//!
//! [accounts."*"]                       # any other account the central bus accepts
//! ```
//!
//! An event forwarded by EventBridge names the account that owns its
//! bucket. A bucket not under `[buckets]` whose account has an entry here
//! is scanned by that entry's pipeline once its tag `bucketscan:protect` says `true`:
//! the agent then *enrolls* it ([`Enrolled`]), and every lookup by bucket
//! name finds the account's pipeline, its role and its owner.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// `[organization]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OrganizationConfig {
    /// The role the member template creates in every account.
    pub role_name: String,
    /// The external ID its trust policy requires.
    pub external_id: Option<String>,
    /// How long a bucket's tag answer is trusted before it is read again.
    #[serde(default = "default_tag_check_secs")]
    pub tag_check_secs: u64,
    /// The ARN partition of the member roles (`aws`, `aws-us-gov`, `aws-cn`).
    #[serde(default = "default_partition")]
    pub partition: String,
}

fn default_tag_check_secs() -> u64 {
    60
}

fn default_partition() -> String {
    "aws".into()
}

/// The bucket tag that opts a member bucket in (its value must be `true`);
/// the member template's role reaches exactly the buckets carrying it.
pub const PROTECT_TAG: &str = "bucketscan:protect";

/// The `[accounts]` key that stands for every account without its own.
pub const ANY_ACCOUNT: &str = "*";

impl OrganizationConfig {
    /// The role to assume in `account` (12 digits).
    pub fn role_arn(&self, account: &str) -> String {
        format!("arn:{}:iam::{account}:role/{}", self.partition, self.role_name)
    }
}

/// Whether `text` is an AWS account ID.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Member-account buckets enrolled at run time: bucket → owning account.
/// Shared by every config the agent loads (a reload keeps them), by its
/// S3 clients and by its store, so that a lookup by bucket name answers
/// for an enrolled bucket as for a declared one.
#[derive(Debug, Clone, Default)]
pub struct Enrolled(Arc<RwLock<HashMap<String, String>>>);

impl Enrolled {
    /// The account `bucket` was enrolled from.
    pub fn account_of(&self, bucket: &str) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(bucket).cloned()
    }

    /// Enrolls `bucket` as `account`'s (after its tag said so). It stays
    /// enrolled when the tag goes: whether its events are scanned is asked
    /// again at each ([`Enrolled`] only says whose bucket it is).
    pub fn enroll(&self, bucket: &str, account: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bucket.to_owned(), account.to_owned());
    }
}
