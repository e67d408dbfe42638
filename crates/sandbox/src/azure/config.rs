//! Configuration of the Azure sandbox: publisher identity, registered apps, scenario (offers,
//! plans, dimensions), test users and timings. Loadable from TOML; `Default` is the demo scenario.

use std::{net::SocketAddr, time::Duration};

use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

use super::credentials::AppCredentials;

/// The marketplace SaaS API's resource / first-party app id (the `aud` of publisher tokens and the
/// `azp`/`appid` of webhook tokens).
pub const MARKETPLACE_RESOURCE_ID: &str = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7";
/// The tenant of every personal Microsoft account (`tid` of their tokens).
pub const PERSONAL_ACCOUNTS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// Microsoft Graph's resource id (the `aud` of delegated Graph tokens).
pub const GRAPH_RESOURCE_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Shape of the JWT the sandbox puts on webhook calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookTokenVersion {
    /// v2 access token: `iss = {authority}/{tid}/v2.0`, `azp`, `ver = "2.0"` (what the real
    /// service sends today).
    #[default]
    V2,
    /// v1 access token: `iss = https://sts.windows.net/{tid}/`, `appid`, `ver = "1.0"`.
    V1,
}

/// Who may sign in to an app: its registration's `signInAudience` (manifest values,
/// learn.microsoft.com/entra/identity-platform/supported-accounts-validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignInAudience {
    /// "Accounts in this organizational directory only" (single tenant).
    #[default]
    AzureADMyOrg,
    /// "Accounts in any organizational directory" (multi-tenant).
    AzureADMultipleOrgs,
    /// Any organizational directory and personal Microsoft accounts.
    AzureADandPersonalMicrosoftAccount,
}

/// An Entra app registration that may obtain tokens from the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientApp {
    pub client_id: String,
    pub client_secret: Secret,
    /// Home tenant of the app (client-credentials tokens carry it as `tid`).
    pub tenant_id: String,
    #[serde(default)]
    pub display_name: String,
    /// Who may sign in to it (authorize endpoint); default single tenant, as Entra's.
    #[serde(default)]
    pub sign_in_audience: SignInAudience,
}

/// A metered dimension of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DimensionConfig {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "default_unit")]
    pub unit_of_measure: String,
    #[serde(default)]
    pub price_per_unit: f64,
}

fn default_unit() -> String {
    "unit".into()
}

/// A plan of an offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanConfig {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_private: bool,
    /// Per-seat pricing: the subscription carries a quantity within [min, max].
    #[serde(default)]
    pub is_price_per_seat: bool,
    #[serde(default)]
    pub min_quantity: Option<i64>,
    #[serde(default)]
    pub max_quantity: Option<i64>,
    #[serde(default)]
    pub has_free_trials: bool,
    /// `P1M`, `P1Y`, `P2Y`, `P3Y`, `P4Y` or `P5Y`.
    #[serde(default = "default_term")]
    pub term_unit: String,
    #[serde(default)]
    pub price: f64,
    #[serde(default)]
    pub dimensions: Vec<DimensionConfig>,
}

fn default_term() -> String {
    "P1M".into()
}

/// An offer (product) with its plans.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferConfig {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    pub plans: Vec<PlanConfig>,
}

/// A test user who can sign in on the sandbox's authorize page and be a buyer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestUser {
    /// Object id (`oid`), a GUID.
    pub object_id: String,
    pub tenant_id: String,
    pub display_name: String,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    /// Graph `mail`; may be absent (seed 002: ask the buyer then).
    #[serde(default)]
    pub mail: Option<String>,
    /// Graph `userPrincipalName`; absent for the "neither" test user.
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

impl TestUser {
    /// What the marketplace puts in `purchaser.emailId` / `beneficiary.emailId`.
    pub fn email_id(&self) -> Option<&str> {
        self.mail.as_deref().or(self.user_principal_name.as_deref())
    }
}

