//! A marketplace that counts what it is sent and declares the usage rules a test needs.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, ChangeOutcome, Entitlement, ExternalRef, InboundMessage,
    LandingToken, Marketplace, MarketplaceEvent, MarketplaceProvider, MarketplaceRules, PlanId,
    ProviderError, ResolvedPurchase, UsageOutcome, UsageRecord,
};
use time::macros::time;

/// A marketplace that records every record it is sent, answering per dimension as told.
pub(crate) struct Counting {
    pub(crate) marketplace: Marketplace,
    pub(crate) sent: Mutex<Vec<UsageRecord>>,
    pub(crate) batches: Mutex<Vec<usize>>,
    /// Whole-call failures still to produce, in order.
    pub(crate) failures: Mutex<VecDeque<ProviderError>>,
    /// Outcome per dimension; Accepted otherwise.
    pub(crate) outcomes: Mutex<HashMap<String, UsageOutcome>>,
    pub(crate) delay: StdDuration,
    /// The most records the marketplace takes in one call.
    pub(crate) max_batch: usize,
    /// Declares that it takes whole units only (AWS's rule; off by default so the flush
    /// tests can sum fractions).
    pub(crate) whole_units: bool,
}

impl Counting {
    pub(crate) fn new(marketplace: Marketplace) -> Arc<Self> {
        Self::taking(marketplace, 25)
    }

    /// A marketplace that takes at most `max_batch` records per call.
    pub(crate) fn taking(marketplace: Marketplace, max_batch: usize) -> Arc<Self> {
        Arc::new(Self::fresh(marketplace, max_batch))
    }

    /// A marketplace that takes only whole units per record, like AWS.
    pub(crate) fn whole_units_only(marketplace: Marketplace) -> Arc<Self> {
        Arc::new(Self {
            whole_units: true,
            ..Self::fresh(marketplace, 25)
        })
    }

    fn fresh(marketplace: Marketplace, max_batch: usize) -> Self {
        Self {
            marketplace,
            sent: Mutex::default(),
            batches: Mutex::default(),
            failures: Mutex::default(),
            outcomes: Mutex::default(),
            delay: StdDuration::ZERO,
            max_batch,
            whole_units: false,
        }
    }

    pub(crate) fn sent(&self) -> Vec<UsageRecord> {
        self.sent.lock().unwrap().clone()
    }
}

fn unsupported() -> ProviderError {
    ProviderError::Configuration("not scripted".into())
}

#[async_trait]
impl MarketplaceProvider for Counting {
    fn marketplace(&self) -> Marketplace {
        self.marketplace.clone()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    /// Like AWS when it is AWS (a record for every active hour, cost-allocation tags, last
    /// month's usage only until 06:00 UTC on the 1st, at most 2,147,483,647 units an hour),
    /// otherwise the generic rules, like
    /// Microsoft's.
    fn rules(&self) -> MarketplaceRules {
        let mut rules = MarketplaceRules::generic(self.marketplace.to_string());
        rules.usage.max_batch = self.max_batch;
        rules.usage.whole_units = self.whole_units;
        if self.marketplace == Marketplace::AWS {
            rules.usage.zero_hours = true;
            rules.usage.allocations = true;
            rules.usage.month_close = Some(time!(06:00));
            rules.usage.max_hourly_quantity = Some(i32::MAX as u64);
        }
        rules
    }
    async fn resolve(&self, _: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        Err(unsupported())
    }
    async fn activate(
        &self,
        _: &ExternalRef,
        _: Option<&PlanId>,
        _: Option<u32>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn change_plan(
        &self,
        _: &ExternalRef,
        _: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported())
    }
    async fn change_quantity(
        &self,
        _: &ExternalRef,
        _: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported())
    }
    async fn cancel(&self, _: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported())
    }
    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        self.batches.lock().unwrap().push(records.len());
        self.sent.lock().unwrap().extend(records.iter().cloned());
        let outcomes = self.outcomes.lock().unwrap();
        Ok(records
            .iter()
            .map(|r| {
                outcomes
                    .get(&r.dimension)
                    .cloned()
                    .unwrap_or(UsageOutcome::Accepted {
                        marketplace_id: Some(format!("mr-{}", r.id)),
                    })
            })
            .collect())
    }
    async fn entitlements(&self, _: &ExternalRef) -> Result<Vec<Entitlement>, ProviderError> {
        Ok(vec![])
    }
    async fn authenticate(
        &self,
        _: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        Err(unsupported())
    }
    async fn interpret(
        &self,
        _: &AuthenticatedMessage,
        _directory: &dyn marketlink_core::SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        Ok(vec![])
    }
}
