//! Google Cloud Marketplace (integrated SaaS) emulator (issue 23), on Google's own paths so a
//! client only swaps the base URL. Facts and sources: `/work/shared/specs/gcp.md` (§ and S#
//! cited in each module) and crates/sandbox/README.md, "Google".
//!
//! | real host | sandbox path |
//! |---|---|
//! | `www.googleapis.com` | `GET /robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com`, `.../jwk/...`, `GET /oauth2/v3/certs` (push OIDC keys) |
//! | `oauth2.googleapis.com` | `POST /token` (JWT-bearer grant) |
//! | `cloudcommerceprocurement.googleapis.com` | `/v1/providers/{p}/accounts[/{a}[:approve\|:reject\|:reset]]`, `/v1/providers/{p}/entitlements[/{e}[:approve\|:reject\|:approvePlanChange\|:rejectPlanChange\|:suspend]]` |
//! | `pubsub.googleapis.com` | `GET /v1/projects/{p}/subscriptions/{s}`, `POST …:pull`, `:acknowledge`, `:modifyAckDeadline` |
//! | `servicecontrol.googleapis.com` | `POST /v1/services/{service}:check`, `:report` |
//! | push OIDC issuer | `GET /.well-known/openid-configuration` |
//! | Google Cloud console (buyer) | `/sandbox/gcp/buyer`, `/sandbox/gcp/faults` (fault switches) |
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use marketlink_sandbox::gcp::{GcpSandbox, GcpSandboxConfig, PurchaseRequest};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let mut config = GcpSandboxConfig::default();
//! config.public_base_url = format!("http://{}", listener.local_addr()?);
//! let sandbox = GcpSandbox::new(config, Arc::new(marketlink_core::clock::SystemClock))?;
//! tokio::spawn(axum::serve(listener, sandbox.router()).into_future());
//! let key_file = sandbox.service_account_key_json()?; // the vendor's credentials
//! let purchase = sandbox.purchase(PurchaseRequest::plan("basic"))?;
//! println!("POST x-gcp-marketplace-token={}", purchase.sign_up_token);
//! # Ok(()) }
//! ```

mod auth;
mod buyer;
mod config;
mod errors;
mod events;
mod faults;
mod filter;
mod keys;
mod model;
mod pages;
mod procurement;
mod pubsub;
mod service_control;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use marketlink_core::clock::Clock;
use serde_json::Value;
use time::OffsetDateTime;

use self::keys::{MarketplaceKeys, RsaKey};
pub use self::{
    auth::{CLOUD_PLATFORM, ServiceAccountKey},
    buyer::{CancellationPolicy, PrivateOffer, Purchase, PurchaseRequest, SIGN_UP_ISSUER},
    config::{GcpSandboxConfig, PubSubChaos},
    model::{Account, Approval, ApprovalState, Entitlement, EntitlementState},
    pubsub::{PublishedMessage, PushAttempt},
    service_control::{InjectedCheckError, UsageRecord},
};

/// Request bodies are small JSON documents; anything bigger is refused.
const MAX_BODY: usize = 1024 * 1024;

/// Everything the sandbox remembers.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub accounts: BTreeMap<String, Account>,
    pub entitlements: BTreeMap<String, Entitlement>,
    pub tokens: HashMap<[u8; 32], auth::Grant>,
    pub usage: service_control::Ledger,
    pub queue: pubsub::Queue,
}

