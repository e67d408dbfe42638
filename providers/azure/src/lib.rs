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
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
pub mod config;
mod http;
mod jwt;
mod metering;
pub mod model;
pub mod oidc;
mod provider;
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
pub use webhook::CHANNEL as WEBHOOK_CHANNEL;
