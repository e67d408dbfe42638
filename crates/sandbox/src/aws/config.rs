//! Sandbox configuration and the scenario seed (products, offers, dimensions, modes) from TOML.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::chaos::DeliveryChaos;
use crate::switch::{self, FaultConfig, Side};

/// How the product identifies buyers when metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// `CustomerIdentifier` + `ProductCode` (listings before concurrent agreements).
    Classic,
    /// `CustomerAWSAccountId` + `LicenseArn` (concurrent agreements, default for new listings).
    Concurrent,
}

/// How the product tells the seller about lifecycle changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationMode {
    /// SNS topics `aws-mp-subscription-notification-<code>` / `aws-mp-entitlement-notification-<code>`.
    Sns,
    /// `aws.agreement-marketplace` EventBridge events (to the EventBridge queue).
    Eventbridge,
}

/// The pricing model of an offer, as the buyer page presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OfferKind {
    /// Pay-as-you-go: usage-based dimensions only.
    Subscription,
    /// Upfront contract on the contract dimensions.
    Contract,
    /// Contract plus pay-as-you-go overage on the metered dimensions.
    ContractWithConsumption,
    /// Free trial (the landing POST carries `x-amzn-marketplace-offer-type=free-trial`).
    FreeTrial,
}

impl OfferKind {
    pub fn label(self) -> &'static str {
        match self {
            OfferKind::Subscription => "SaaS subscription (pay as you go)",
            OfferKind::Contract => "SaaS contract",
            OfferKind::ContractWithConsumption => "SaaS contract with consumption",
            OfferKind::FreeTrial => "Free trial",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DimensionKind {
    /// Reported with BatchMeterUsage.
    Metered,
    /// Bought upfront; shows up in GetEntitlements.
    Contract,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionConfig {
    /// The dimension API name (what `Dimension` carries on the wire).
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: DimensionKind,
    /// Price per unit (metered) or per unit and contract period (contract), USD, as a string.
    #[serde(default = "default_price")]
    pub price: String,
}

fn default_price() -> String {
    "0.01".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferConfig {
    pub id: String,
    pub kind: OfferKind,
    /// Contract length in months (contract offers); default 12.
    #[serde(default)]
    pub duration_months: Option<u32>,
    /// Free-trial length in days (7 to 90); default 30.
    #[serde(default)]
    pub trial_days: Option<u32>,
    /// Contract dimension quantities bought (contract offers) or granted (free trial).
    #[serde(default)]
    pub quantities: BTreeMap<String, i64>,
    /// A channel partner private offer (CPPO): the proposer is `channel_partner_account_id`,
    /// the seller only the manufacturer (see the README, "Proposer and manufacturer").
    #[serde(default)]
    pub channel_partner: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub product_code: String,
    /// Catalog product id, `prod-...`.
    pub product_id: String,
    pub title: String,
    pub identity_mode: IdentityMode,
    pub notification_mode: NotificationMode,
    pub dimensions: Vec<DimensionConfig>,
    pub offers: Vec<OfferConfig>,
}

impl ProductConfig {
    pub fn dimension(&self, name: &str) -> Option<&DimensionConfig> {
        self.dimensions.iter().find(|d| d.name == name)
    }
}

/// Everything the AWS sandbox needs; `Default` gives a working demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSandboxConfig {
    /// Access key id the SDK clients must sign with.
    pub access_key_id: String,
    /// Secret access key (never logged).
    pub secret_access_key: String,
    /// The seller's AWS account id (12 digits).
    pub seller_account_id: String,
    /// Default buyer account used by the buyer page.
    pub default_buyer_account_id: String,
    pub region: String,
    /// Base URL under which this sandbox is reachable (used in SigningCertURL, SubscribeURL,
    /// queue URLs). Set it to the address the router is served on.
    pub public_base_url: String,
    /// Where the buyer page posts `x-amzn-marketplace-token`.
    pub landing_url: String,
    /// HTTP endpoint subscribed to the SNS topics (None: SQS delivery only).
    pub sns_http_endpoint: Option<String>,
    /// SNS `SignatureVersion`: 1 (SHA1withRSA) or 2 (SHA256withRSA).
    pub sns_signature_version: u8,
    /// Maximum SigV4 clock skew in seconds; None disables the check (tests with a manual clock).
    pub sigv4_max_skew_secs: Option<i64>,
    /// Registration token lifetime (seconds).
    pub token_ttl_secs: i64,
    /// Delay between the buyer's purchase and subscribe-success / Purchase Agreement Created.
    pub subscribe_delay_ms: u64,
    /// SQS queue that receives the SNS envelopes of `sns` products.
    pub sns_queue_name: String,
    /// SQS queue that an EventBridge rule fills with `aws.agreement-marketplace` events.
    pub eventbridge_queue_name: String,
    /// Optional JSON file the state is saved to after each change and loaded from at start.
    pub state_file: Option<std::path::PathBuf>,
    /// The channel partner that proposes `channel_partner` offers (CPPO).
    pub channel_partner_account_id: String,
    /// SNS HTTP(S) delivery policy: the delay before each retry, so the number of values is
    /// the number of retries. SNS's default is three retries 20 s apart.
    pub sns_http_retry_delays_ms: Vec<u64>,
    /// How long one HTTP delivery may take before it counts as failed (and is retried).
    pub sns_http_timeout_ms: u64,
    /// Faults switched on from the start (`[[faults]]`, see `crate::switch`); windows count
    /// from the sandbox's start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultConfig>,
    /// Duplicated, reordered and delayed deliveries (off when absent).
    pub delivery_chaos: Option<DeliveryChaos>,
    pub products: Vec<ProductConfig>,
}

impl Default for AwsSandboxConfig {
    fn default() -> Self {
        Self {
            access_key_id: "AKIASANDBOX".to_owned(),
            secret_access_key: "sandbox-secret".to_owned(),
            seller_account_id: "111122223333".to_owned(),
            default_buyer_account_id: "444455556666".to_owned(),
            region: "us-east-1".to_owned(),
            public_base_url: "http://127.0.0.1:9090".to_owned(),
            landing_url: "http://127.0.0.1:8080/aws/landing".to_owned(),
            sns_http_endpoint: None,
            sns_signature_version: 2,
            sigv4_max_skew_secs: Some(900),
            token_ttl_secs: 1800,
            subscribe_delay_ms: 2000,
            sns_queue_name: "aws-mp-sns-notifications".to_owned(),
            eventbridge_queue_name: "aws-mp-eventbridge-events".to_owned(),
            state_file: None,
            channel_partner_account_id: "222233334444".to_owned(),
            // "By default, if the initial delivery of the message fails, Amazon SNS attempts
            // up to three retries with a delay between failed attempts set at 20 seconds"
            // (SNS Developer Guide, "Set the delivery policy for the Amazon SNS subscription").
            sns_http_retry_delays_ms: vec![20_000; 3],
            sns_http_timeout_ms: 15_000,
            delivery_chaos: None,
            products: default_products(),
            faults: Vec::new(),
        }
    }
}

impl ProductConfig {
    /// A product like the built-in ones: metered `api_calls` and `storage_gb`, contract
    /// `seats`, and one offer of each kind (`offer-<code>-payg`, `-contract`,
    /// `-contract-usage`, `-trial`). Tests add it to a config to have a product of the same
    /// seller that marketlink is not configured for.
    pub fn standard(
        code: &str,
        id: &str,
        title: &str,
        identity_mode: IdentityMode,
        notification_mode: NotificationMode,
    ) -> Self {
        standard_product(code, id, title, identity_mode, notification_mode)
    }
}

fn offer(id: String, kind: OfferKind, quantities: BTreeMap<String, i64>) -> OfferConfig {
    let contract = matches!(
        kind,
        OfferKind::Contract | OfferKind::ContractWithConsumption
    );
    OfferConfig {
        id,
        kind,
        duration_months: contract.then_some(12),
        trial_days: (kind == OfferKind::FreeTrial).then_some(30),
        quantities,
        channel_partner: false,
    }
}

fn standard_product(
    code: &str,
    id: &str,
    title: &str,
    identity_mode: IdentityMode,
    notification_mode: NotificationMode,
) -> ProductConfig {
    let quantities: BTreeMap<String, i64> = [("seats".to_owned(), 10)].into_iter().collect();
    ProductConfig {
        product_code: code.to_owned(),
        product_id: id.to_owned(),
        title: title.to_owned(),
        identity_mode,
        notification_mode,
        dimensions: vec![
            DimensionConfig {
                name: "api_calls".to_owned(),
                description: "API calls".to_owned(),
                kind: DimensionKind::Metered,
                price: "0.001".to_owned(),
            },
            DimensionConfig {
                name: "storage_gb".to_owned(),
                description: "Storage (GB-hours)".to_owned(),
                kind: DimensionKind::Metered,
                price: "0.0002".to_owned(),
            },
            DimensionConfig {
                name: "seats".to_owned(),
                description: "User seats".to_owned(),
                kind: DimensionKind::Contract,
                price: "120.00".to_owned(),
            },
        ],
        offers: vec![
            offer(
                format!("offer-{code}-payg"),
                OfferKind::Subscription,
                BTreeMap::new(),
            ),
            offer(
                format!("offer-{code}-contract"),
                OfferKind::Contract,
                quantities.clone(),
            ),
            offer(
                format!("offer-{code}-contract-usage"),
                OfferKind::ContractWithConsumption,
                quantities.clone(),
            ),
            offer(
                format!("offer-{code}-trial"),
                OfferKind::FreeTrial,
                quantities,
            ),
        ],
    }
}

fn default_products() -> Vec<ProductConfig> {
    vec![
        standard_product(
            "mlsandboxclassic0000000001",
            "prod-mlsandboxclassic01",
            "Marketlink Demo (classic, SNS)",
            IdentityMode::Classic,
            NotificationMode::Sns,
        ),
        standard_product(
            "mlsandboxconcurrent0000002",
            "prod-mlsandboxconcurr02",
            "Marketlink Demo (concurrent agreements, EventBridge)",
            IdentityMode::Concurrent,
            NotificationMode::Eventbridge,
        ),
    ]
}

impl AwsSandboxConfig {
    /// Parse a scenario TOML; missing keys take the defaults (a file without `products` keeps the
    /// built-in products).
    pub fn from_toml_str(s: &str) -> anyhow::Result<Self> {
        let cfg: Self = toml::from_str(s).context("invalid AWS sandbox scenario TOML")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.seller_account_id.len() != 12
            || !self.seller_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            bail!("seller_account_id must be 12 digits");
        }
        if !matches!(self.sns_signature_version, 1 | 2) {
            bail!("sns_signature_version must be 1 or 2");
        }
        if self.channel_partner_account_id.len() != 12
            || !self
                .channel_partner_account_id
                .bytes()
                .all(|b| b.is_ascii_digit())
            || self.channel_partner_account_id == self.seller_account_id
        {
            bail!("channel_partner_account_id must be 12 digits, not the seller's account");
        }
        // "The total policy retry time for an HTTP/S endpoint cannot be greater than 3,600
        // seconds" (SNS Developer Guide, "Amazon SNS message delivery retries").
        if self.sns_http_retry_delays_ms.iter().sum::<u64>() > 3_600_000 {
            bail!("sns_http_retry_delays_ms must add up to at most 3600000 (one hour)");
        }
        if let Some(chaos) = &self.delivery_chaos {
            chaos.validate()?;
        }
        switch::validate_all(&mut self.faults.clone(), Side::Aws)?;
        for p in &self.products {
            if p.product_code.is_empty()
                || !p
                    .product_code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/=:_.@".contains(&b))
            {
                bail!("invalid product_code {:?}", p.product_code);
            }
            for o in &p.offers {
                for dim in o.quantities.keys() {
                    if p.dimension(dim).is_none() {
                        bail!("offer {} names unknown dimension {dim}", o.id);
                    }
                }
                if let Some(days) = o.trial_days
                    && !(7..=90).contains(&days)
                {
                    bail!("offer {}: trial_days must be 7 to 90", o.id);
                }
            }
        }
        Ok(())
    }

    pub fn product(&self, code: &str) -> Option<&ProductConfig> {
        self.products.iter().find(|p| p.product_code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let cfg = AwsSandboxConfig::default();
        let text = toml::to_string(&cfg).unwrap();
        let back = AwsSandboxConfig::from_toml_str(&text).unwrap();
        assert_eq!(back.products.len(), 2);
    }

    #[test]
    fn partial_toml_keeps_defaults() {
        let cfg = AwsSandboxConfig::from_toml_str("access_key_id = \"AKIAOTHER\"").unwrap();
        assert_eq!(cfg.access_key_id, "AKIAOTHER");
        assert_eq!(cfg.products.len(), 2);
        assert!(AwsSandboxConfig::from_toml_str("sns_signature_version = 3").is_err());
        assert!(
            AwsSandboxConfig::from_toml_str("sns_http_retry_delays_ms = [3600000, 1]").is_err()
        );
        assert!(
            AwsSandboxConfig::from_toml_str("channel_partner_account_id = \"111122223333\"")
                .is_err()
        );
    }
}

#[cfg(test)]
mod scenario_file_tests {
    use super::*;

    #[test]
    fn shipped_scenario_parses() {
        let text = include_str!("../../scenarios/aws-default.toml");
        let cfg = AwsSandboxConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.products.len(), 2);
        assert_eq!(cfg.delivery_chaos, None);
        assert_eq!(cfg.sns_http_retry_delays_ms, [20_000; 3]);
        assert!(
            cfg.products
                .iter()
                .flat_map(|p| &p.offers)
                .all(|o| !o.channel_partner)
        );
        assert_eq!(cfg.products[1].identity_mode, IdentityMode::Concurrent);
        assert_eq!(
            cfg.products[1].offers[0].kind,
            OfferKind::ContractWithConsumption
        );
    }
}