pub(crate) struct Shared {
    pub config: GcpSandboxConfig,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<MarketplaceKeys>,
    /// The vendor's service account key (`/token` checks assertions with it).
    pub account_key: Arc<RsaKey>,
    state: Mutex<State>,
    pub http: reqwest::Client,
    /// Faults of the scenario and the fault page (`/sandbox/gcp/faults`).
    pub switches: crate::switch::Switches,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Google sandbox; clones share one state.
#[derive(Clone)]
pub struct GcpSandbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GcpSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpSandbox")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl GcpSandbox {
    /// Builds the sandbox (the first one of a process generates its RSA keys: a few seconds).
    pub fn new(config: GcpSandboxConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        config.validate()?;
        let mut faults = config.faults.clone();
        crate::switch::validate_all(&mut faults, crate::switch::Side::Google)?;
        let switches = crate::switch::Switches::from_scenario(&faults, clock.now());
        let keys = MarketplaceKeys::shared()?;
        let account_key = match &config.service_account_private_key {
            Some(pem) => Arc::new(RsaKey::from_pkcs8_pem(
                pem.expose(),
                config.service_account_key_id.clone(),
            )?),
            None => keys.default_account.clone(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut state = State::default();
        state.queue.chaos = config.pubsub_chaos;
        let shared = Arc::new(Shared {
            config,
            clock,
            keys,
            account_key,
            state: Mutex::new(state),
            http,
            switches,
        });
        Ok(Self { shared })
    }

    /// Every endpoint, on one router; serve it at `config.public_base_url`.
    pub fn router(&self) -> Router {
        let x509 = "/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com";
        let jwk = "/robot/v1/metadata/jwk/cloud-commerce-partner@system.gserviceaccount.com";
        Router::new()
            .route(x509, get(pages::x509))
            .route(jwk, get(pages::jwk))
            .route("/token", post(auth::token))
            .route("/.well-known/openid-configuration", get(auth::discovery))
            .route("/oauth2/v3/certs", get(auth::jwks))
            .route(
                "/v1/providers/{provider}/accounts",
                get(procurement::list_accounts),
            )
            .route(
                "/v1/providers/{provider}/accounts/{account}",
                get(procurement::get_account).post(procurement::account_call),
            )
            .route(
                "/v1/providers/{provider}/entitlements",
                get(procurement::list_entitlements),
            )
            .route(
                "/v1/providers/{provider}/entitlements/{entitlement}",
                get(procurement::get_entitlement)
                    .patch(procurement::patch_entitlement)
                    .post(procurement::entitlement_call),
            )
            .route(
                "/v1/projects/{project}/subscriptions/{subscription}",
                get(pubsub::get_subscription).post(pubsub::subscription_call),
            )
            .route(
                "/v1/services/{service}",
                post(service_control::service_call),
            )
            .route("/sandbox/gcp/buyer", get(pages::buyer_page))
            .route("/sandbox/gcp/buyer/purchase", post(pages::buyer_purchase))
            .route("/sandbox/gcp/buyer/action", post(pages::buyer_action))
            .merge(faults::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                faults::apply,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.shared.clone())
    }

    pub fn config(&self) -> &GcpSandboxConfig {
        &self.shared.config
    }

    /// The vendor's service account key file (`type: service_account`, `token_uri` = the
    /// sandbox's `/token`).
    pub fn service_account_key(&self) -> anyhow::Result<ServiceAccountKey> {
        let config = &self.shared.config;
        let project = config
            .service_account_email
            .split('@')
            .nth(1)
            .unwrap_or_default();
        Ok(ServiceAccountKey {
            key_type: "service_account".into(),
            project_id: project.split('.').next().unwrap_or_default().into(),
            private_key_id: self.shared.account_key.kid.clone(),
            private_key: self.shared.account_key.private_pem()?.expose().to_owned(),
            client_email: config.service_account_email.clone(),
            client_id: "100000000000000000001".into(),
            auth_uri: format!("{}/o/oauth2/auth", config.base()),
            token_uri: config.token_uri(),
            universe_domain: "googleapis.com".into(),
        })
    }

    /// The key file as JSON text.
    pub fn service_account_key_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(&self.service_account_key()?)?)
    }

    /// A buyer purchase: account + entitlement, messages published, sign-up JWT returned.
    pub fn purchase(&self, request: PurchaseRequest) -> anyhow::Result<Purchase> {
        buyer::purchase(&self.shared, request)
    }

    /// Does what the buyer's browser does after a purchase: POSTs `token` as the form field
    /// `x-gcp-marketplace-token` to `config.signup_url`, and returns the vendor's answer.
    pub async fn submit_sign_up(&self, token: &str) -> anyhow::Result<reqwest::Response> {
        let Some(url) = &self.shared.config.signup_url else {
            anyhow::bail!("gcp sandbox: no signup_url configured");
        };
        let response = self
            .shared
            .http
            .post(url)
            .form(&[("x-gcp-marketplace-token", token)])
            .send()
            .await?;
        Ok(response)
    }

