//! The AWS sandbox driven by the official AWS SDK clients (default protocols, endpoint override).
//! One test binary; a module per API area.

mod agreement;
mod common;
mod delivery;
mod entitlement;
mod events;
mod faults;
mod metering;
mod notifications;
mod pages;
mod queues;
mod renewal;
mod search;
mod signing;