/// Everything the Azure sandbox needs. See the module docs for the TOML form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureSandboxConfig {
    /// Listen address; port 0 picks a free port (see `AzureSandboxHandle::base_url`).
    pub bind: SocketAddr,
    /// Serve over TLS with a generated CA (default true: `azure_identity` refuses http).
    pub tls: bool,
    /// `publisherId` in subscriptions and operations.
    pub publisher_id: String,
    /// The publisher's Entra tenant id (Partner Center technical configuration).
    pub publisher_tenant_id: String,
    /// The publisher's Entra app (client) id: calls the APIs, is the `aud` of webhook tokens.
    pub publisher_app_id: String,
    pub publisher_app_secret: Secret,
    /// Resource id publisher tokens must be issued for (`scope={id}/.default` or `resource={id}`).
    pub marketplace_resource_id: String,
    /// Who may sign in to the publisher's app: single tenant by default, as Microsoft
    /// recommends for the API app (Partner Center's technical configuration, azure-details.md
    /// §2); multi-tenant when one app also runs the landing-page sign-in.
    pub publisher_app_sign_in_audience: SignInAudience,
    /// The publisher's landing-page sign-in app: multi-tenant, in the publisher tenant, as
    /// Microsoft's landing page guidance registers it; it cannot call the marketplace APIs.
    pub landing_app: Option<ClientApp>,
    /// Other app registrations (e.g. another publisher, to exercise 403 responses).
    pub other_apps: Vec<ClientApp>,
    /// Vendor webhook ("Connection webhook") URL.
    pub webhook_url: String,
    /// Vendor landing page URL; the buyer is sent to `{landing_url}?token=...`.
    pub landing_url: String,
    pub webhook_token_version: WebhookTokenVersion,
    /// How long ChangePlan/ChangeQuantity wait for a PATCH before auto-accepting (10 s); a
    /// Reinstate completes on its own after as long.
    pub change_ack_timeout_ms: u64,
    /// Delays between webhook delivery attempts; the last one repeats.
    pub webhook_retry_delays_ms: Vec<u64>,
    /// Attempts before a webhook delivery is given up (the real service: 500 over 8 hours).
    pub webhook_max_attempts: u32,
    /// Send the `Partner` webhook after a publisher's own PATCH or DELETE (default true, as
    /// Microsoft's webhook page describes). False stands for a notification that never
    /// arrives (delivery given up after Microsoft's retries, a webhook URL misconfigured in
    /// Partner Center): Microsoft tells the publisher to poll the `Operation-Location` until the
    /// operation ends (../shared/specs/azure-details.md, Operations), which is what the
    /// publisher must then rely on.
    pub notify_partner_changes: bool,
    /// A refused ChangePlan/ChangeQuantity (PATCH Failure or a 4xx webhook answer) is applied
    /// anyway: the operation says Failed while the subscription keeps the new plan or
    /// quantity. Off by default; not documented by Microsoft, but reported by integrators (the
    /// SaaS Accelerator, PR #436, takes the new plan when a PATCH Failure did not stop the
    /// change; MicrosoftDocs/azure-docs#83057: change-plan behaviour differs from the docs).
    pub apply_refused_changes: bool,
    /// How long a publisher's own plan or quantity change stays `InProgress`, in milliseconds
    /// (0, the default: it has ended by the time the PATCH answers). Microsoft: "poll every
    /// several seconds" until it ends, "usually quick, can take minutes"
    /// (pc-saas-fulfillment-operations-api). While it runs, the `Partner` webhook (if
    /// `notify_partner_changes`) is sent with status `InProgress`, and again once it Succeeded:
    /// a webhook's status may be NotStarted or InProgress, to be followed with Get Operation
    /// until it ends (MicrosoftDocs/azure-docs PR #30873).
    pub partner_operation_ms: u64,
    /// Landing-page token lifetime in seconds (24 h).
    pub landing_token_ttl_secs: i64,
    /// Access / ID token lifetime in seconds.
    pub access_token_ttl_secs: i64,
    pub offers: Vec<OfferConfig>,
    pub users: Vec<TestUser>,
    /// The publisher app's certificates and federated credentials, and the managed identity
    /// endpoint's header (`credentials`).
    pub app_credentials: AppCredentials,
    /// Faults switched on from the start (`[[faults]]`, see `crate::switch`); windows count
    /// from the sandbox's start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::switch::FaultConfig>,
}

