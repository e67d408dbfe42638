//! Microsoft commercial marketplace and Entra ID emulator (the Azure sandbox issue).
//!
//! One listener (TLS by default, with a CA generated at start) serves everything Azure, on the
//! real services' paths, so a client only swaps host names:
//!
//! | real host | sandbox paths (under `AzureSandboxHandle::base_url`) |
//! |---|---|
//! | `login.microsoftonline.com` (authority host) | `/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/.well-known/openid-configuration`, `/{tenant}/discovery/v2.0/keys`, `/{tenant}/discovery/keys`, `/{tenant}/oauth2/v2.0/authorize`, `/{tenant}/oauth2/v2.0/token`, `/{tenant}/oauth2/token` (v1, `resource=`) |
//! | `marketplaceapi.microsoft.com/api` | `/api/saas/subscriptions/...`, `/api/usageEvent`, `/api/batchUsageEvent`, `/api/usageEvents` (all `?api-version=2018-08-31`) |
//! | `graph.microsoft.com` | `/v1.0/me`, `/oidc/userinfo` |
//! | App Service identity endpoint (`IDENTITY_ENDPOINT`) | `/msi/token` (`app_credentials.identity_header`) |
//! | a Kubernetes cluster's OIDC issuer (workload identity) | `/workload-identity/.well-known/openid-configuration`, `/workload-identity/openid/v1/jwks` |
//! | the Azure portal (buyer side) | `/sandbox/buyer` (buy, change plan/quantity, suspend, reinstate, renew, unsubscribe), `/sandbox/log` (every call, operations, webhook deliveries, usage), `/sandbox/faults` (fault switch), `/sandbox/ca.pem` |
//!
//! Tokens:
//! - Client credentials (`scope={marketplace_resource_id}/.default` on v2, `resource=` on v1) give a
//!   v1-shaped access token (`aud` = marketplace resource id, `iss = https://sts.windows.net/{tid}/`,
//!   `appid`, `tid`), as the real marketplace API receives.
//! - Authorization code (+ PKCE S256) from the sign-in page gives an ID token (v2:
//!   `iss = {base_url}/{tid}/v2.0`, `aud` = client id, `nonce`, `oid`, `tid`, `email` when the user
//!   has mail and `email` was asked) and a delegated Graph token for `/v1.0/me`.
//! - Every marketplace API call needs a bearer token signed by the sandbox with the marketplace
//!   audience and a live `exp` (by the sandbox `Clock`), of the publisher's app: 403 otherwise,
//!   with Microsoft's body (see the README, "Tokens and checks").
//! - Webhook calls carry a v2 token (`aud` = publisher app id, `tid`, `azp` = marketplace app id,
//!   `iss = {base_url}/{tid}/v2.0`) or, with `webhook_token_version = "v1"`, the v1 shape
//!   (`iss = https://sts.windows.net/{tid}/`, `appid`). Verify them with the sandbox JWKS.
//!
//! The issuer of v2 tokens is `{base_url}/{tid}/v2.0` (not `login.microsoftonline.com`) so that
//! OIDC discovery stays self-consistent: a client pointed at the sandbox as its authority host
//! validates issuers the same way as against Entra.
//!
//! Operations: publisher PATCH/DELETE on a subscription succeed at once (202 + `Operation-Location`)
//! and send a `Succeeded` webhook with `operationRequestSource = Partner`. Marketplace-side actions
//! (buyer page or `AzureSandboxHandle::marketplace_action`) send the webhook with
//! `operationRequestSource = Azure`; ChangePlan/ChangeQuantity stay `InProgress` until the vendor
//! PATCHes the operation (Success/Failure), answers the webhook with a 4xx (refusal, the change
//! is reverted unless `apply_refused_changes`) or `change_ack_timeout_ms` (10 s) passes
//! (auto-accept, no second webhook). A Reinstate is notify-only and completes on its own after
//! as long (a PATCH still settles it first, as older docs describe). Deliveries that
//! fail (connection error, 5xx; 4xx for notify-only actions) are retried per
//! `webhook_retry_delays_ms` up to `webhook_max_attempts`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use marketlink_sandbox::azure::{AzureSandbox, AzureSandboxConfig, PurchaseRequest};
//! let mut config = AzureSandboxConfig::default();
//! config.bind = "127.0.0.1:0".parse()?;
//! let sandbox = AzureSandbox::start(config, Arc::new(marketlink_core::clock::SystemClock)).await?;
//! // Trust sandbox.ca_pem (reqwest::Certificate::from_pem) and use sandbox.base_url as the
//! // Entra authority host, `{base_url}/api` as the marketplace API base.
//! let purchase = sandbox
//!     .purchase(PurchaseRequest {
//!         offer_id: "contoso-analytics".into(),
//!         plan_id: "basic".into(),
//!         quantity: None,
//!         buyer_object_id: sandbox.config().users[0].object_id.clone(),
//!         subscription_name: None,
//!         is_test: false,
//!     })
//!     .await?;
//! println!("open {}", purchase.landing_url);
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Scenario TOML: every key of [`AzureSandboxConfig`] (snake case), missing ones take the
//! defaults; see `crates/sandbox/scenarios/azure-default.toml`.

