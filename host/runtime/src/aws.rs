//! AWS SDK clients, configured the standard way: region, credentials and
//! `AWS_ENDPOINT_URL` from the environment or the default provider chain.
//! Buckets with a `role-arn` get their own S3 client whose credentials come
//! from STS AssumeRole; the SDK caches them and refreshes them before they
//! expire.

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use bucketscan_core::config::{BucketConfig, Enrolled, OrganizationConfig};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The first-byte timeout of clients built without a config (the CLI's
/// one-off commands); the agent's comes from `[agent]`.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared SDK config: the standard chain, and a limit on how long a
/// request may wait for its answer to start (a stalled S3 request is
/// retried, not waited on for ever).
async fn shared_config(first_byte_timeout: Duration) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .read_timeout(first_byte_timeout)
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// The clients the agent uses.
#[derive(Clone, Debug)]
pub struct Clients {
    /// S3 with the agent's own credentials.
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    /// The results table (`[results]`).
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sts: aws_sdk_sts::Client,
    /// S3 clients for buckets reached through an assumed role.
    per_bucket: Arc<HashMap<String, aws_sdk_s3::Client>>,
    /// Member accounts' S3 clients, made the first time each is needed.
    members: MemberClients,
}

/// The S3 clients of member accounts (`[organization]`): one per account,
/// through the role the member template created there, for the buckets
/// enrolled from it.
#[derive(Clone, Debug, Default)]
struct MemberClients {
    organization: Option<Arc<OrganizationConfig>>,
    enrolled: Enrolled,
    shared: Option<SdkConfig>,
    path_style: bool,
    by_account: Arc<RwLock<HashMap<String, aws_sdk_s3::Client>>>,
}

fn s3_client(shared: &SdkConfig, path_style: bool) -> aws_sdk_s3::config::Builder {
    let path_style = path_style || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    aws_sdk_s3::config::Builder::from(shared).force_path_style(path_style)
}

impl Clients {
    /// Loads the shared config from the environment. Path-style S3
    /// addressing is used when an endpoint override is set (local S3
    /// servers do not resolve bucket subdomains) or when asked for.
    pub async fn from_env(path_style: bool) -> Self {
        let shared = shared_config(DEFAULT_FIRST_BYTE_TIMEOUT).await;
        Self::from_shared(&shared, path_style, HashMap::new())
    }

    /// Every client from one shared config, with the per-role S3 clients.
    fn from_shared(shared: &SdkConfig, path_style: bool, per_bucket: HashMap<String, aws_sdk_s3::Client>) -> Self {
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_client(shared, path_style).build()),
            sqs: aws_sdk_sqs::Client::new(shared),
            sns: aws_sdk_sns::Client::new(shared),
            events: aws_sdk_eventbridge::Client::new(shared),
            dynamodb: aws_sdk_dynamodb::Client::new(shared),
            sts: aws_sdk_sts::Client::new(shared),
            per_bucket: Arc::new(per_bucket),
            members: MemberClients {
                shared: Some(shared.clone()),
                path_style,
                ..MemberClients::default()
            },
        }
    }

    /// Lets these clients reach member accounts' enrolled buckets.
    pub fn with_organization(mut self, organization: Option<OrganizationConfig>, enrolled: Enrolled) -> Self {
        self.members.organization = organization.map(Arc::new);
        self.members.enrolled = enrolled;
        self
    }

    /// The S3 client of member `account`, through its role; `None`
    /// without `[organization]`. Made anew until one has worked
    /// ([`keep_member_s3`](Self::keep_member_s3)): an account named by an
    /// event whose role does not answer costs nothing kept.
    pub async fn member_s3(&self, account: &str) -> Option<aws_sdk_s3::Client> {
        let members = &self.members;
        let organization = members.organization.as_ref()?;
        if let Some(client) = members
            .by_account
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(account)
        {
            return Some(client.clone());
        }
        let shared = members.shared.as_ref()?;
        let role = organization.role_arn(account);
        Some(assumed_role_client(shared, members.path_style, &role, organization.external_id.as_deref()).await)
    }

    /// Keeps the client of a member account whose role answered.
    pub fn keep_member_s3(&self, account: &str, client: aws_sdk_s3::Client) {
        let mut clients = self.members.by_account.write().unwrap_or_else(|e| e.into_inner());
        clients.entry(account.to_owned()).or_insert(client);
    }

    /// The agent's own clients, plus an S3 client per bucket that names a
    /// role to assume (`[buckets.NAME] role-arn`).
    pub async fn for_buckets(
        buckets: &BTreeMap<String, BucketConfig>,
        path_style: bool,
        first_byte_timeout: Duration,
    ) -> Self {
        let shared = shared_config(first_byte_timeout).await;
        let mut per_bucket = HashMap::new();
        for (bucket, bucket_config) in buckets {
            let Some(role_arn) = &bucket_config.role_arn else {
                continue;
            };
            let client = assumed_role_client(&shared, path_style, role_arn, bucket_config.external_id.as_deref()).await;
            per_bucket.insert(bucket.clone(), client);
        }
        Self::from_shared(&shared, path_style, per_bucket)
    }

    /// The S3 client to use for `bucket`: its role's, its member account's
    /// once enrolled, else the agent's own.
    pub fn s3_for(&self, bucket: &str) -> aws_sdk_s3::Client {
        if let Some(client) = self.per_bucket.get(bucket) {
            return client.clone();
        }
        let member = self.members.enrolled.account_of(bucket).and_then(|account| {
            let clients = self.members.by_account.read().unwrap_or_else(|e| e.into_inner());
            clients.get(&account).cloned()
        });
        member.unwrap_or_else(|| self.s3.clone())
    }
}

/// An S3 client whose credentials come from assuming `role_arn`; the SDK
/// caches them and refreshes them before they expire.
async fn assumed_role_client(
    shared: &SdkConfig,
    path_style: bool,
    role_arn: &str,
    external_id: Option<&str>,
) -> aws_sdk_s3::Client {
    let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("bucketscan")
        .configure(shared);
    if let Some(external_id) = external_id {
        role = role.external_id(external_id);
    }
    let credentials = role.build().await;
    let conf = s3_client(shared, path_style).credentials_provider(credentials).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An AWS SDK error in one line for logs, reports and alerts: the
/// service's code and message when it answered — not the SDK's dump of
/// the raw response, which runs to kilobytes of headers and body — else
/// the error's chain (timeouts, connection failures), capped.
pub fn error_text<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    const MAX: usize = 512;
    if let SdkError::ServiceError(service) = err
        && let Some(code) = service.err().code()
    {
        let text = match service.err().message() {
            Some(message) if !message.is_empty() => format!("{code}: {message}"),
            _ => code.to_owned(),
        };
        return bucketscan_core::text::cap(&text, MAX);
    }
    bucketscan_core::text::cap(&aws_sdk_s3::error::DisplayErrorContext(err).to_string(), MAX)
}
