#![allow(dead_code)]
//! Shared test harness: serve the sandbox on an ephemeral port, build official SDK clients, and
//! send raw (independently signed) requests.

use std::{sync::Arc, time::SystemTime};

use aws_sdk_marketplacemetering::{primitives::DateTime, types::UsageRecord};
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

pub fn record(customer: &str, dim: &str, qty: i32, at: time::OffsetDateTime) -> UsageRecord {
    UsageRecord::builder()
        .customer_identifier(customer)
        .dimension(dim)
        .quantity(qty)
        .timestamp(DateTime::from_secs(at.unix_timestamp()))
        .build()
        .unwrap()
}

pub async fn raw_post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<axum::body::Bytes>>();
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(axum::body::Bytes::copy_from_slice(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn raw_get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<axum::body::Bytes>>();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Sign a raw request with the independent `aws-sigv4` crate (what boto3 / older SDKs send).
pub fn sigv4_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
) -> Vec<(String, String)> {
    use aws_sigv4::{
        http_request::{SignableBody, SignableRequest, SigningSettings, sign},
        sign::v4,
    };
    use aws_smithy_runtime_api::client::identity::Identity;
    let identity: Identity =
        aws_credential_types::Credentials::from_keys("AKIASANDBOX", "sandbox-secret", None).into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("host", &host));
    let signable = SignableRequest::new(
        "POST",
        url,
        all.clone().into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    out
}

/// A raw awsJson1.0 call of the Agreement API (what boto3 sends), signed independently.
pub async fn agreement_json(
    h: &Harness,
    op: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = body.to_string();
    let target = format!("AWSMPCommerceService_v20200301.{op}");
    let headers = sigv4_headers(
        &format!("{}/", h.url),
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", &target),
        ],
        body.as_bytes(),
        "aws-marketplace",
    );
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, text) = raw_post(&h.url, "/", &refs, body.as_bytes()).await;
    (status, serde_json::from_str(&text).unwrap())
}

/// Every message now visible on a queue, received and deleted (bodies parsed as JSON).
pub async fn drain(h: &Harness, queue_url: &str) -> Vec<serde_json::Value> {
    let sqs = sqs(&h.url);
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// The detail-types of EventBridge events, in order.
pub fn detail_types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap().to_owned())
        .collect()
}

pub fn clock_now(h: &Harness) -> time::OffsetDateTime {
    use marketlink_core::Clock;
    h.clock.now()
}
