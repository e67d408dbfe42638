//! `AwsConfig`: what the AWS adapter needs to know, read from the `[aws]` section of the
//! marketlink configuration. Every key but `products` has a default.

use marketlink_core::ProviderError;
pub use marketlink_core::Secret;
use serde::Deserialize;

/// How a listing tells us about lifecycle changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationMode {
    /// SNS topics `aws-mp-subscription-notification-<code>` / `aws-mp-entitlement-notification-<code>`.
    Sns,
    /// `aws.agreement-marketplace` EventBridge events (SQS target or API destination).
    Eventbridge,
}

/// How a listing identifies buyers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// `CustomerIdentifier` + `ProductCode`: one subscription per customer and product.
    Classic,
    /// `CustomerAWSAccountId` + `LicenseArn`: one subscription per agreement (LicenseArn).
    Concurrent,
}

/// One AWS Marketplace SaaS listing we sell.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// The metering ProductCode.
    pub product_code: String,
    /// Catalog product id (`prod-...`), used to recognise Purchase Agreement events whose
    /// agreement we have not seen yet (DescribeAgreement names the product by this id).
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default = "default_notification_mode")]
    pub notification_mode: NotificationMode,
    #[serde(default = "default_identity_mode")]
    pub identity_mode: IdentityMode,
    /// ARN of `aws-mp-subscription-notification-<code>` (SNS listings).
    #[serde(default)]
    pub subscription_topic_arn: Option<String>,
    /// ARN of `aws-mp-entitlement-notification-<code>` (SNS listings).
    #[serde(default)]
    pub entitlement_topic_arn: Option<String>,
}

fn default_notification_mode() -> NotificationMode {
    NotificationMode::Eventbridge
}

fn default_identity_mode() -> IdentityMode {
    IdentityMode::Concurrent
}

/// Static credentials (the sandbox, or an IAM user's keys). Without them the adapter takes its
/// credentials from the standard AWS chain: see [`AwsConfig::credentials`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(default)]
    pub session_token: Option<Secret>,
}

/// Configuration of the AWS adapter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Region of the metering calls, of SQS queues whose URL names none (a custom endpoint),
    /// and of the STS calls the credential chain makes. A queue on an AWS host is polled in
    /// the region of its URL. Entitlement and agreement calls use `entitlement_region`.
    pub region: String,
    /// Region of GetEntitlements and the Agreement API: AWS serves both from us-east-1.
    pub entitlement_region: String,
    /// Endpoint override for every AWS API (the sandbox, e.g. `http://127.0.0.1:9090`).
    pub endpoint_url: Option<String>,
    /// Static credentials, an explicit override. None: the standard AWS credential chain
    /// (environment, shared profile and SSO, web identity, container, EC2 instance metadata).
    pub credentials: Option<StaticCredentials>,
    pub products: Vec<ProductConfig>,
    /// SQS queue URLs that `pull` long-polls (SNS subscriptions and EventBridge SQS targets).
    pub sqs_queue_urls: Vec<String>,
    /// Long-poll wait per ReceiveMessage call, 0 to 20 seconds.
    pub sqs_wait_time_secs: u32,
    /// Visibility timeout requested on receive (None: the queue's default).
    pub sqs_visibility_timeout_secs: Option<u32>,
    /// Hosts allowed in SNS `SigningCertURL` and `SubscribeURL`, `*` matching one DNS label
    /// (`sns.*.amazonaws.com`). Empty: `sns.<region>.amazonaws.com` for `region` and for the
    /// region of every configured topic ARN.
    pub sns_cert_hosts: Vec<String>,
    /// Accept `http://` SigningCertURL/SubscribeURL (the sandbox only; never in production).
    pub sns_allow_http: bool,
    /// Refuse SNS messages signed with SignatureVersion 1 (SHA1): for topics whose
    /// `SignatureVersion` attribute is 2.
    pub sns_require_signature_v2: bool,
    /// SNS messages received over HTTP older than this are refused as replays.
    pub max_message_age_secs: u64,
    /// EventBridge API destination deliveries older than this are refused. EventBridge retries
    /// a failed delivery for up to 24 hours by default (`MaximumEventAgeInSeconds` 86,400), so
    /// the default takes every retry; repeats are dropped by event id.
    pub max_event_age_secs: u64,
    /// Messages taken from SQS may have waited in the queue (up to 14 days of retention):
    /// their own, longer, age limit.
    pub max_queued_message_age_secs: u64,
    /// Tolerated clock skew for timestamps in the future.
    pub max_future_skew_secs: u64,
    /// Shared secret that the EventBridge API destination's connection sends (API_KEY auth).
    /// None: the `eventbridge-http` endpoint refuses everything.
    pub eventbridge_secret: Option<Secret>,
    /// Header carrying `eventbridge_secret` (lower case).
    pub eventbridge_secret_header: String,
    /// The seller account that EventBridge events must name in `account` (None: not checked).
    pub seller_account_id: Option<String>,
    /// Attempts per API call for retryable failures (throttling, 5xx, timeouts), at least 1.
    pub max_attempts: u32,
    /// First backoff between attempts; doubles each time.
    pub initial_backoff_ms: u64,
    /// Timeout of one API call attempt.
    pub api_timeout_secs: u64,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            entitlement_region: "us-east-1".to_owned(),
            endpoint_url: None,
            credentials: None,
            products: Vec::new(),
            sqs_queue_urls: Vec::new(),
            sqs_wait_time_secs: 20,
            sqs_visibility_timeout_secs: None,
            sns_cert_hosts: Vec::new(),
            sns_allow_http: false,
            sns_require_signature_v2: false,
            max_message_age_secs: 3600,
            max_event_age_secs: 86_400,
            max_queued_message_age_secs: 14 * 86_400,
            max_future_skew_secs: 300,
            eventbridge_secret: None,
            eventbridge_secret_header: "x-marketlink-eventbridge-secret".to_owned(),
            seller_account_id: None,
            max_attempts: 3,
            initial_backoff_ms: 200,
            api_timeout_secs: 10,
        }
    }
}

