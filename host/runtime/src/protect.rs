//! `bucketscan protect` / `unprotect`: add or remove the bucket's event
//! notification to the agent's queue, leaving every other notification of
//! the bucket as it was, so teardown leaves nothing behind.

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
    S3KeyFilter,
};

/// The id our notification carries; `unprotect` removes only this one.
pub const NOTIFICATION_ID: &str = "bucketscan";

/// A bucket's or queue's notification setup that could not be read or
/// written: what was being done, and what AWS said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{doing}: {detail}")]
pub struct ProtectError {
    pub doing: String,
    pub detail: String,
}

fn failed(doing: String, detail: impl std::fmt::Display) -> ProtectError {
    ProtectError {
        doing,
        detail: detail.to_string(),
    }
}

async fn current(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<NotificationConfiguration, ProtectError> {
    let out = s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|err| {
            failed(
                format!("reading s3://{bucket} notifications"),
                crate::aws::error_text(&err),
            )
        })?;
    Ok(NotificationConfiguration::builder()
        .set_queue_configurations(out.queue_configurations)
        .set_topic_configurations(out.topic_configurations)
        .set_lambda_function_configurations(out.lambda_function_configurations)
        .set_event_bridge_configuration(out.event_bridge_configuration)
        .build())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, config: NotificationConfiguration) -> Result<(), ProtectError> {
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config)
        .send()
        .await
        .map_err(|err| {
            failed(
                format!("writing s3://{bucket} notifications"),
                crate::aws::error_text(&err),
            )
        })?;
    Ok(())
}

/// The ARN of a queue given by URL.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String, ProtectError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|err| failed(format!("looking up {queue_url}"), crate::aws::error_text(&err)))?;
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| failed(format!("looking up {queue_url}"), "it has no QueueArn"))
}

/// Sends the bucket's `s3:ObjectCreated:*` events (under `prefix`) to the
/// queue. Idempotent: an earlier bucketscan notification is replaced.
pub async fn protect(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    queue_arn: &str,
    prefix: Option<&str>,
) -> Result<(), ProtectError> {
    let config = current(s3, bucket).await?;
    let mut queues: Vec<QueueConfiguration> = config
        .queue_configurations()
        .iter()
        .filter(|q| q.id() != Some(NOTIFICATION_ID))
        .cloned()
        .collect();
    let mut ours = QueueConfiguration::builder()
        .id(NOTIFICATION_ID)
        .queue_arn(queue_arn)
        .events(Event::from("s3:ObjectCreated:*"));
    if let Some(prefix) = prefix {
        ours = ours.filter(
            NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .filter_rules(FilterRule::builder().name(FilterRuleName::Prefix).value(prefix).build())
                        .build(),
                )
                .build(),
        );
    }
    queues.push(
        ours.build()
            .map_err(|err| failed(format!("building s3://{bucket}'s notification"), err))?,
    );
    put(s3, bucket, with_queues(config, queues)).await
}

/// Removes bucketscan's notification; returns whether there was one.
pub async fn unprotect(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, ProtectError> {
    let config = current(s3, bucket).await?;
    let before = config.queue_configurations().len();
    let queues: Vec<QueueConfiguration> = config
        .queue_configurations()
        .iter()
        .filter(|q| q.id() != Some(NOTIFICATION_ID))
        .cloned()
        .collect();
    let removed = queues.len() != before;
    if removed {
        put(s3, bucket, with_queues(config, queues)).await?;
    }
    Ok(removed)
}

/// `config` with its queue notifications replaced, everything else kept.
fn with_queues(config: NotificationConfiguration, queues: Vec<QueueConfiguration>) -> NotificationConfiguration {
    NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .set_topic_configurations(config.topic_configurations)
        .set_lambda_function_configurations(config.lambda_function_configurations)
        .set_event_bridge_configuration(config.event_bridge_configuration)
        .build()
}
