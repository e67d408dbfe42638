//! The store's conformance suite: every story runs on SQLite and on PostgreSQL. One test
//! binary (link time dominates), a module per area.

mod common;

mod backup;
mod migrations;
mod names_and_times;
mod onboarding;
mod people;
mod queue;
mod retention;
mod sessions;
mod subscriptions;
mod usage_barrier;
mod usage_caps;
mod usage_claims;
mod usage_due;
mod usage_hours;
mod usage_ingest;
mod verification;

use marketlink_core::{ExternalRef, Marketplace, Subscription, Tenant};
use time::{OffsetDateTime, macros::datetime};

/// The stories' clock: every timestamp is an offset from it.
const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

/// An AWS subscription's marketplace reference.
fn aws_ref(customer: &str, product: &str) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: ExternalRef::aws_classic_id(customer, product),
        product_code: product.into(),
        customer_id: customer.into(),
        customer_account_id: Some("111122223333".into()),
        license_arn: None,
    }
}

/// A valid tenant called `name`.
fn tenant(name: &str) -> Tenant {
    Tenant::new(name, Some("Acme Corp"), "ops@acme.example", T0).unwrap()
}

/// `units` of `dimension` reported at `at`, in the hour `at` falls in.
fn usage_event(
    sub: &Subscription,
    dimension: &str,
    at: OffsetDateTime,
    units: u32,
    key: Option<&str>,
) -> marketlink_store::NewUsageEvent {
    marketlink_store::NewUsageEvent {
        id: uuid::Uuid::now_v7(),
        subscription_id: sub.id,
        dimension: dimension.into(),
        occurred_at: at,
        hour: at.replace_minute(0).unwrap().replace_second(0).unwrap(),
        quantity: marketlink_core::Quantity::from_units(units),
        idempotency_key: key.map(str::to_owned),
        allocations: vec![],
        hour_cap: None,
    }
}
