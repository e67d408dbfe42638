//! marketlink-aws: the AWS Marketplace adapter behind `MarketplaceProvider`.
//!
//! This file holds the wiring: [`AwsProvider`] and its constructor, the inbound endpoints and
//! channels. `provider` implements the trait by handing each call to one module per AWS API:
//! - `resolve`: landing tokens through `ResolveCustomer`; for EventBridge listings the free
//!   trial and term come from the Agreement API (`agreement`: DescribeAgreement,
//!   GetAgreementTerms).
//! - `metering`: `BatchMeterUsage`, grouped by product, at most 25 records a call, outcomes in
//!   input order.
//! - `entitlement`: `GetEntitlements` (all pages).
//! - `events`: SNS envelopes over HTTP (`/aws/sns`, channel `sns-http`) or SQS (`sqs`),
//!   signature-verified (`sns`); EventBridge events over SQS (`sqs`) or an API destination
//!   (`/aws/events`, channel `eventbridge-http`, shared-secret header); both interpreted into
//!   domain events. `sqs` pulls and deletes queued messages.
//! - `diagnose` (`marketlink doctor`): the credential source, GetEntitlements per product code,
//!   GetQueueAttributes per queue, notification channel configuration, failures explained in
//!   plain words.
//! - `survey` (reconciliation): GetEntitlements per known subscription, and its agreement's
//!   status (`agreement_status`: SearchAgreements per product, GetAgreementEntitlements).
//!
//! The marketplace's rules (`MarketplaceProvider::rules`) are declared in `provider`.
//!
//! Every AWS call goes through the official SDK clients with an optional endpoint override, so
//! the same code runs against the marketlink sandbox and real AWS. SDK retries are off: the
//! adapter retries retryable failures itself (`max_attempts`, exponential backoff from
//! `initial_backoff_ms`) and then returns `ProviderError::Retryable`.
//!
//! **Credentials** (`credentials`, ADR 0013): static keys from `[aws.credentials]` when given
//! (the sandbox's `AKIASANDBOX`, an IAM user), else the standard AWS chain of `aws-config`
//! (environment, shared profile and SSO, web identity, container, EC2 instance metadata). All
//! clients share one credentials cache, which refreshes temporary credentials before they
//! expire.
//!
//! **Regions.** Metering uses `region`; GetEntitlements and the Agreement API use
//! `entitlement_region` (us-east-1); each SQS queue is called in the region its URL names
//! (`sqs::SqsClients`).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agreement;
mod agreement_status;
pub mod config;
mod credentials;
mod diagnose;
mod entitlement;
mod errors;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod metering;
mod provider;
mod refs;
mod resolve;
pub mod sns;
mod sqs;
mod survey;

use std::{sync::Arc, time::Duration};

pub use config::{
    AwsConfig, IdentityMode, NotificationMode, ProductConfig, Secret, StaticCredentials,
};
use errors::RetryPolicy;
use marketlink_core::{Clock, InboundEndpoint, ProviderError};

/// HTTP endpoints the web front end mounts for AWS.
pub const INBOUND_ENDPOINTS: &[InboundEndpoint] = &[
    InboundEndpoint {
        path: "/aws/sns",
        channel: CHANNEL_SNS_HTTP,
    },
    InboundEndpoint {
        path: "/aws/events",
        channel: CHANNEL_EVENTBRIDGE_HTTP,
    },
];

/// SNS HTTP(S) subscription deliveries.
pub const CHANNEL_SNS_HTTP: &str = "sns-http";
/// Messages pulled from SQS (SNS envelopes or EventBridge events).
pub const CHANNEL_SQS: &str = "sqs";
/// EventBridge API destination deliveries.
pub const CHANNEL_EVENTBRIDGE_HTTP: &str = "eventbridge-http";

/// The AWS Marketplace provider. Cheap to share behind `Arc`.
pub struct AwsProvider {
    pub(crate) config: AwsConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metering: aws_sdk_marketplacemetering::Client,
    pub(crate) entitlement: aws_sdk_marketplaceentitlement::Client,
    pub(crate) agreement: aws_sdk_marketplaceagreement::Client,
    pub(crate) sqs: sqs::SqsClients,
    pub(crate) credentials: credentials::AwsCredentials,
    pub(crate) retry: RetryPolicy,
    pub(crate) sns: sns::SnsVerifier,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One SDK client of crate `$krate` in `$region`, signing with the shared credentials and
/// their shared cache.
macro_rules! sdk_config {
    ($krate:ident, $config:expr, $region:expr, $creds:expr, $timeout:expr) => {{
        use $krate::config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
        let mut builder = $krate::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new($region.to_owned()))
            .credentials_provider($creds.provider.clone())
            .identity_cache($creds.cache.clone())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout($timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(url) = &$config.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        $krate::Client::from_conf(builder.build())
    }};
}

impl AwsProvider {
    /// Validates the configuration and builds the SDK clients (no network traffic).
    pub fn new(config: AwsConfig, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        config.validate().map_err(ProviderError::Configuration)?;
        let creds = credentials::AwsCredentials::from_config(&config);
        let timeout = Duration::from_secs(config.api_timeout_secs.max(1));
        let metering = sdk_config!(
            aws_sdk_marketplacemetering,
            config,
            config.region,
            creds,
            timeout
        );
        let entitlement = sdk_config!(
            aws_sdk_marketplaceentitlement,
            config,
            config.entitlement_region,
            creds,
            timeout
        );
        let agreement = sdk_config!(
            aws_sdk_marketplaceagreement,
            config,
            config.entitlement_region,
            creds,
            timeout
        );
        // Long polls hold the request open for up to 20 s: give SQS calls that much more.
        let sqs_timeout = timeout + Duration::from_secs(u64::from(config.sqs_wait_time_secs));
        let sqs = sqs::SqsClients::new(&config, |region| {
            sdk_config!(aws_sdk_sqs, config, region, creds, sqs_timeout)
        });
        let sns = sns::SnsVerifier::new(
            config.effective_sns_hosts(),
            config.sns_allow_http,
            config.sns_require_signature_v2,
        )?;
        Ok(Self {
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            },
            config,
            clock,
            metering,
            entitlement,
            agreement,
            sqs,
            credentials: creds,
            sns,
        })
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }
}