mod auth;
mod config;
mod credentials;
mod entra;
mod errors;
mod fault_page;
mod faults;
mod fulfillment;
mod http;
mod keys;
mod metering;
mod pages;
mod routes;
mod state;
mod webhook;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context;
use marketlink_core::clock::Clock;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

pub use self::{
    config::{
        AzureSandboxConfig, ClientApp, DimensionConfig, GRAPH_RESOURCE_ID, MARKETPLACE_RESOURCE_ID,
        OfferConfig, PERSONAL_ACCOUNTS_TENANT, PlanConfig, SignInAudience, TestUser,
        WebhookTokenVersion,
    },
    credentials::{AppCertificate, AppCredentials, FederatedCredential, TOKEN_EXCHANGE_AUDIENCE},
    faults::InjectedError,
    state::{CallLogEntry, MarketplaceAction, PurchaseRequest, UsageRecord, WebhookAttempt},
};
use self::{
    keys::{SigningKey, TlsMaterial},
    state::State,
};

/// State shared by every handler and background task.
pub(crate) struct Shared {
    pub config: AzureSandboxConfig,
    pub clock: Arc<dyn Clock>,
    pub key: Arc<SigningKey>,
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    state: Mutex<State>,
    pub http: reqwest::Client,
    pub shutdown: watch::Receiver<bool>,
    /// PEM of the generated CA (served at `/sandbox/ca.pem`).
    pub ca_pem: String,
    /// Errors tests asked for (`AzureSandboxHandle::inject_errors`).
    pub faults: Mutex<faults::Faults>,
    /// Outages tests switched on (`AzureSandboxHandle::start_outage`).
    pub outages: crate::outage::Outages,
    /// Faults of the scenario and the fault page (`/sandbox/faults`).
    pub switches: crate::switch::Switches,
    /// `jti`s of certificate client assertions already presented (single use).
    pub used_assertions: Mutex<std::collections::HashSet<String>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// v2 issuer of tenant `tid`.
    pub fn issuer_v2(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.base_url)
    }

    /// Sleeps `d` unless the sandbox shuts down first; returns false on shutdown.
    pub async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        if *rx.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = rx.changed() => false,
        }
    }
}

/// The Azure sandbox; see the module docs.
pub struct AzureSandbox;

impl AzureSandbox {
    /// Binds `config.bind` (TLS unless `config.tls` is false) and serves until
    /// [`AzureSandboxHandle::shutdown`].
    pub async fn start(
        config: AzureSandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<AzureSandboxHandle> {
        config.validate()?;
        let key = tokio::task::spawn_blocking(SigningKey::shared)
            .await
            .context("signing key task")??;
        let tls = TlsMaterial::generate()?;
        let listener = std::net::TcpListener::bind(config.bind)
            .with_context(|| format!("azure sandbox: binding {}", config.bind))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls { "https" } else { "http" };
        let host = match addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_string(),
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let base_url = format!("{scheme}://{host}:{}", addr.port());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("webhook HTTP client")?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut faults = config.faults.clone();
        crate::switch::validate_all(&mut faults, crate::switch::Side::Microsoft)?;
        let switches = crate::switch::Switches::from_scenario(&faults, clock.now());
        let shared = Arc::new(Shared {
            config,
            clock,
            key,
            base_url: base_url.clone(),
            state: Mutex::new(State::default()),
            http,
            shutdown: shutdown_rx,
            ca_pem: tls.ca_pem.clone(),
            faults: Mutex::new(Vec::new()),
            outages: crate::outage::Outages::default(),
            switches,
            used_assertions: Mutex::new(Default::default()),
        });
        let app = routes::router(shared.clone());
        let server_handle = axum_server::Handle::<SocketAddr>::new();
        let server = if shared.config.tls {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config);
            let server =
                axum_server::from_tcp_rustls(listener, rustls)?.handle(server_handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "azure sandbox server stopped");
                }
            })
        } else {
            let server = axum_server::from_tcp(listener)?.handle(server_handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "azure sandbox server stopped");
                }
            })
        };
        tracing::info!(%base_url, "Azure sandbox listening on {base_url}");
        Ok(AzureSandboxHandle {
            base_url,
            ca_pem: tls.ca_pem,
            shared,
            server_handle,
            server,
            shutdown_tx,
        })
    }
}