impl AwsConfig {
    /// The listing of `product_code`, or the configuration error that names what is missing.
    pub(crate) fn require_product(
        &self,
        product_code: &str,
    ) -> Result<&ProductConfig, ProviderError> {
        self.product(product_code).ok_or_else(|| {
            ProviderError::Configuration(format!(
                "AWS product code {product_code} is not listed in aws.products"
            ))
        })
    }

    pub fn product(&self, product_code: &str) -> Option<&ProductConfig> {
        self.products
            .iter()
            .find(|p| p.product_code == product_code)
    }

    /// The product whose subscription or entitlement topic this is.
    pub fn product_for_topic(&self, topic_arn: &str) -> Option<(&ProductConfig, TopicKind)> {
        self.products.iter().find_map(|p| {
            if p.subscription_topic_arn.as_deref() == Some(topic_arn) {
                Some((p, TopicKind::Subscription))
            } else if p.entitlement_topic_arn.as_deref() == Some(topic_arn) {
                Some((p, TopicKind::Entitlement))
            } else {
                None
            }
        })
    }

    /// The host patterns SNS URLs must match.
    pub fn effective_sns_hosts(&self) -> Vec<String> {
        if !self.sns_cert_hosts.is_empty() {
            return self.sns_cert_hosts.clone();
        }
        let mut regions = vec![self.region.clone()];
        for p in &self.products {
            for arn in [&p.subscription_topic_arn, &p.entitlement_topic_arn]
                .into_iter()
                .flatten()
            {
                // arn:aws:sns:<region>:<account>:<name>
                if let Some(region) = arn.split(':').nth(3).filter(|r| !r.is_empty()) {
                    regions.push(region.to_owned());
                }
            }
        }
        regions.sort();
        regions.dedup();
        regions
            .into_iter()
            .map(|r| format!("sns.{r}.amazonaws.com"))
            .collect()
    }

