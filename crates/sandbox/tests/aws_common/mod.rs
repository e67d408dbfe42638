#![allow(dead_code)]
//! Shared test harness: serve the sandbox on an ephemeral port and build official SDK clients.

use std::{sync::Arc, time::SystemTime};

use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandbox, AwsSandboxConfig};
use time::OffsetDateTime;

pub struct Harness {
    pub sb: Arc<AwsSandbox>,
    pub url: String,
    pub clock: ManualClock,
}

pub fn wall_now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

pub async fn start_with(mut config: AwsSandboxConfig, clock: ManualClock) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    config.public_base_url = url.clone();
    let sb = AwsSandbox::new(config, Arc::new(clock.clone())).unwrap();
    let router = sb.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Harness { sb, url, clock }
}

pub async fn start() -> Harness {
    start_with(AwsSandboxConfig::default(), ManualClock::new(wall_now())).await
}

pub const CLASSIC: &str = "mlsandboxclassic0000000001";
pub const CONCURRENT: &str = "mlsandboxconcurrent0000002";
pub const BUYER: &str = "444455556666";

pub fn metering(url: &str, secret: &str) -> aws_sdk_marketplacemetering::Client {
    use aws_sdk_marketplacemetering::config::{
        BehaviorVersion, Credentials, Region, retry::RetryConfig,
    };
    let conf = aws_sdk_marketplacemetering::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::from_keys("AKIASANDBOX", secret, None))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_marketplacemetering::Client::from_conf(conf)
}

pub fn metering_key(url: &str, key: &str) -> aws_sdk_marketplacemetering::Client {
    use aws_sdk_marketplacemetering::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_marketplacemetering::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::from_keys(key, "sandbox-secret", None))
        .endpoint_url(url)
        .build();
    aws_sdk_marketplacemetering::Client::from_conf(conf)
}

pub fn entitlement(url: &str) -> aws_sdk_marketplaceentitlement::Client {
    use aws_sdk_marketplaceentitlement::config::{
        BehaviorVersion, Credentials, Region, retry::RetryConfig,
    };
    let conf = aws_sdk_marketplaceentitlement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::from_keys(
            "AKIASANDBOX",
            "sandbox-secret",
            None,
        ))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_marketplaceentitlement::Client::from_conf(conf)
}

pub fn agreement(url: &str) -> aws_sdk_marketplaceagreement::Client {
    use aws_sdk_marketplaceagreement::config::{
        BehaviorVersion, Credentials, Region, retry::RetryConfig,
    };
    let conf = aws_sdk_marketplaceagreement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::from_keys(
            "AKIASANDBOX",
            "sandbox-secret",
            None,
        ))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_marketplaceagreement::Client::from_conf(conf)
}

pub fn sqs(url: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::from_keys(
            "AKIASANDBOX",
            "sandbox-secret",
            None,
        ))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}
