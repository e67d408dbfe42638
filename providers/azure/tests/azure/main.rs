//! The Azure adapter against the Azure sandbox (over HTTPS with its generated CA): tokens,
//! fulfillment, operations, webhooks from both sides, metering and buyer sign-in.

mod changes;
mod common;
mod credentials;
mod fulfillment;
mod metering;
mod oidc;
mod resolve;
mod tokens;
mod webhook_answers;
mod webhooks;
