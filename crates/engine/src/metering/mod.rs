//! Metering: usage in (validated, durable, idempotent), hourly totals out to the marketplaces
//! exactly once. ADR 0005 explains the design.

mod flush;
mod ingest;

use std::time::Duration as StdDuration;

use marketlink_core::{Catalog, DimensionKind, Marketplace, Product, Subscription};
use time::{Duration, OffsetDateTime, Time};

use crate::backoff::Backoff;

pub(crate) use self::ingest::IngestWriter;
pub use self::{
    flush::FlushRun,
    ingest::{IngestError, IngestErrorKind, UsageInput},
};

/// The most records one provider call carries (both marketplaces take 25).
pub const MAX_BATCH: usize = 25;

/// How the metering engine behaves; `[metering]` in the configuration.
#[derive(Debug, Clone)]
pub struct MeteringSettings {
    /// SHA-256 digests of the API keys that may report usage (`POST /api/v1/usage`).
    pub api_key_hashes: Vec<[u8; 32]>,
    /// How often the flusher runs.
    pub flush_interval: StdDuration,
    /// Records per provider call (at most [`MAX_BATCH`]).
    pub batch_size: usize,
    /// Hours claimed per flush round.
    pub claim_limit: u32,
    /// Provider calls in flight at once.
    pub concurrency: usize,
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
            batch_size: MAX_BATCH,
            claim_limit: 500,
            concurrency: 4,
            settle: Duration::minutes(5),
            lease: Duration::minutes(5),
            max_batch_events: 10_000,
            future_tolerance: Duration::minutes(5),
            delivery_margin: Duration::minutes(30),
            backoff: Backoff {
                base: Duration::seconds(5),
                max: Duration::minutes(30),
                max_attempts: 12,
            },
        }
    }
}

/// The start of the hour `t` falls in.
pub fn hour_floor(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::MIDNIGHT) + Duration::hours(i64::from(t.hour()))
}

/// The last moment a record for `hour` is accepted: both marketplaces refuse usage 24 hours
/// or more after the event; AWS takes the previous month's usage only until 06:00 UTC on the 1st.
pub fn delivery_deadline(marketplace: &Marketplace, hour: OffsetDateTime) -> OffsetDateTime {
    let window = hour + Duration::hours(24);
    if *marketplace != Marketplace::AWS {
        return window;
    }
    let (year, month) = if hour.month() == time::Month::December {
        (hour.year() + 1, time::Month::January)
    } else {
        (hour.year(), hour.month().next())
    };
    match time::Date::from_calendar_date(year, month, 1) {
        Ok(first) => window.min(first.with_hms(6, 0, 0).map_or(window, |t| t.assume_utc())),
        Err(_) => window,
    }
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
    fn hours_and_deadlines() {
        assert_eq!(
            hour_floor(datetime!(2026-11-25 10:59:59.9 UTC)),
            datetime!(2026-11-25 10:00 UTC)
        );
        let h = datetime!(2026-11-25 10:00 UTC);
        assert_eq!(
            delivery_deadline(&Marketplace::AWS, h),
            datetime!(2026-11-26 10:00 UTC)
        );
        // Month end: AWS only until 06:00 UTC on the 1st.
        let last = datetime!(2026-11-30 23:00 UTC);
        assert_eq!(
            delivery_deadline(&Marketplace::AWS, last),
            datetime!(2026-12-01 06:00 UTC)
        );
        assert_eq!(
            delivery_deadline(&Marketplace::AZURE, last),
            datetime!(2026-12-01 23:00 UTC)
        );
        assert_eq!(
            delivery_deadline(&Marketplace::AWS, datetime!(2026-12-31 22:00 UTC)),
            datetime!(2027-01-01 06:00 UTC)
        );
    }
}
