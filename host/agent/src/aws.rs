//! AWS SDK clients, configured the standard way: region, credentials and
//! `AWS_ENDPOINT_URL` from the environment or the default provider chain.

use aws_config::BehaviorVersion;

/// The clients the agent uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Clients {
    /// Loads the shared config from the environment. Path-style S3
    /// addressing is used when an endpoint override is set (local S3
    /// servers do not resolve bucket subdomains) or when asked for.
    pub async fn from_env(path_style: bool) -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let path_style = path_style || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3_config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&shared),
            sns: aws_sdk_sns::Client::new(&shared),
        }
    }
}
