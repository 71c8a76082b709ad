//! Member accounts' buckets (`[organization]`, `[accounts]`): an event
//! EventBridge forwarded from a member account may name a bucket the
//! config does not declare. It is scanned by the account's pipeline when
//! the bucket's tag `bucketscan:protect` says `true` — read through the account's role,
//! from the account that must own the bucket, and trusted for
//! `tag-check-secs` — so a bucket is protected by tagging it.

use crate::aws::Clients;
use bucketscan_core::config::{Enrolled, OrganizationConfig, PROTECT_TAG, PipelinesConfig};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether a member account's event is to be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The bucket is enrolled: its account's pipeline scans it.
    Protected,
    /// Not to be scanned, and why (the message is done with).
    NotProtected(String),
}

/// The tag answers of member buckets, and the enrolment they lead to.
pub struct Organization {
    config: OrganizationConfig,
    enrolled: Enrolled,
    /// Bucket → (owning account, protected, when read).
    answers: Mutex<HashMap<String, (String, bool, Instant)>>,
}

/// How long "not tagged" is believed: briefly, so that an upload right
/// after the bucket was tagged is not dropped on an old answer.
const NOT_TAGGED_SECS: u64 = 5;

/// Answers kept at most; past it, those too old to be used go.
const MAX_ANSWERS: usize = 10_000;

impl Organization {
    pub fn new(config: OrganizationConfig, enrolled: Enrolled) -> Self {
        Self {
            config,
            enrolled,
            answers: Mutex::default(),
        }
    }

    /// Whether `bucket`'s event from `account` is scanned. `Err` when the
    /// tag could not be read (the message waits for another try: an
    /// account whose role is missing must not lose its uploads).
    pub async fn admit(
        &self,
        clients: &Clients,
        pipelines: &PipelinesConfig,
        bucket: &str,
        account: &str,
    ) -> Result<Admission, String> {
        if pipelines.account_config(account).is_none() {
            return Ok(Admission::NotProtected(format!(
                "bucket `{bucket}` of account {account}: the account has no [accounts] entry (and no \"*\")"
            )));
        }
        let protected = match self.fresh_answer(bucket, account) {
            Some(protected) => protected,
            None => {
                let protected = self.read_tag(clients, bucket, account).await?;
                self.remember(bucket, account, protected);
                protected
            }
        };
        if !protected {
            return Ok(Admission::NotProtected(format!(
                "bucket `{bucket}` of account {account} is not tagged {PROTECT_TAG}=true: not protected"
            )));
        }
        self.enrolled.enroll(bucket, account);
        Ok(Admission::Protected)
    }

    fn fresh_answer(&self, bucket: &str, account: &str) -> Option<bool> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (owner, protected, at) = answers.get(bucket)?;
        let fresh = at.elapsed() < self.lifetime(*protected);
        (fresh && owner == account).then_some(*protected)
    }

    fn lifetime(&self, protected: bool) -> Duration {
        match protected {
            true => Duration::from_secs(self.config.tag_check_secs),
            false => Duration::from_secs(NOT_TAGGED_SECS.min(self.config.tag_check_secs)),
        }
    }

    fn remember(&self, bucket: &str, account: &str, protected: bool) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= MAX_ANSWERS {
            answers.retain(|_, (_, protected, at)| at.elapsed() < self.lifetime(*protected));
        }
        answers.insert(bucket.to_owned(), (account.to_owned(), protected, Instant::now()));
    }

    /// The bucket's protect tag, read through the account's role from the
    /// account that must own it: a bucket of another account answers
    /// `AccessDenied`, never its tags.
    async fn read_tag(&self, clients: &Clients, bucket: &str, account: &str) -> Result<bool, String> {
        let s3 = clients
            .member_s3(account)
            .await
            .ok_or_else(|| "[organization] is not configured".to_owned())?;
        let answer = Self::get_tags(&s3, bucket, account).await;
        if answer.is_ok() {
            // The role works: keep its client for this account's buckets.
            clients.keep_member_s3(account, s3);
        }
        match answer {
            // Exactly `true`: the member role's tag condition compares so.
            Ok(tagging) => Ok(tagging
                .tag_set()
                .iter()
                .any(|tag| tag.key() == PROTECT_TAG && tag.value() == "true")),
            Err(err) if err.as_service_error().and_then(|e| e.meta().code()) == Some("NoSuchTagSet") => Ok(false),
            Err(err) => Err(format!(
                "reading the tags of bucket `{bucket}` through {}: {}",
                self.config.role_arn(account),
                crate::aws::error_text(&err)
            )),
        }
    }

    async fn get_tags(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        account: &str,
    ) -> Result<
        aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingOutput,
        aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingError>,
    > {
        s3.get_bucket_tagging()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organization(tag_check_secs: u64) -> Organization {
        let config = OrganizationConfig {
            role_name: "bucketscan-scanner".into(),
            external_id: None,
            tag_check_secs,
            partition: "aws".into(),
        };
        Organization::new(config, Enrolled::default())
    }

    #[test]
    fn a_tag_answer_holds_for_its_time_and_its_account_only() {
        let organization = organization(60);
        assert_eq!(organization.fresh_answer("uploads", "111122223333"), None);
        organization.remember("uploads", "111122223333", true);
        assert_eq!(organization.fresh_answer("uploads", "111122223333"), Some(true));
        // The same name from another account is another bucket (deleted
        // and re-created elsewhere): asked again.
        assert_eq!(organization.fresh_answer("uploads", "444455556666"), None);
        organization.remember("uploads", "111122223333", false);
        assert_eq!(organization.fresh_answer("uploads", "111122223333"), Some(false));
        assert_eq!(organization.lifetime(false), Duration::from_secs(NOT_TAGGED_SECS));
    }

    #[test]
    fn an_old_tag_answer_is_asked_again() {
        let organization = organization(1);
        organization.remember("uploads", "111122223333", true);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(organization.fresh_answer("uploads", "111122223333"), None);
    }
}
