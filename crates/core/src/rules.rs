//! What differs from one marketplace to the next, declared by its provider so that the engine
//! and the web front end never test which marketplace they hold.

use std::borrow::Cow;

use time::{Date, Duration, Month, OffsetDateTime, Time};

/// A marketplace's rules, as its provider declares them
/// ([`MarketplaceProvider::rules`](crate::MarketplaceProvider::rules)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketplaceRules {
    /// How buyers know the marketplace, e.g. "AWS Marketplace".
    pub display_name: Cow<'static, str>,
    /// What a buyer does to open the set-up link again, shown on landing errors.
    pub return_step: Cow<'static, str>,
    /// The marketplace POSTs the set-up token to the landing page (AWS), so a token in a URL
    /// is not taken: URLs end up in browser history, logs and `Referer` headers, and a link
    /// someone was sent must not stand in for the marketplace's own hand-over.
    pub landing_post_only: bool,
    pub usage: UsageRules,
}

impl MarketplaceRules {
    /// Conservative rules for a marketplace that declares none: the generic label, 25 records
    /// a call, no zero records, no allocation tags, fractions taken, 24 hours to report.
    pub fn generic(display_name: impl Into<Cow<'static, str>>) -> Self {
        let display_name = display_name.into();
        Self {
            return_step: format!("Return to {display_name} and open the set-up link again.").into(),
            display_name,
            landing_post_only: false,
            usage: UsageRules::default(),
        }
    }
}

/// How a marketplace takes metered usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRules {
    /// The most records one `report_usage` call carries.
    pub max_batch: usize,
    /// A record is expected for every hour a subscription is active, zero included (AWS,
    /// seed 001); otherwise a quantity of zero is refused (Microsoft) and never sent.
    pub zero_hours: bool,
    /// The marketplace takes cost-allocation tags on a record (AWS `UsageAllocations`).
    pub allocations: bool,
    /// The marketplace takes only whole units per record, so a fractional quantity can never
    /// be billed. AWS: BatchMeterUsage `Quantity` and `AllocatedUsageQuantity` are integers
    /// ("as a whole number", `shared/specs/aws-models/meteringmarketplace/service-2.json`,
    /// `UsageRecord`), and the SDK this adapter is built on has no `QuantityAsDecimal`.
    /// Microsoft's `quantity` is a decimal (`"type": "number", "format": "double"` in
    /// `shared/specs/microsoft-openapi/meteringapi.v1.json`), so it takes fractions.
    pub whole_units: bool,
    /// How long after an hour its usage is still accepted.
    pub window: Duration,
    /// Usage of a past month is accepted only until this time of day on the 1st of the next
    /// month, UTC (AWS: 06:00), even where the window would reach further.
    pub month_close: Option<Time>,
    /// The most one hour's record may carry, in whole units: usage that would take a
    /// subscription's dimension past it in one hour can never be billed, so it is refused at
    /// ingest. AWS: BatchMeterUsage `Quantity` is an integer of at most 2,147,483,647
    /// (`UsageQuantity` in `shared/specs/aws-models/meteringmarketplace/service-2.json`), and
    /// marketlink sends one record per subscription, dimension and hour. `None`: no cap.
    pub max_hourly_quantity: Option<u64>,
}

impl Default for UsageRules {
    fn default() -> Self {
        Self {
            max_batch: 25,
            zero_hours: false,
            allocations: false,
            whole_units: false,
            window: Duration::hours(24),
            month_close: None,
            max_hourly_quantity: None,
        }
    }
}

impl UsageRules {
    /// The last moment a record for `hour` is accepted.
    pub fn deadline(&self, hour: OffsetDateTime) -> OffsetDateTime {
        let window = hour + self.window;
        let Some(close) = self.month_close else {
            return window;
        };
        let (year, month) = match hour.month() {
            Month::December => (hour.year() + 1, Month::January),
            other => (hour.year(), other.next()),
        };
        match Date::from_calendar_date(year, month, 1) {
            Ok(first) => window.min(first.with_time(close).assume_utc()),
            Err(_) => window,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{datetime, time};

    use super::*;

    #[test]
    fn month_close_cuts_the_window_short() {
        let rules = UsageRules {
            month_close: Some(time!(06:00)),
            ..UsageRules::default()
        };
        let h = datetime!(2026-03-10 14:00 UTC);
        assert_eq!(rules.deadline(h), h + Duration::hours(24));
        let last = datetime!(2026-03-31 23:00 UTC);
        assert_eq!(rules.deadline(last), datetime!(2026-04-01 06:00 UTC));
        let december = datetime!(2026-12-31 22:00 UTC);
        assert_eq!(rules.deadline(december), datetime!(2027-01-01 06:00 UTC));
        assert_eq!(
            UsageRules::default().deadline(last),
            last + Duration::hours(24)
        );
    }

    #[test]
    fn generic_rules_name_the_marketplace() {
        let rules = MarketplaceRules::generic("Example Marketplace");
        assert!(rules.return_step.contains("Example Marketplace"));
        assert_eq!(rules.usage.max_batch, 25);
    }
}
