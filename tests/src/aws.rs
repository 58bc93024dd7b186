//! AWS SDK clients (SQS, SNS) pointed at a gateway's HTTP listener.

use std::net::SocketAddr;

use aws_credential_types::Credentials;
pub use aws_sdk_sns as sns;
pub use aws_sdk_sqs as sqs;

/// Region the test clients use.
pub const REGION: &str = "us-east-1";

fn credentials() -> Credentials {
    Credentials::new("AKIDTETHERTEST", "tether-test-secret", None, None, "tests")
}

/// An SQS client for the gateway at `http`.
pub fn sqs_client(http: SocketAddr) -> sqs::Client {
    let conf = sqs::Config::builder()
        .behavior_version(sqs::config::BehaviorVersion::latest())
        .region(sqs::config::Region::new(REGION))
        .endpoint_url(format!("http://{http}"))
        .credentials_provider(credentials())
        .build();
    sqs::Client::from_conf(conf)
}

/// An SNS client for the gateway at `http`.
pub fn sns_client(http: SocketAddr) -> sns::Client {
    let conf = sns::Config::builder()
        .behavior_version(sns::config::BehaviorVersion::latest())
        .region(sns::config::Region::new(REGION))
        .endpoint_url(format!("http://{http}"))
        .credentials_provider(credentials())
        .build();
    sns::Client::from_conf(conf)
}

/// The access key id and secret the test clients sign with.
pub fn test_keys() -> (&'static str, &'static str) {
    ("AKIDTETHERTEST", "tether-test-secret")
}
