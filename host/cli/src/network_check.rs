//! `bucketscan check --network`: can this task reach every AWS endpoint
//! its config needs? One harmless call per queue, topic, bus, table and
//! bucket, each with a deadline. A call that got an answer — even a
//! refusal — reached its endpoint; one that could not connect, or heard
//! nothing in time, did not, and is named with the endpoint it tried: in
//! a private subnet that is the VPC endpoint (or route) that is missing.

use bucketscan_runtime::aws::{Clients, error_text};
use bucketscan_runtime::config::Config;
use std::future::Future;
use std::time::Duration;

/// What one call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reached,
    /// Reached, and refused (permissions, a missing resource): the
    /// network is fine, the call is not.
    Refused(String),
    Unreachable(String),
}

/// One call to one service.
pub struct Probe {
    pub service: &'static str,
    pub what: String,
    pub endpoint: String,
    pub outcome: Outcome,
}

/// Every endpoint the config's sections name, probed in turn.
pub async fn probe_all(config: &Config, clients: &Clients, deadline: Duration) -> Vec<Probe> {
    let mut probes = Vec::new();
    let sts = clients.sts.get_caller_identity().send();
    probes.push(probe("sts", "GetCallerIdentity".into(), deadline, sts).await);
    for queue in config.agent.queues.iter().chain(&config.agent.sweep_queues) {
        let call = clients.sqs.get_queue_attributes().queue_url(queue).send();
        probes.push(probe("sqs", format!("GetQueueAttributes {queue}"), deadline, call).await);
    }
    if let Some(topic) = &config.notifications.topic_arn {
        let call = clients.sns.get_topic_attributes().topic_arn(topic).send();
        probes.push(probe("sns", format!("GetTopicAttributes {topic}"), deadline, call).await);
    }
    if let Some(bus) = &config.notifications.event_bus {
        let call = clients.events.describe_event_bus().name(bus).send();
        probes.push(probe("events", format!("DescribeEventBus {bus}"), deadline, call).await);
    }
    if let Some(results) = &config.results {
        let call = clients.dynamodb.describe_table().table_name(&results.table).send();
        probes.push(probe("dynamodb", format!("DescribeTable {}", results.table), deadline, call).await);
    }
    for bucket in buckets(config) {
        let call = clients.s3_for(&bucket).head_bucket().bucket(&bucket).send();
        probes.push(probe("s3", format!("HeadBucket {bucket}"), deadline, call).await);
    }
    probes
}

/// The buckets S3 requests name: declared ones (not `api-only`) and the
/// signature bucket.
fn buckets(config: &Config) -> Vec<String> {
    let declared = config
        .buckets
        .iter()
        .filter(|(_, b)| !b.api_only)
        .map(|(name, _)| name.clone());
    let signatures = config.signatures.as_ref().and_then(|s| s.bucket.clone());
    let mut all: Vec<String> = declared.chain(signatures).collect();
    all.sort();
    all.dedup();
    all
}

async fn probe<T, E, R>(
    service: &'static str,
    what: String,
    deadline: Duration,
    call: impl Future<Output = Result<T, aws_sdk_s3::error::SdkError<E, R>>>,
) -> Probe
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    let outcome = match tokio::time::timeout(deadline, call).await {
        Err(_) => Outcome::Unreachable(format!("no answer within {} s", deadline.as_secs())),
        Ok(Ok(_)) => Outcome::Reached,
        Ok(Err(err @ (SdkError::ServiceError(_) | SdkError::ResponseError(_)))) => refused(error_text(&err)),
        Ok(Err(err)) => Outcome::Unreachable(error_text(&err)),
    };
    Probe {
        service,
        what,
        endpoint: endpoint_of(service),
        outcome,
    }
}

/// A refusal; one by a VPC endpoint's policy is a way that is closed.
fn refused(why: String) -> Outcome {
    match why.contains("VPC endpoint") {
        true => Outcome::Unreachable(format!("refused by the VPC endpoint's policy: {why}")),
        false => Outcome::Refused(why),
    }
}

/// The endpoint the SDK calls for `service`: its own override, the
/// global one, or the regional public name (which a VPC endpoint with
/// private DNS answers inside the VPC).
fn endpoint_of(service: &str) -> String {
    let variable = format!(
        "AWS_ENDPOINT_URL_{}",
        service.to_uppercase().replace("EVENTS", "EVENTBRIDGE")
    );
    std::env::var(variable)
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            let region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "REGION".into());
            format!("https://{service}.{region}.amazonaws.com")
        })
}

/// The report, one line per call; whether every endpoint was reached.
pub fn report(probes: &[Probe]) -> (String, bool) {
    let mut text = String::new();
    for probe in probes {
        let (mark, detail) = match &probe.outcome {
            Outcome::Reached => ("ok", String::new()),
            Outcome::Refused(why) => ("ok (reached; refused)", format!(": {why}")),
            Outcome::Unreachable(why) => ("UNREACHABLE", format!(": {why}")),
        };
        text.push_str(&format!(
            "  {mark:<22} {:<9} {} via {}{detail}\n",
            probe.service, probe.what, probe.endpoint
        ));
    }
    let unreachable: Vec<&str> = probes
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Unreachable(_)))
        .map(|p| p.service)
        .collect();
    if !unreachable.is_empty() {
        let mut services = unreachable.clone();
        services.sort();
        services.dedup();
        text.push_str(&format!(
            "  cannot reach {}: in private subnets, each needs a VPC endpoint (gateway for s3 and dynamodb) \
             with private DNS, and a security group letting this task's HTTPS in\n",
            services.join(", ")
        ));
    }
    text.push_str(
        "  (ECR, Secrets Manager or SSM, and CloudWatch Logs are reached by ECS for the task, before it runs)\n",
    );
    (text, unreachable.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(service: &'static str, outcome: Outcome) -> Probe {
        Probe {
            service,
            what: "Call x".into(),
            endpoint: "https://e".into(),
            outcome,
        }
    }

    #[test]
    fn the_report_names_what_cannot_be_reached_and_a_refusal_is_no_network_failure() {
        let (text, all) = report(&[
            probe("sts", Outcome::Reached),
            probe("s3", Outcome::Refused("AccessDenied: no".into())),
        ]);
        assert!(all, "{text}");
        assert!(
            text.contains("ok (reached; refused)  s3        Call x via https://e: AccessDenied: no"),
            "{text}"
        );
        let (text, all) = report(&[
            probe("sqs", Outcome::Unreachable("dispatch failure".into())),
            probe("sqs", Outcome::Unreachable("dispatch failure".into())),
        ]);
        assert!(!all);
        assert!(
            text.contains("UNREACHABLE            sqs       Call x via https://e: dispatch failure"),
            "{text}"
        );
        assert!(text.contains("cannot reach sqs: in private subnets"), "{text}");
        let denied =
            "AccessDenied: User is not authorized because no VPC endpoint policy allows the s3:ListBucket action";
        assert!(
            matches!(refused(denied.into()), Outcome::Unreachable(why) if why.starts_with("refused by the VPC endpoint's policy"))
        );
        assert_eq!(
            refused("AccessDenied: no".into()),
            Outcome::Refused("AccessDenied: no".into())
        );
    }
}