    /// Checks what serde cannot; called by `AwsProvider::new`.
    pub fn validate(&self) -> Result<(), String> {
        if self.region.is_empty() || self.entitlement_region.is_empty() {
            return Err("aws.region and aws.entitlement_region must not be empty".into());
        }
        if self.products.is_empty() {
            return Err("aws.products must list at least one product".into());
        }
        if let Some(keys) = &self.credentials
            && (keys.access_key_id.is_empty() || keys.secret_access_key.expose().is_empty())
        {
            return Err(
                "aws.credentials needs both access_key_id and secret_access_key (leave the section out to use the AWS credential chain)"
                    .into(),
            );
        }
        let mut codes = std::collections::HashSet::new();
        for p in &self.products {
            if p.product_code.is_empty() || !codes.insert(p.product_code.as_str()) {
                return Err(format!(
                    "aws.products: product_code {:?} is empty or repeated",
                    p.product_code
                ));
            }
            if p.notification_mode == NotificationMode::Sns {
                if p.identity_mode == IdentityMode::Concurrent {
                    return Err(format!(
                        "aws product {}: SNS messages carry no LicenseArn, so a concurrent-agreements listing needs notification_mode = \"eventbridge\"",
                        p.product_code
                    ));
                }
                if p.subscription_topic_arn.is_none() {
                    return Err(format!(
                        "aws product {}: notification_mode = \"sns\" needs subscription_topic_arn",
                        p.product_code
                    ));
                }
            }
        }
        if self.sqs_wait_time_secs > 20 {
            return Err("aws.sqs_wait_time_secs must be 0 to 20".into());
        }
        if self.max_attempts == 0 {
            return Err("aws.max_attempts must be at least 1".into());
        }
        if self.eventbridge_secret_header.is_empty()
            || self.eventbridge_secret_header != self.eventbridge_secret_header.to_lowercase()
        {
            return Err("aws.eventbridge_secret_header must be a lower-case header name".into());
        }
        if let Some(secret) = &self.eventbridge_secret
            && secret.expose().len() < 16
        {
            return Err("aws.eventbridge_secret must be at least 16 characters".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Subscription,
    Entitlement,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<AwsConfig, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn defaults_and_redaction() {
        let cfg = parse(serde_json::json!({
            "credentials": {"access_key_id": "AKIA", "secret_access_key": "top-secret-value"},
            "eventbridge_secret": "another-secret-value-123",
            "products": [{"product_code": "abc", "notification_mode": "sns",
                "identity_mode": "classic",
                "subscription_topic_arn": "arn:aws:sns:us-west-2:1:aws-mp-subscription-notification-abc"}]
        }))
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.max_message_age_secs, 3600);
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("top-secret-value"));
        assert!(!printed.contains("another-secret-value-123"));
        assert_eq!(
            cfg.effective_sns_hosts(),
            ["sns.us-east-1.amazonaws.com", "sns.us-west-2.amazonaws.com"]
        );
    }

    #[test]
    fn unknown_keys_and_bad_combinations_are_refused() {
        assert!(parse(serde_json::json!({"regoin": "x"})).is_err());
        let cfg = parse(serde_json::json!({
            "credentials": {"access_key_id": "AKIA", "secret_access_key": "s"},
            "products": [{"product_code": "abc", "notification_mode": "sns", "identity_mode": "concurrent",
                "subscription_topic_arn": "arn:aws:sns:us-east-1:1:t"}]
        }))
        .unwrap();
        assert!(cfg.validate().unwrap_err().contains("LicenseArn"));
        let cfg = AwsConfig::default();
        assert!(cfg.validate().is_err());
    }

    /// Without `[aws.credentials]` the credential chain is used; a half-filled section is an
    /// error rather than a silent fall-back to the chain.
    #[test]
    fn credentials_are_optional_but_not_half_given() {
        let products = serde_json::json!([{"product_code": "abc"}]);
        let cfg = parse(serde_json::json!({"products": products})).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.max_event_age_secs, 86_400);
        let cfg = parse(serde_json::json!({
            "credentials": {"access_key_id": "", "secret_access_key": "s"},
            "products": products
        }))
        .unwrap();
        assert!(cfg.validate().unwrap_err().contains("credential chain"));
    }
}
