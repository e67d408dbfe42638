//! marketlink-azure: the Microsoft commercial marketplace adapter behind `MarketplaceProvider`.
//!
//! This file holds the wiring: [`AzureProvider`] and its constructor. `provider` implements the
//! trait by handing each call to one module per Microsoft API:
//! - `fulfillment`: SaaS Fulfillment API v2 subscription calls (Resolve, Activate, change plan
//!   or quantity, Unsubscribe, Get/List subscriptions, listAvailablePlans), through the
//!   authenticated `client`;
//! - `operations`: Get Operation, pending operations, and the Success/Failure answer to a
//!   marketplace-initiated change;
//! - `metering`: `batchUsageEvent`, at most [`MAX_BATCH`] events a call;
//! - `webhook`: authentication of Microsoft's webhook (Entra-signed bearer JWT, checked in
//!   `jwt`) and its interpretation, confirmed by Get Operation;
//! - `diagnose` (`marketlink doctor`) and `survey` (reconciliation: every subscription);
//! - `token`: the publisher app's API token from an `azure_identity` credential (`credential`:
//!   client secret, certificate, workload identity or managed identity, over our own HTTP
//!   client), cached by our `Clock` until shortly before expiry
//!   ([`AzureConfig::token_refresh_margin_secs`]); a token the API refuses (401 or 403:
//!   Microsoft's clock may have expired it) is replaced once per call, in `client`;
//! - `retry`: Resolve's retries of throttling, 5xx and timeouts ([`AzureConfig::max_attempts`]).
//!
//! Buyer sign-in on the landing page: [`EntraSignIn`] (`sign_in`) implements the core
//! `BuyerSignIn` with [`oidc`] (OpenID Connect authorization code + PKCE against Entra,
//! ID-token validation, Graph `/me`); attach it with [`AzureProvider::with_buyer_sign_in`] and
//! the web front end finds it through `MarketplaceProvider::buyer_sign_in`.
//!
//! Everything goes through one `reqwest` client on rustls; [`AzureConfig::extra_ca_pem`] adds
//! the sandbox's CA.
//!
//! What the rest of marketlink calls: the trait only (`resolve` on the landing page with the
//! `token` query value as received, a token URL-encoded twice being decoded once more and the
//! spaces of an un-encoded one read as `+`;
//! `activate`, `change_plan`, `change_quantity`, `cancel`, `available_plans` and
//! `respond_to_change` from the engine; `authenticate` on `POST /azure/webhook`, from
//! `inbound_endpoints`; `interpret`, `report_usage`, `entitlements`, `diagnose`, `survey`).
//! The inherent reads ([`AzureProvider::subscription`], [`AzureProvider::list_subscriptions`],
//! [`AzureProvider::wait_for_operation`], ...) serve tests and tools.
//!
//! Answer webhooks fast and only with 2xx once stored: Microsoft reads a 4xx answer to a
//! ChangePlan/ChangeQuantity/Reinstate webhook as a refusal of the change, and auto-accepts a
//! change 10 s after the webhook when nobody PATCHes the operation.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
pub mod config;
mod credential;
mod credential_config;
mod diagnose;
mod fulfillment;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod jwt;
mod metering;
pub mod model;
pub mod oidc;
mod operations;
mod provider;
mod retry;
pub mod sign_in;
mod survey;
mod token;
mod webhook;

use std::{sync::Arc, time::Duration};

pub use config::{AzureConfig, ConfigError, MARKETPLACE_RESOURCE_ID, Secret, WebhookAuth};
pub use credential_config::{CredentialConfig, FEDERATED_TOKEN_FILE_ENV};
pub use fulfillment::normalize_landing_token;
pub use http::build_client;
use marketlink_core::{BuyerSignIn, Clock, InboundEndpoint, ProviderError};
pub use metering::MAX_BATCH;
pub use model::{
    AadIdentity, AvailablePlan, OperationAction, OperationStatus, SaasOperation, SaasStatus,
    SaasSubscription,
};
/// Re-exported so callers can build or pass a client without depending on reqwest themselves.
pub use reqwest;
pub use sign_in::{EntraSignIn, SignInConfig};
pub use webhook::CHANNEL as WEBHOOK_CHANNEL;

use crate::{
    client::ApiClient,
    jwt::{JwksCache, JwksSource},
    token::TokenSource,
};

/// The endpoints the web front end mounts for Azure.
pub(crate) static ENDPOINTS: [InboundEndpoint; 1] = [InboundEndpoint {
    path: "/azure/webhook",
    channel: webhook::CHANNEL,
}];

/// The Microsoft commercial marketplace adapter. Cheap to share (`Arc`); holds the HTTP client,
/// the cached API token and the cached webhook signing keys.
pub struct AzureProvider {
    pub(crate) api: ApiClient,
    pub(crate) config: Arc<AzureConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jwks: JwksCache,
    /// `config.accepted_webhook_issuers()`, expanded once rather than for every webhook.
    pub(crate) webhook_issuers: Vec<String>,
    /// Retries of calls nothing else retries (Resolve).
    pub(crate) retry: retry::RetryPolicy,
    /// Entra sign-in for buyers on the landing page, once discovered.
    pub(crate) buyer_sign_in: Option<Arc<dyn BuyerSignIn>>,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// Requires buyers to sign in with `sign_in` before their landing token is resolved.
    pub fn with_buyer_sign_in(mut self, sign_in: Arc<dyn BuyerSignIn>) -> Self {
        self.buyer_sign_in = Some(sign_in);
        self
    }

    /// Builds the adapter; no network call is made until first use.
    pub fn new(config: AzureConfig, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        config
            .validate()
            .map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let ca = config
            .extra_ca_pem_bytes()
            .map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let http = build_client(ca.as_deref(), Duration::from_secs(config.http_timeout_secs))?;
        let retry = retry::RetryPolicy {
            max_attempts: config.max_attempts,
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
        };
        let config = Arc::new(config);
        let source = match &config.jwks_url {
            Some(url) => JwksSource::Url(url.clone()),
            None => JwksSource::Discovery(config.discovery_url()),
        };
        let jwks = JwksCache::new(
            http.clone(),
            source,
            clock.clone(),
            Duration::from_secs(config.jwks_min_refetch_secs),
            Duration::from_secs(config.jwks_max_age_secs),
        );
        Ok(Self {
            api: ApiClient {
                config: config.clone(),
                tokens: TokenSource::new(http.clone(), config.clone(), clock.clone()),
                http,
            },
            webhook_issuers: config.accepted_webhook_issuers(),
            config,
            clock,
            jwks,
            retry,
            buyer_sign_in: None,
        })
    }

    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    /// The HTTP client this adapter uses (trusting `extra_ca_pem`), e.g. for
    /// [`crate::oidc::OidcClient::discover`] against the same authority.
    pub fn http_client(&self) -> reqwest::Client {
        self.api.http.clone()
    }

    /// How many times the webhook JWKS was downloaded (metrics, tests).
    pub fn jwks_fetch_count(&self) -> u64 {
        self.jwks.fetch_count()
    }
}
