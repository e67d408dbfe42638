//! marketlink-sandbox: emulators of AWS Marketplace, Microsoft's commercial marketplace and
//! Google Cloud Marketplace that speak the real wire protocols, so the demo and the tests run
//! with no cloud account.
//!
//! `aws` serves the metering, entitlement, agreement, SQS, SNS and EventBridge emulation;
//! `azure` serves SaaS Fulfillment v2, Metering and an Entra ID look-alike; `gcp` serves Google
//! Cloud Marketplace's sign-up keys, Procurement API, Pub/Sub and Service Control.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod aws;
pub mod azure;
mod certificate;
mod fuzz_seed;
pub mod gcp;

pub use fuzz_seed::{CORPUS_ENV as FUZZ_CORPUS_ENV, fuzz_seed};
pub mod outage;
pub mod switch;
