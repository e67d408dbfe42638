//! End-to-end journeys through the real server and the marketplace sandboxes.

mod aws;
mod azure;
mod metering;
