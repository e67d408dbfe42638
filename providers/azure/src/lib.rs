//! marketlink-azure: the Microsoft commercial marketplace adapter behind `MarketplaceProvider`.
//!
//! - [`AzureProvider`]: SaaS Fulfillment API v2 (resolve, activate, change plan/quantity,
//!   cancel, operations), Metering (`batchUsageEvent`), webhook authentication (Entra-signed
//!   bearer JWT) and interpretation (confirmed by Get Operation).
//! - [`oidc`]: buyer sign-in on the landing page (OpenID Connect authorization code + PKCE
//!   against Entra, ID-token validation, Graph `/me`) for the web front end.
//!
//! API tokens come from the client-credentials grant of the publisher's Entra app, cached until
//! shortly before expiry ([`AzureConfig::token_refresh_margin_secs`]). Everything goes through
//! one `reqwest` client on rustls; [`AzureConfig::extra_ca_pem`] adds the sandbox's CA.
//!
//! What the web front end calls:
//! - the trait: `resolve` on the landing page (the `token` query value as received; a token
//!   URL-encoded twice is decoded once more), `activate` after sign-up, `authenticate` on
//!   `POST /azure/webhook` (from [`MarketplaceProvider::inbound_endpoints`]);
//! - [`oidc::OidcClient`] for the buyer's Entra sign-in, built with
//!   [`AzureProvider::http_client`] so it trusts the same CA;
//! - optionally [`AzureProvider::available_plans`], [`AzureProvider::wait_for_operation`],
//!   [`AzureProvider::refuse_reinstate`], [`AzureProvider::list_subscriptions`].
//!
//! Answer webhooks fast and only with 2xx once stored: Microsoft reads a 4xx answer to a
//! ChangePlan/ChangeQuantity/Reinstate webhook as a refusal of the change, and auto-accepts a
//! change 10 s after the webhook when nobody PATCHes the operation.
//!
//! [`MarketplaceProvider::inbound_endpoints`]: marketlink_core::MarketplaceProvider::inbound_endpoints
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
pub mod config;
mod diagnose;
mod http;
mod jwt;
mod metering;
pub mod model;
pub mod oidc;
mod provider;
pub mod sign_in;
mod survey;
mod token;
mod webhook;

pub use config::{AzureConfig, ConfigError, MARKETPLACE_RESOURCE_ID, Secret};
pub use http::build_client;
pub use metering::MAX_BATCH;
pub use model::{
    AadIdentity, AvailablePlan, OperationAction, OperationStatus, SaasOperation, SaasStatus,
    SaasSubscription,
};
pub use provider::{AzureProvider, normalize_landing_token};
/// Re-exported so callers can build or pass a client without depending on reqwest themselves.
pub use reqwest;
pub use sign_in::{EntraSignIn, SignInConfig};
pub use webhook::CHANNEL as WEBHOOK_CHANNEL;