impl Default for AzureSandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls: true,
            publisher_id: "contoso".into(),
            publisher_tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            publisher_app_id: "5f3b2c1d-7a4e-4b8f-9c0d-1e2f3a4b5c6d".into(),
            publisher_app_secret: Secret::new("sandbox-publisher-secret"),
            marketplace_resource_id: MARKETPLACE_RESOURCE_ID.into(),
            publisher_app_sign_in_audience: SignInAudience::AzureADMyOrg,
            landing_app: Some(ClientApp {
                client_id: "7c1e9f2a-3b4d-4e5f-8a6b-1c2d3e4f5a6b".into(),
                client_secret: Secret::new("sandbox-landing-secret"),
                tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                display_name: "Contoso landing page".into(),
                sign_in_audience: SignInAudience::AzureADMultipleOrgs,
            }),
            other_apps: vec![ClientApp {
                client_id: "0b6e4a3c-2d1f-4e5a-8b7c-9d0e1f2a3b4c".into(),
                client_secret: Secret::new("sandbox-other-publisher-secret"),
                tenant_id: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f".into(),
                display_name: "Fabrikam (another publisher)".into(),
                sign_in_audience: SignInAudience::AzureADMyOrg,
            }],
            webhook_url: "http://127.0.0.1:8080/azure/webhook".into(),
            landing_url: "http://127.0.0.1:8080/azure/landing".into(),
            webhook_token_version: WebhookTokenVersion::V2,
            change_ack_timeout_ms: 10_000,
            webhook_retry_delays_ms: vec![1_000, 5_000, 30_000, 60_000],
            webhook_max_attempts: 500,
            notify_partner_changes: true,
            apply_refused_changes: false,
            partner_operation_ms: 0,
            landing_token_ttl_secs: 24 * 3600,
            access_token_ttl_secs: 3600,
            offers: vec![default_offer()],
            users: default_users(),
            app_credentials: AppCredentials::default(),
            faults: Vec::new(),
        }
    }
}

fn default_offer() -> OfferConfig {
    OfferConfig {
        id: "contoso-analytics".into(),
        display_name: "Contoso Analytics".into(),
        plans: vec![
            PlanConfig {
                id: "basic".into(),
                display_name: "Basic".into(),
                description: "Flat monthly fee, metered API calls above the included amount".into(),
                is_private: false,
                is_price_per_seat: false,
                min_quantity: None,
                max_quantity: None,
                has_free_trials: false,
                term_unit: "P1M".into(),
                price: 100.0,
                dimensions: vec![DimensionConfig {
                    id: "api_calls".into(),
                    display_name: "API calls (per 1000)".into(),
                    unit_of_measure: "1000 calls".into(),
                    price_per_unit: 0.5,
                }],
            },
            PlanConfig {
                id: "pro".into(),
                display_name: "Pro".into(),
                description: "Per-user seats".into(),
                is_private: false,
                is_price_per_seat: true,
                min_quantity: Some(1),
                max_quantity: Some(500),
                has_free_trials: false,
                term_unit: "P1M".into(),
                price: 20.0,
                dimensions: vec![DimensionConfig {
                    id: "api_calls".into(),
                    display_name: "API calls (per 1000)".into(),
                    unit_of_measure: "1000 calls".into(),
                    price_per_unit: 0.4,
                }],
            },
        ],
    }
}