/// A purchase waiting for the vendor's landing page.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub subscription_id: Uuid,
    /// The raw (not URL-encoded) landing token, valid 24 h.
    pub token: String,
    /// `{landing_url}?token=<URL-encoded token>`.
    pub landing_url: String,
}

/// A running sandbox.
pub struct AzureSandboxHandle {
    /// `https://127.0.0.1:PORT`: the Entra authority host and the root of every other path.
    pub base_url: String,
    /// PEM of the generated CA that signed the server certificate; trust it on the vendor side.
    pub ca_pem: String,
    shared: Arc<Shared>,
    server_handle: axum_server::Handle<SocketAddr>,
    server: tokio::task::JoinHandle<()>,
    shutdown_tx: watch::Sender<bool>,
}

impl AzureSandboxHandle {
    pub fn config(&self) -> &AzureSandboxConfig {
        &self.shared.config
    }

    /// Authority host for Entra clients (`azure_identity` `authority_host`, OIDC issuer base).
    pub fn authority_host(&self) -> &str {
        &self.base_url
    }

    /// Base URL of the Fulfillment and Metering APIs (`https://127.0.0.1:PORT/api`).
    pub fn marketplace_api_base(&self) -> String {
        format!("{}/api", self.base_url)
    }

    /// Graph base (`https://127.0.0.1:PORT/v1.0`).
    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// The buyer page (`/sandbox/buyer`).
    pub fn buyer_page_url(&self) -> String {
        format!("{}/sandbox/buyer", self.base_url)
    }

    /// `{base_url}/{tenant}/v2.0`, the v2 issuer and OIDC discovery base of `tenant`.
    pub fn issuer_v2(&self, tenant: &str) -> String {
        self.shared.issuer_v2(tenant)
    }

    /// The JWKS document the sandbox publishes.
    pub fn jwks(&self) -> Value {
        self.shared.key.jwks(&self.shared.issuer_v2("{tenantid}"))
    }

    /// Buys a plan as a test user: the subscription is `PendingFulfillmentStart` and a landing
    /// token is issued (what the buyer page does before redirecting).
    pub async fn purchase(&self, request: PurchaseRequest) -> anyhow::Result<Purchase> {
        let now = self.shared.now();
        let mut state = self.shared.lock();
        let id = state
            .purchase(&self.shared.config, &request, now)
            .map_err(anyhow::Error::msg)?;
        let token = state.issue_landing_token(id, now + self.landing_ttl());
        drop(state);
        Ok(Purchase {
            subscription_id: id,
            landing_url: pages::landing_url(&self.shared.config.landing_url, &token),
            token,
        })
    }

    /// A new landing token for an existing subscription ("Manage account" / "Configure account").
    pub async fn landing_token(&self, subscription_id: Uuid) -> anyhow::Result<String> {
        let now = self.shared.now();
        let mut state = self.shared.lock();
        if state.subscription(subscription_id).is_none() {
            anyhow::bail!("unknown subscription {subscription_id}");
        }
        Ok(state.issue_landing_token(subscription_id, now + self.landing_ttl()))
    }

    fn landing_ttl(&self) -> time::Duration {
        time::Duration::seconds(self.shared.config.landing_token_ttl_secs)
    }

    /// The subscription as the Fulfillment API returns it.
    pub async fn subscription(&self, subscription_id: Uuid) -> Option<Value> {
        let state = self.shared.lock();
        state
            .subscription(subscription_id)
            .map(|s| s.to_json(&self.shared.config.publisher_id))
    }

    /// Every subscription, in creation order, as the Fulfillment API returns them.
    pub async fn subscriptions(&self) -> Vec<Value> {
        let state = self.shared.lock();
        state
            .subscriptions
            .iter()
            .map(|s| s.to_json(&self.shared.config.publisher_id))
            .collect()
    }