    /// A sign-up JWT for `account_id` with optional `google` claims, signed by the published key.
    pub fn sign_up_token(&self, account_id: &str, google: Option<Value>) -> anyhow::Result<String> {
        let claims = buyer::sign_up_claims(&self.shared, account_id, google);
        buyer::sign_up_token(&self.shared, &claims, false)
    }

    /// Signs arbitrary sign-up claims; `forged` signs with an unpublished key under the real
    /// `kid`.
    pub fn sign_up_token_with_claims(
        &self,
        claims: &Value,
        forged: bool,
    ) -> anyhow::Result<String> {
        buyer::sign_up_token(&self.shared, claims, forged)
    }

    /// The standard sign-up claims (to alter before `sign_up_token_with_claims`).
    pub fn sign_up_claims(&self, account_id: &str) -> Value {
        buyer::sign_up_claims(&self.shared, account_id, None)
    }

    pub fn request_plan_change(&self, entitlement_id: &str, plan: &str) -> anyhow::Result<()> {
        buyer::request_plan_change(&self.shared, entitlement_id, plan)
    }

    /// The billing cycle ends for a change approved with `plan_change_at_cycle_end`.
    pub fn complete_plan_change(&self, entitlement_id: &str) -> anyhow::Result<()> {
        buyer::complete_plan_change(&self.shared, entitlement_id)
    }

    pub fn withdraw_plan_change(&self, entitlement_id: &str) -> anyhow::Result<()> {
        buyer::withdraw_plan_change(&self.shared, entitlement_id)
    }

    pub fn cancel(&self, entitlement_id: &str, policy: CancellationPolicy) -> anyhow::Result<()> {
        buyer::cancel(&self.shared, entitlement_id, policy)
    }

    pub fn revert_cancellation(&self, entitlement_id: &str) -> anyhow::Result<()> {
        buyer::revert_cancellation(&self.shared, entitlement_id)
    }

    /// A pending cancellation reaches its term's end.
    pub fn end_term(&self, entitlement_id: &str) -> anyhow::Result<()> {
        buyer::end_term(&self.shared, entitlement_id)
    }

    pub fn renew(&self, entitlement_id: &str, until: OffsetDateTime) -> anyhow::Result<()> {
        buyer::renew(&self.shared, entitlement_id, until)
    }

    pub fn account(&self, id: &str) -> Option<Account> {
        self.shared.lock().accounts.get(id).cloned()
    }

    pub fn entitlement(&self, id: &str) -> Option<Entitlement> {
        self.shared.lock().entitlements.get(id).cloned()
    }

    /// Usage reports accepted, oldest first.
    pub fn usage_ledger(&self) -> Vec<UsageRecord> {
        self.shared.lock().usage.records.clone()
    }

    /// `services.check` answers with this error until `clear_check_errors`.
    pub fn inject_check_error(&self, error: InjectedCheckError) {
        self.shared.lock().usage.check_errors.push(error);
    }

    pub fn clear_check_errors(&self) {
        self.shared.lock().usage.check_errors.clear();
    }

    /// Every message published, oldest first (with the ones the chaos switch dropped).
    pub fn published(&self) -> Vec<PublishedMessage> {
        self.shared.lock().queue.published.clone()
    }

    /// Every push attempt, oldest first.
    pub fn push_attempts(&self) -> Vec<PushAttempt> {
        self.shared.lock().queue.push_log.clone()
    }

    /// Switches a fault on (as the fault page does) and returns its id.
    pub fn start_fault(&self, mut fault: crate::switch::FaultConfig) -> anyhow::Result<u64> {
        fault
            .validate(crate::switch::Side::Google)
            .map_err(anyhow::Error::msg)?;
        Ok(self.shared.switches.start(fault, self.shared.clock.now()))
    }

    pub fn set_pubsub_chaos(&self, chaos: PubSubChaos) {
        self.shared.lock().queue.chaos = chaos;
    }
}
