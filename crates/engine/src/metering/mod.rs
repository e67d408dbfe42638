//! Metering: usage in (validated, durable, idempotent), hourly totals out to the marketplaces
//! exactly once. ADR 0005 explains the design.

mod flush;
mod ingest;
mod writer;

use std::time::Duration as StdDuration;

use marketlink_core::{Catalog, DimensionKind, Product, Subscription};
use time::{Duration, OffsetDateTime, Time};

use crate::backoff::Backoff;

pub(crate) use self::writer::IngestWriter;
pub use self::{
    flush::FlushRun,
    ingest::{IngestError, IngestErrorKind, UsageInput},
};

/// How the metering engine behaves; `[metering]` in the configuration.
#[derive(Debug, Clone)]
pub struct MeteringSettings {
    /// SHA-256 digests of the API keys that may report usage (`POST /api/v1/usage`).
    pub api_key_hashes: Vec<[u8; 32]>,
    /// How often the flusher runs.
    pub flush_interval: StdDuration,
    /// Records per provider call; each marketplace's own limit
    /// ([`UsageRules::max_batch`](marketlink_core::UsageRules::max_batch)) caps it further.
    pub batch_size: usize,
    /// Hours claimed per flush round.
    pub claim_limit: u32,
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// Subscriptions one flush run keeps between its claims (what their records are sent
    /// with, about 0.4 kB each); past it, the others are read again with each claim.
    pub cached_subscriptions: usize,
    /// How long after an hour ends it is sent (late events still count toward it).
    pub settle: Duration,
    /// How long a claim is held before another flusher may take it over.
    pub lease: Duration,
    /// Events per ingest request.
    pub max_batch_events: usize,
    /// Events stamped up to this far in the future are accepted (clock skew).
    pub future_tolerance: Duration,
    /// Events are refused when their hour could not be delivered within this margin before
    /// the marketplace's deadline.
    pub delivery_margin: Duration,
    pub backoff: Backoff,
}

impl Default for MeteringSettings {
    fn default() -> Self {
        Self {
            api_key_hashes: Vec::new(),
            flush_interval: StdDuration::from_secs(60),
            batch_size: 25,
            claim_limit: 500,
            concurrency: 4,
            cached_subscriptions: 20_000,
            settle: Duration::minutes(5),
            lease: Duration::minutes(5),
            max_batch_events: 10_000,
            future_tolerance: Duration::minutes(5),
            delivery_margin: Duration::minutes(30),
            // Capped at 5 minutes: once a marketplace is back, the backlog goes out within one
            // cap (30 minutes left an outage of minutes waiting as long again). 30 attempts
            // keep about one to two hours of outage before an hour is given up.
            backoff: Backoff {
                base: Duration::seconds(5),
                max: Duration::minutes(5),
                max_attempts: 30,
            },
        }
    }
}

/// The start of the hour `t` falls in.
pub fn hour_floor(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::MIDNIGHT) + Duration::hours(i64::from(t.hour()))
}

/// The catalog product a subscription belongs to.
pub fn product_of<'a>(catalog: &'a Catalog, subscription: &Subscription) -> Option<&'a Product> {
    subscription
        .product_id
        .as_ref()
        .and_then(|id| catalog.product(id))
        .or_else(|| {
            catalog.by_listing(
                &subscription.external.marketplace,
                &subscription.external.product_code,
            )
        })
}

/// The metered dimensions usage may be reported on: those of the subscription's plan, or of
/// every plan of its product when the plan is unknown to the catalog.
pub fn metered_dimensions(catalog: &Catalog, subscription: &Subscription) -> Vec<String> {
    let Some(product) = product_of(catalog, subscription) else {
        return Vec::new();
    };
    let plans: Vec<_> = match subscription.plan_id.as_ref().and_then(|p| product.plan(p)) {
        Some(plan) => vec![plan],
        None => product.plans.iter().collect(),
    };
    let mut dims: Vec<String> = plans
        .iter()
        .flat_map(|p| &p.dimensions)
        .filter(|d| d.kind == DimensionKind::Metered)
        .map(|d| d.id.clone())
        .collect();
    dims.sort();
    dims.dedup();
    dims
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(
            hour_floor(datetime!(2026-11-25 10:59:59.9 UTC)),
            datetime!(2026-11-25 10:00 UTC)
        );
        assert_eq!(
            hour_floor(datetime!(2026-11-25 10:00 UTC)),
            datetime!(2026-11-25 10:00 UTC)
        );
    }
}
