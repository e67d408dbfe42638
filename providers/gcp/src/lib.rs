//! marketlink-gcp: Google Cloud Marketplace (integrated SaaS) behind `MarketplaceProvider`.
//!
//! This file holds the wiring: [`GcpProvider`] and its constructor (no network call). The
//! trait impl (`provider`) hands each call to one module per Google surface:
//! - `signup` + `keys`: the `x-gcp-marketplace-token` JWT of the buyer's sign-up POST,
//!   verified against the pinned cloud-commerce-partner certificates;
//! - `procurement` + `model`: Partner Procurement API v1 (accounts and entitlements);
//!   one marketlink subscription is one entitlement;
//! - `pubsub`: push (OIDC bearer) and pull (REST `:pull` / `:acknowledge`) of Procurement's
//!   pointer messages; `events` re-reads the resource and maps (eventType, state) to events;
//! - `usage`: Service Control `services.check` then `services.report`;
//! - `auth` + `http`: the service account's token (key file: JWT-bearer grant; otherwise ADC
//!   through `gcp_auth`) and Google's error shape.
//!
//! Facts and sources: /work/shared/specs/gcp.md (section and S# tags in the comments).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod body;
pub mod config;
mod diagnose;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod keys;
pub mod model;
mod procurement;
mod provider;
mod pubsub;
mod signup;
mod usage;

use std::{sync::Arc, time::Duration as StdDuration};

use marketlink_core::{Clock, InboundEndpoint, Marketplace, ProviderError};
use time::Duration;

pub use config::{GcpConfig, PushConfig, SIGNUP_ISSUER};
pub use signup::SignUp;
pub use usage::operation_id;

/// The Pub/Sub push endpoint's channel.
pub const PUSH_CHANNEL: &str = "pubsub-push";
/// Messages taken by `pull`.
pub const PULL_CHANNEL: &str = "pubsub-pull";

static INBOUND_ENDPOINTS: &[InboundEndpoint] = &[InboundEndpoint {
    path: "/gcp/pubsub",
    channel: PUSH_CHANNEL,
}];

pub struct GcpProvider {
    marketplace: Marketplace,
    config: GcpConfig,
    clock: Arc<dyn Clock>,
    api: http::Api,
    signup_keys: keys::KeyCache,
    oidc_keys: keys::KeyCache,
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GcpProvider {
    /// Validates the configuration and reads the key file; no network call.
    pub fn new(config: GcpConfig, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        config.validate().map_err(ProviderError::Configuration)?;
        let marketplace =
            Marketplace::parse("gcp").map_err(|e| ProviderError::Configuration(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(StdDuration::from_secs(config.request_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProviderError::Configuration(format!("HTTP client: {e}")))?;
        let credentials = auth::Credentials::new(
            config.credentials_file.as_deref(),
            config.token_url.as_deref(),
            http.clone(),
            clock.clone(),
        )?;
        let ttl = Duration::seconds(i64::try_from(config.keys_cache_secs).unwrap_or(3600));
        Ok(Self {
            signup_keys: keys::KeyCache::new(
                config.signup_keys_url.clone(),
                ttl,
                http.clone(),
                clock.clone(),
            ),
            oidc_keys: keys::KeyCache::new(
                config.oidc_keys_url.clone(),
                ttl,
                http.clone(),
                clock.clone(),
            ),
            api: http::Api { http, credentials },
            marketplace,
            config,
            clock,
        })
    }

    fn procurement(&self) -> procurement::Procurement<'_> {
        procurement::Procurement {
            api: &self.api,
            base: &self.config.procurement_url,
            provider_id: &self.config.provider_id,
        }
    }

    fn skew_secs(&self) -> i64 {
        i64::try_from(self.config.clock_skew_secs).unwrap_or(60)
    }

    /// Verifies a sign-up token without reading Procurement (tests and tools).
    pub async fn verify_sign_up(&self, token: &str) -> Result<SignUp, ProviderError> {
        signup::SignUpVerifier {
            keys: &self.signup_keys,
            audience: &self.config.service_name,
            now: self.clock.now(),
            skew_secs: self.skew_secs(),
        }
        .verify(token)
        .await
    }

    /// The entitlement as Google has it now (tests and tools).
    pub async fn entitlement(&self, id: &str) -> Result<model::Entitlement, ProviderError> {
        self.procurement().entitlement(id).await
    }

    /// The account as Google has it now (tests and tools).
    pub async fn account(&self, id: &str) -> Result<model::Account, ProviderError> {
        self.procurement().account(id).await
    }
}