fn default_users() -> Vec<TestUser> {
    vec![
        TestUser {
            object_id: "11111111-aaaa-4bbb-8ccc-000000000001".into(),
            tenant_id: "aaaaaaaa-1111-4222-8333-444444444444".into(),
            display_name: "Alice Buyer".into(),
            given_name: Some("Alice".into()),
            surname: Some("Buyer".into()),
            mail: Some("alice@tailspin.example".into()),
            user_principal_name: Some("alice@tailspin.onmicrosoft.com".into()),
        },
        TestUser {
            object_id: "11111111-aaaa-4bbb-8ccc-000000000002".into(),
            tenant_id: "aaaaaaaa-1111-4222-8333-444444444444".into(),
            display_name: "Bob Upn-Only".into(),
            given_name: Some("Bob".into()),
            surname: None,
            mail: None,
            user_principal_name: Some("bob@tailspin.onmicrosoft.com".into()),
        },
        TestUser {
            object_id: "22222222-bbbb-4ccc-8ddd-000000000003".into(),
            tenant_id: "bbbbbbbb-5555-4666-8777-888888888888".into(),
            display_name: "Carol No-Email".into(),
            given_name: None,
            surname: None,
            mail: None,
            user_principal_name: None,
        },
        // A personal Microsoft account: every one has the consumer tenant's tid (Entra ID token
        // claims reference) and a UPN that is its e-mail address.
        TestUser {
            object_id: "33333333-cccc-4ddd-8eee-000000000004".into(),
            tenant_id: PERSONAL_ACCOUNTS_TENANT.into(),
            display_name: "Dave Personal".into(),
            given_name: Some("Dave".into()),
            surname: None,
            mail: None,
            user_principal_name: Some("dave@outlook.example".into()),
        },
    ]
}

impl AzureSandboxConfig {
    /// Parses a scenario; missing keys take the `Default` values.
    pub fn from_toml_str(s: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(s)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the scenario is usable (ids unique, quantities sane).
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.offers.is_empty() {
            bail!("azure sandbox: at least one offer is needed");
        }
        for offer in &self.offers {
            if offer.plans.is_empty() {
                bail!("azure sandbox: offer {} has no plans", offer.id);
            }
            let mut seen = std::collections::HashSet::new();
            for plan in &offer.plans {
                if !seen.insert(plan.id.as_str()) {
                    bail!(
                        "azure sandbox: offer {} has plan {} twice",
                        offer.id,
                        plan.id
                    );
                }
                if let (Some(min), Some(max)) = (plan.min_quantity, plan.max_quantity)
                    && min > max
                {
                    bail!(
                        "azure sandbox: plan {} has min_quantity > max_quantity",
                        plan.id
                    );
                }
                if !["P1M", "P1Y", "P2Y", "P3Y", "P4Y", "P5Y"].contains(&plan.term_unit.as_str()) {
                    bail!(
                        "azure sandbox: plan {} has unknown term_unit {}",
                        plan.id,
                        plan.term_unit
                    );
                }
            }
        }
        crate::switch::validate_all(&mut self.faults.clone(), crate::switch::Side::Microsoft)
            .map_err(|e| anyhow::anyhow!("azure sandbox: {e}"))?;
        if self.webhook_retry_delays_ms.is_empty() {
            bail!("azure sandbox: webhook_retry_delays_ms must not be empty");
        }
        for user in &self.users {
            if uuid::Uuid::parse_str(&user.object_id).is_err()
                || uuid::Uuid::parse_str(&user.tenant_id).is_err()
            {
                bail!(
                    "azure sandbox: user {} needs GUID object_id and tenant_id",
                    user.display_name
                );
            }
        }
        Ok(())
    }

    pub(crate) fn change_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.change_ack_timeout_ms)
    }

    pub(crate) fn offer(&self, id: &str) -> Option<&OfferConfig> {
        self.offers.iter().find(|o| o.id == id)
    }

    pub(crate) fn plan(&self, offer: &str, plan: &str) -> Option<&PlanConfig> {
        self.offer(offer)?.plans.iter().find(|p| p.id == plan)
    }

    pub(crate) fn user(&self, object_id: &str) -> Option<&TestUser> {
        self.users.iter().find(|u| u.object_id == object_id)
    }

    /// The app registrations that may obtain tokens: the publisher's, then the others.
    pub(crate) fn apps(&self) -> Vec<ClientApp> {
        let mut apps = vec![ClientApp {
            client_id: self.publisher_app_id.clone(),
            client_secret: self.publisher_app_secret.clone(),
            tenant_id: self.publisher_tenant_id.clone(),
            display_name: "publisher".into(),
            sign_in_audience: self.publisher_app_sign_in_audience,
        }];
        apps.extend(self.landing_app.iter().cloned());
        apps.extend(self.other_apps.iter().cloned());
        apps
    }
}
