//! Azure sandbox over HTTP(S): Entra tokens, every Fulfillment and Metering operation with their
//! error statuses, webhooks, the sign-in flow and the buyer pages. Every marketplace response is
//! validated against Microsoft's OpenAPI files (vendored in tests/openapi, MIT).
//! One test binary; a module per API area.

mod assertions;
mod entra;
mod faults;
mod fulfillment;
mod fulfillment_errors;
mod harness;
mod metering;
mod pages;
mod receiver;
mod sign_in_audience;
mod spec;
mod webhooks;
