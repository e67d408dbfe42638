//! Configuration of the Google sandbox: the partner's identity (provider id, product domain),
//! its plans and metrics, the vendor's service account, and the Pub/Sub subscription. Loadable
//! from TOML (every key optional); `Default` is the demo scenario.

use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

/// Everything the Google sandbox needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcpSandboxConfig {
    /// Where the router is served (no trailing slash): the base of `token_uri`, of the OIDC
    /// issuer and of the buyer page.
    pub public_base_url: String,
    /// The partner's provider id (`providers/{provider_id}/...`; the codelab's `DEMO-<project>`).
    pub provider_id: String,
    /// The product's service name: the sign-up JWT's `aud` and the Service Control service.
    pub product_domain: String,
    /// The vendor's sign-up URL the buyer page POSTs `x-gcp-marketplace-token` to.
    pub signup_url: Option<String>,
    /// Plan names a purchase or plan change may name.
    pub plans: Vec<String>,
    /// Metric names Service Control accepts (`<service>/<metric>`).
    pub metrics: Vec<String>,
    /// The vendor's (linked) service account: the only caller of the partner APIs.
    pub service_account_email: String,
    /// Its PKCS#8 PEM private key; generated at start when absent.
    pub service_account_private_key: Option<Secret>,
    /// Its key id (`private_key_id`, the assertion's `kid`); derived from the key when absent.
    pub service_account_key_id: Option<String>,
    /// Lifetime of the access tokens `/token` issues (Google's: 3599 s).
    pub access_token_lifetime_secs: i64,
    /// Pub/Sub project of the vendor's subscription.
    pub pubsub_project: String,
    /// Pub/Sub subscription name (on the provider's topic).
    pub pubsub_subscription: String,
    /// Pull subscriptions' ack deadline (Pub/Sub's default is 10 s).
    pub ack_deadline_secs: i64,
    /// Push endpoint; when unset the subscription is a pull subscription.
    pub push_endpoint: Option<String>,
    /// `aud` of the push OIDC token (Pub/Sub defaults it to the push endpoint).
    pub push_audience: Option<String>,
    /// `email` of the push OIDC token (the subscription's push service account).
    pub push_service_account_email: String,
    /// Waits between push attempts after a non-2xx answer; the last one repeats.
    pub push_retry_delays_ms: Vec<u64>,
    /// Push attempts per message before the sandbox gives up (Pub/Sub retries for the
    /// retention period, 7 days by default; a test has no such patience).
    pub push_max_attempts: u32,
    /// An approved plan change waits in ENTITLEMENT_PENDING_PLAN_CHANGE until
    /// `GcpSandbox::complete_plan_change` (the billing cycle's end) instead of applying at once.
    pub plan_change_at_cycle_end: bool,
    /// Usage older than this (by `endTime`) is refused (S19: report within one hour).
    pub max_report_age_secs: i64,
    /// Pub/Sub delivery chaos from the start (tests switch it with `set_pubsub_chaos`).
    pub pubsub_chaos: PubSubChaos,
    /// Faults active from the start (`[[faults]]`, see `crate::switch`; `match` is a path
    /// suffix such as `:report` or `*`).
    pub faults: Vec<crate::switch::FaultConfig>,
}

/// Delivery chaos, off by default. Pub/Sub is at-least-once and unordered, so a vendor must
/// cope with all of these anyway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubChaos {
    /// Every message is delivered twice (same `messageId`, as a Pub/Sub redelivery).
    pub duplicate: bool,
    /// A new message goes ahead of the ones not yet delivered.
    pub reorder: bool,
    /// The next n messages are lost.
    pub drop_next: u32,
    /// The next message is held back this long.
    pub delay_next_ms: u64,
}

impl Default for GcpSandboxConfig {
    fn default() -> Self {
        Self {
            public_base_url: "http://127.0.0.1:8094".into(),
            provider_id: "DEMO-marketlink".into(),
            product_domain: "marketlink.example.com".into(),
            signup_url: None,
            plans: vec!["basic".into(), "pro".into(), "enterprise".into()],
            metrics: vec![
                "marketlink.example.com/requests".into(),
                "marketlink.example.com/storage_gib".into(),
            ],
            service_account_email: "marketlink-vendor@marketlink-demo.iam.gserviceaccount.com"
                .into(),
            service_account_private_key: None,
            service_account_key_id: None,
            access_token_lifetime_secs: 3599,
            pubsub_project: "marketlink-demo".into(),
            pubsub_subscription: "marketlink-procurement".into(),
            ack_deadline_secs: 10,
            push_endpoint: None,
            push_audience: None,
            push_service_account_email: "marketlink-push@marketlink-demo.iam.gserviceaccount.com"
                .into(),
            push_retry_delays_ms: vec![100, 200, 400, 800, 1600],
            push_max_attempts: 10,
            plan_change_at_cycle_end: false,
            max_report_age_secs: 3600,
            pubsub_chaos: PubSubChaos::default(),
            faults: Vec::new(),
        }
    }
}

impl GcpSandboxConfig {
    /// Parses a scenario file (TOML, keys as above in snake case).
    pub fn from_toml_str(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.public_base_url.starts_with("http://")
                || self.public_base_url.starts_with("https://"),
            "gcp sandbox: public_base_url must be an http(s) URL"
        );
        anyhow::ensure!(
            !self.provider_id.is_empty(),
            "gcp sandbox: empty provider_id"
        );
        anyhow::ensure!(!self.plans.is_empty(), "gcp sandbox: at least one plan");
        anyhow::ensure!(
            (10..=600).contains(&self.ack_deadline_secs),
            "gcp sandbox: ack_deadline_secs must be 10..=600 (Pub/Sub's range)"
        );
        anyhow::ensure!(
            self.push_max_attempts > 0,
            "gcp sandbox: push_max_attempts > 0"
        );
        Ok(())
    }

    /// The base URL without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        self.public_base_url.trim_end_matches('/')
    }

    /// `token_uri` of the service account key file.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base())
    }

    /// The push OIDC token's `aud`.
    pub fn push_audience(&self) -> Option<String> {
        self.push_audience
            .clone()
            .or_else(|| self.push_endpoint.clone())
    }

    /// `projects/{p}/subscriptions/{s}`.
    pub fn subscription_name(&self) -> String {
        format!(
            "projects/{}/subscriptions/{}",
            self.pubsub_project, self.pubsub_subscription
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenario_is_the_default() {
        let text = include_str!("../../scenarios/gcp-default.toml");
        let parsed = GcpSandboxConfig::from_toml_str(text).unwrap();
        let default = GcpSandboxConfig::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&default).unwrap()
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(GcpSandboxConfig::from_toml_str("ack_deadline_secs = 5").is_err());
        assert!(GcpSandboxConfig::from_toml_str("public_base_url = \"ftp://x\"").is_err());
        assert!(GcpSandboxConfig::from_toml_str("colour = \"red\"").is_err());
        let chaos = GcpSandboxConfig::from_toml_str("[pubsub_chaos]\nduplicate = true").unwrap();
        assert!(chaos.pubsub_chaos.duplicate);
    }
}
