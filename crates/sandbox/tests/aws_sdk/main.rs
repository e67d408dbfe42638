//! The AWS sandbox driven by the official AWS SDK clients (default protocols, endpoint override).
//! One test binary; a module per API area.

mod agreement;
mod common;
mod entitlement;
mod metering;
mod notifications;
mod pages;
mod signing;