    /// Operations of a subscription (all statuses), oldest first, as `SaaSOperation` JSON.
    pub async fn operations(&self, subscription_id: Uuid) -> Vec<Value> {
        let state = self.shared.lock();
        state
            .operations
            .iter()
            .filter(|o| o.subscription_id == subscription_id)
            .map(|o| o.to_json(&self.shared.config.publisher_id))
            .collect()
    }

    /// One operation as `SaaSOperation` JSON.
    pub async fn operation(&self, operation_id: Uuid) -> Option<Value> {
        let state = self.shared.lock();
        state
            .operation(operation_id)
            .map(|o| o.to_json(&self.shared.config.publisher_id))
    }

    /// The metering ledger: every accepted usage event.
    pub async fn usage_events(&self) -> Vec<UsageRecord> {
        self.shared.lock().usage.clone()
    }

    /// Every webhook delivery attempt so far.
    pub async fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        self.shared.lock().webhook_attempts.clone()
    }

    /// Every HTTP call served (capped at the last 2000).
    pub async fn call_log(&self) -> Vec<CallLogEntry> {
        self.shared.lock().calls.iter().cloned().collect()
    }

    /// A marketplace-side action (buyer or Microsoft): creates the operation and sends the
    /// webhook; returns the operation id.
    pub async fn marketplace_action(
        &self,
        subscription_id: Uuid,
        action: MarketplaceAction,
    ) -> anyhow::Result<Uuid> {
        webhook::marketplace_action(&self.shared, subscription_id, &action)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.status, e.body))
    }

    /// Makes the next `times` marketplace API calls whose path ends with `path_suffix` (e.g.
    /// `"/saas/subscriptions/resolve"`, or `"*"` for any) answer `error` (see `faults`).
    pub fn inject_errors(&self, path_suffix: &str, error: InjectedError, times: u32) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((path_suffix.to_owned(), error, times));
    }

    /// Starts an outage: every call whose path ends with `path_suffix` (`"/api/usageEvent"`,
    /// `"/discovery/v2.0/keys"` for the JWKS, `"*"`: every call) answers 503 or has its
    /// connection closed (`kind`), for `duration` of the sandbox clock or until
    /// [`Self::end_outages`]. Unlike `inject_errors` it covers Entra's endpoints too.
    pub fn start_outage(
        &self,
        path_suffix: &str,
        kind: crate::outage::OutageKind,
        duration: Option<std::time::Duration>,
    ) {
        let duration = duration.and_then(|d| time::Duration::try_from(d).ok());
        self.shared
            .outages
            .start(path_suffix, kind, duration, self.shared.now());
    }

    /// Ends every outage.
    pub fn end_outages(&self) {
        self.shared.outages.end();
    }

    /// Calls turned away by outages so far.
    pub fn outage_refusals(&self) -> u64 {
        self.shared.outages.refused()
    }

    /// The faults of the scenario and the fault page, ended ones included, with what each
    /// caught.
    pub fn faults(&self) -> Vec<crate::switch::FaultView> {
        self.shared.switches.list(self.shared.now())
    }

    /// A signed webhook bearer token as the sandbox would send it now.
    pub fn mint_webhook_token(&self) -> anyhow::Result<String> {
        webhook::webhook_token(&self.shared)
    }

    /// A token of the sandbox's workload issuer (`{base_url}/workload-identity`, standing for a
    /// Kubernetes cluster's OIDC issuer) for `subject`, audience `api://AzureADTokenExchange`,
    /// valid `lifetime_secs` by the sandbox clock: what AKS projects into
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn mint_federated_token(
        &self,
        subject: &str,
        lifetime_secs: i64,
    ) -> anyhow::Result<String> {
        let now = self.shared.now().unix_timestamp();
        self.shared.key.sign(&serde_json::json!({
            "iss": credentials::workload_issuer(&self.base_url),
            "sub": subject,
            "aud": [TOKEN_EXCHANGE_AUDIENCE],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_secs,
        }))
    }

    /// The App Service managed identity endpoint (`IDENTITY_ENDPOINT`), on loopback.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url)
    }

    /// Stops the listener and every background task (webhook retries, auto-accept timers).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.server_handle
            .graceful_shutdown(Some(Duration::from_secs(2)));
        let _ = self.server.await;
    }
}
