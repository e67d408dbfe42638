//! Usage out: zero-fill, claim closed hours, send them in batches no larger than the
//! configured `batch_size` or the marketplace takes in one call, and settle every record with
//! its own outcome.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use futures_util::{StreamExt, stream};
use marketlink_core::{
    Marketplace, MarketplaceProvider, ProviderError, Quantity, Subscription, SubscriptionId,
    SubscriptionStatus, UsageOutcome, UsageRecord, UsageRules,
};
use marketlink_store::{
    StoreError, SubscriptionFilter, UsageClaim, UsageHour, UsageSettlement, UsageTarget,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{hour_floor, metered_dimensions};
use crate::Engine;

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlushRun {
    /// Zero-quantity hours created (active hours without usage, where the marketplace
    /// expects them).
    pub zero_created: u64,
    pub claimed: usize,
    /// Provider calls (`report_usage`) made.
    pub calls: usize,
    pub delivered: usize,
    pub skipped: usize,
    pub retried: usize,
    pub mismatched: usize,
    pub dead: usize,
    /// Settlements refused because the lease had been taken over (another flusher resends).
    pub lost_leases: usize,
}

impl FlushRun {
    fn add(&mut self, other: &FlushRun) {
        self.zero_created += other.zero_created;
        self.claimed += other.claimed;
        self.calls += other.calls;
        self.delivered += other.delivered;
        self.skipped += other.skipped;
        self.retried += other.retried;
        self.mismatched += other.mismatched;
        self.dead += other.dead;
        self.lost_leases += other.lost_leases;
    }
}

impl FlushRun {
    /// Adds this round's settlements to `marketlink_usage_hours_settled_total`.
    fn record_metrics(&self) {
        for (outcome, count) in [
            ("delivered", self.delivered),
            ("mismatch", self.mismatched),
            ("skipped", self.skipped),
            ("retried", self.retried),
            ("dead", self.dead),
        ] {
            metrics::counter!("marketlink_usage_hours_settled_total", "outcome" => outcome)
                .increment(count as u64);
        }
    }
}

impl Engine {
    /// The last hour that has closed (ended, plus the settle delay) at `now`.
    pub fn closed_through(&self, now: OffsetDateTime) -> OffsetDateTime {
        hour_floor(now - self.metering.settle) - Duration::hours(1)
    }

    /// Flushes everything due: zero-fill, then claims until nothing is left to claim. What the
    /// metering worker and `marketlink meter flush` run.
    ///
    /// Claims and calls form one pipeline: one side claims and prepares the next claim while
    /// the calls of the one before are in flight, the other keeps `concurrency` calls going
    /// across claims (the calls never drain at a claim's end), and a third settles whatever
    /// outcomes have arrived, in one transaction per lease.
    pub async fn flush_usage(&self) -> Result<FlushRun, StoreError> {
        let mut total = FlushRun {
            zero_created: self.fill_zero_hours().await?,
            ..FlushRun::default()
        };
        // Room for one prepared claim: the next is claimed once the one before has started
        // going out, so at most three claims' hours are leased at a time.
        let (claims, prepared) = mpsc::channel::<Prepared>(1);
        let (claimed, sent) = tokio::join!(self.claim_ahead(claims), self.send_claims(prepared));
        let sent = sent?;
        total.add(&sent);
        total.claimed += claimed?;
        Ok(total)
    }

    /// Claims and prepares until a claim comes back short (nothing more is due), or the
    /// sending side has stopped. Returns the hours claimed.
    async fn claim_ahead(&self, claims: mpsc::Sender<Prepared>) -> Result<usize, StoreError> {
        let limit = self.metering.claim_limit as usize;
        // Subscriptions met by earlier claims of this run are not read again, up to a bound.
        // Claims go hour by hour, so a backlog of several hours meets every subscription once
        // per hour: a cycle, which evicting anything turns into a miss per row. Past the bound
        // the run keeps the ones it has and reads the others with each claim, so a hit rate of
        // bound / subscriptions remains (issue 22: 100k whole subscriptions held 70 MB, a third
        // of the memory budget of `marketlink bench day`).
        let bound = self.metering.cached_subscriptions;
        let mut targets: HashMap<SubscriptionId, UsageTarget> = HashMap::new();
        let mut claimed = 0;
        loop {
            let Ok(slot) = claims.reserve().await else {
                // Settling failed; it reports why. What was claimed stays leased.
                return Ok(claimed);
            };
            let mut claim = self.claim_usage(&targets).await?;
            let full = claim.hours.len() >= limit;
            claimed += claim.hours.len();
            // Kept while there is room; the rest serve this claim only.
            let mut extra = HashMap::new();
            for (id, target) in std::mem::take(&mut claim.targets) {
                if targets.len() < bound {
                    targets.insert(id, target);
                } else {
                    extra.insert(id, target);
                }
            }
            if !claim.hours.is_empty() {
                let lease = claim.lease_id;
                let (skipped, batches) = self.prepare(claim, &targets, &extra);
                slot.send(Prepared {
                    lease,
                    skipped,
                    batches,
                });
            }
            if !full {
                return Ok(claimed);
            }
        }
    }

    async fn claim_usage(
        &self,
        known: &HashMap<SubscriptionId, UsageTarget>,
    ) -> Result<UsageClaim, StoreError> {
        let now = self.clock.now();
        self.store
            .usage_claim(
                now,
                self.closed_through(now),
                self.metering.lease,
                self.metering.claim_limit,
                |id| known.contains_key(&id),
            )
            .await
    }

    /// Sends the batches of every prepared claim, `concurrency` calls at a time, and settles
    /// each record. Outcomes go to one settling loop that records whatever has arrived in one
    /// transaction per lease, so settling keeps up with many calls in flight instead of each
    /// call queueing for the database's write lock.
    async fn send_claims(
        &self,
        prepared: mpsc::Receiver<Prepared>,
    ) -> Result<FlushRun, StoreError> {
        type Outcomes = (Uuid, Vec<(Uuid, UsageSettlement)>);
        let (outcomes, mut arrived) = mpsc::unbounded_channel::<Outcomes>();
        let concurrency = self.metering.concurrency.max(1);
        let sends = async move {
            let skipped = outcomes.clone();
            let batches = stream::unfold(prepared, |mut prepared| async move {
                let next = prepared.recv().await?;
                Some((next, prepared))
            })
            .flat_map(|p| {
                if !p.skipped.is_empty() {
                    // Fails only once settling stopped (see below).
                    let _ = skipped.send((p.lease, p.skipped));
                }
                let lease = p.lease;
                stream::iter(p.batches.into_iter().map(move |(m, b)| (lease, m, b)))
            });
            let calls = batches
                // Once settling has stopped on an error, no further batch is sent.
                .take_while(|_| std::future::ready(!outcomes.is_closed()))
                .map(|(lease, marketplace, batch)| {
                    let outcomes = &outcomes;
                    async move {
                        let (calls, settlements) = self.send_batch(marketplace, batch).await;
                        // Fails only once settling stopped on an error, which is reported
                        // below; those hours stay leased and are resent after the lease.
                        let _ = outcomes.send((lease, settlements));
                        calls
                    }
                })
                .buffer_unordered(concurrency)
                .fold(0, |calls, n| async move { calls + n })
                .await;
            // The last senders: settling ends once it has recorded everything.
            drop(outcomes);
            calls
        };
        let settles = async {
            let mut run = FlushRun::default();
            let mut ready = Vec::new();
            while arrived.recv_many(&mut ready, 256).await > 0 {
                for (lease, settlements) in by_lease(ready.drain(..)) {
                    run.add(&self.settle(lease, settlements).await?);
                }
            }
            Ok::<_, StoreError>(run)
        };
        let (calls, settled) = tokio::join!(sends, settles);
        let mut run = settled?;
        run.calls += calls;
        Ok(run)
    }

    /// Splits claimed hours into records per marketplace, in batches of at most `batch_size`
    /// and the marketplace's own limit, and settlements that need no call.
    #[expect(clippy::type_complexity, reason = "a private hand-off")]
    fn prepare(
        &self,
        claim: UsageClaim,
        kept: &HashMap<SubscriptionId, UsageTarget>,
        this_claim: &HashMap<SubscriptionId, UsageTarget>,
    ) -> (
        Vec<(Uuid, UsageSettlement)>,
        Vec<(Marketplace, Vec<(UsageHour, UsageRecord)>)>,
    ) {
        let mut skipped = Vec::new();
        let mut rules: HashMap<Marketplace, UsageRules> = HashMap::new();
        let mut by_marketplace: BTreeMap<Marketplace, Vec<(UsageHour, UsageRecord)>> =
            BTreeMap::new();
        for hour in claim.hours {
            let id = &hour.subscription_id;
            let Some(target) = kept.get(id).or_else(|| this_claim.get(id)) else {
                skipped.push((
                    hour.id,
                    UsageSettlement::Dead {
                        reason: "the subscription no longer exists".into(),
                    },
                ));
                continue;
            };
            let marketplace = &target.external.marketplace;
            let usage = rules
                .entry(marketplace.clone())
                .or_insert_with(|| self.providers.rules(marketplace).usage);
            match record_of(&hour, target, usage) {
                Ok(record) => by_marketplace
                    .entry(marketplace.clone())
                    .or_default()
                    .push((hour, record)),
                Err(settlement) => skipped.push((hour.id, settlement)),
            }
        }
        let mut batches = Vec::new();
        for (marketplace, records) in by_marketplace {
            let limit = rules.get(&marketplace).map_or(1, |r| r.max_batch);
            let size = self.metering.batch_size.min(limit).max(1);
            // Taken from the front in one pass (splitting the rest off each time copied it).
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                batches.push((marketplace.clone(), records.by_ref().take(size).collect()));
            }
        }
        (skipped, batches)
    }

    /// Sends one batch; returns the calls made (0 or 1) and every record's settlement.
    async fn send_batch(
        &self,
        marketplace: Marketplace,
        batch: Vec<(UsageHour, UsageRecord)>,
    ) -> (usize, Vec<(Uuid, UsageSettlement)>) {
        let (batch, records): (Vec<UsageHour>, Vec<UsageRecord>) = batch.into_iter().unzip();
        let provider: Option<Arc<dyn MarketplaceProvider>> =
            self.providers.get(&marketplace).cloned();
        let result = match &provider {
            Some(provider) => report_in_own_task(Arc::clone(provider), records).await,
            None => Err(ProviderError::Configuration(format!(
                "no {marketplace} provider is configured"
            ))),
        };
        let settlements: Vec<(Uuid, UsageSettlement)> = match result {
            Ok(outcomes) if outcomes.len() == batch.len() => batch
                .iter()
                .zip(outcomes)
                .map(|(hour, outcome)| (hour.id, self.settlement(hour, outcome)))
                .collect(),
            Ok(outcomes) => {
                let error = format!(
                    "{marketplace} provider returned {} outcomes for {} records",
                    outcomes.len(),
                    batch.len()
                );
                batch
                    .iter()
                    .map(|hour| (hour.id, self.retry(hour, &error, None)))
                    .collect()
            }
            Err(error) => {
                let retry_after = match &error {
                    ProviderError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let retryable = matches!(
                    error,
                    ProviderError::Retryable { .. } | ProviderError::Configuration(_)
                );
                tracing::warn!(%marketplace, records = batch.len(), %error, "usage batch failed");
                batch
                    .iter()
                    .map(|hour| {
                        let settlement = if retryable {
                            self.retry(hour, &error.to_string(), retry_after)
                        } else {
                            UsageSettlement::Dead {
                                reason: error.to_string(),
                            }
                        };
                        (hour.id, settlement)
                    })
                    .collect()
            }
        };
        (usize::from(provider.is_some()), settlements)
    }

    fn settlement(&self, hour: &UsageHour, outcome: UsageOutcome) -> UsageSettlement {
        match outcome {
            UsageOutcome::Accepted { marketplace_id } => UsageSettlement::Delivered {
                marketplace_id,
                outcome: "accepted".into(),
            },
            UsageOutcome::AlreadyAccepted { marketplace_id } => UsageSettlement::Delivered {
                marketplace_id,
                outcome: "already_accepted".into(),
            },
            UsageOutcome::QuantityMismatch { detail } => {
                tracing::error!(hour = %hour.id, %detail, "the marketplace holds another quantity for this hour");
                UsageSettlement::Mismatch { detail }
            }
            UsageOutcome::NotSubscribed { detail } => UsageSettlement::Dead {
                reason: format!("not subscribed: {detail}"),
            },
            UsageOutcome::Rejected { code, detail } => UsageSettlement::Dead {
                reason: format!("{code}: {detail}"),
            },
            UsageOutcome::Retry { detail } => self.retry(hour, &detail, None),
        }
    }

    /// Sends the identical record again later, unless attempts or the marketplace's window
    /// are exhausted: then it is a dead letter with the reason.
    fn retry(
        &self,
        hour: &UsageHour,
        error: &str,
        retry_after: Option<std::time::Duration>,
    ) -> UsageSettlement {
        let backoff = &self.metering.backoff;
        let at = self.clock.now() + backoff.delay(hour.attempts, retry_after);
        let deadline = match Marketplace::parse(&hour.marketplace) {
            Ok(m) => self.providers.rules(&m).usage.deadline(hour.hour),
            Err(_) => UsageRules::default().deadline(hour.hour),
        };
        if backoff.exhausted(hour.attempts) {
            UsageSettlement::Dead {
                reason: format!("gave up after {} attempts: {error}", hour.attempts),
            }
        } else if at >= deadline {
            UsageSettlement::Dead {
                reason: format!(
                    "the marketplace stops accepting this hour at {deadline}, before the next attempt: {error}"
                ),
            }
        } else {
            UsageSettlement::Retry {
                error: error.to_owned(),
                at,
            }
        }
    }

    async fn settle(
        &self,
        lease: Uuid,
        settlements: Vec<(Uuid, UsageSettlement)>,
    ) -> Result<FlushRun, StoreError> {
        let mut run = FlushRun::default();
        for (_, s) in &settlements {
            match s {
                UsageSettlement::Delivered { .. } => run.delivered += 1,
                UsageSettlement::Retry { .. } => run.retried += 1,
                UsageSettlement::Mismatch { .. } => run.mismatched += 1,
                UsageSettlement::Dead { .. } => run.dead += 1,
                UsageSettlement::Skipped { .. } => run.skipped += 1,
            }
        }
        let settled = self
            .store
            .usage_settle(lease, &settlements, self.clock.now())
            .await?;
        run.record_metrics();
        run.lost_leases = settlements.len().saturating_sub(settled as usize);
        if run.lost_leases > 0 {
            tracing::warn!(
                lost = run.lost_leases,
                "usage leases expired while sending; their new holder resends them"
            );
        }
        Ok(run)
    }

    /// Creates zero-quantity hours for every subscription that accepts usage on a marketplace
    /// that expects a record for each active hour ([`UsageRules::zero_hours`]), for its
    /// metered dimensions, from the first hour the engine saw it accept usage.
    async fn fill_zero_hours(&self) -> Result<u64, StoreError> {
        let mut created = 0;
        for provider in self.providers.iter() {
            let usage = provider.rules().usage;
            if usage.zero_hours {
                created += self
                    .fill_zero_hours_of(provider.marketplace(), &usage)
                    .await?;
            }
        }
        Ok(created)
    }

    async fn fill_zero_hours_of(
        &self,
        marketplace: Marketplace,
        usage: &UsageRules,
    ) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let through = self.closed_through(now);
        // Hours whose window closes before they could be sent are not worth creating.
        let oldest =
            hour_floor(now + self.metering.delivery_margin - usage.window) + Duration::hours(1);
        let mut created = 0;
        for status in [
            SubscriptionStatus::Active,
            SubscriptionStatus::UnsubscribePending,
        ] {
            let mut after = None;
            loop {
                let page = self
                    .store
                    .list_subscriptions(&SubscriptionFilter {
                        marketplace: Some(marketplace.clone()),
                        status: Some(status),
                        after,
                        limit: 500,
                        ..Default::default()
                    })
                    .await?;
                let wanted: Vec<(&Subscription, Vec<String>)> = page
                    .iter()
                    .map(|s| (s, metered_dimensions(&self.catalog, s)))
                    .filter(|(_, dimensions)| !dimensions.is_empty())
                    .collect();
                let wanted: Vec<(SubscriptionId, &str, &[String])> = wanted
                    .iter()
                    .map(|(s, dimensions)| {
                        (s.id, s.external.marketplace.as_str(), dimensions.as_slice())
                    })
                    .collect();
                // One transaction per page of subscriptions.
                created += self
                    .store
                    .usage_fill_zero_hours_of(&wanted, hour_floor(now), through, oldest, now)
                    .await?;
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.id),
                    _ => break,
                }
            }
        }
        Ok(created)
    }
}

/// One usage call in a task of its own, so the client side of the calls in flight (building
/// and signing requests, parsing answers) spreads over the runtime's workers instead of being
/// polled in the flusher's one task (issue 22: on SQLite that task's thread was the busiest).
/// A call that panics is retried like a failed one, not lost with the flusher.
async fn report_in_own_task(
    provider: Arc<dyn MarketplaceProvider>,
    records: Vec<UsageRecord>,
) -> Result<Vec<UsageOutcome>, ProviderError> {
    tokio::spawn(async move { provider.report_usage(&records).await })
        .await
        .unwrap_or_else(|e| {
            Err(ProviderError::retryable(format!(
                "the usage call failed: {e}"
            )))
        })
}

/// A claim cut into what the flusher does with it.
struct Prepared {
    lease: Uuid,
    /// Hours settled without a call.
    skipped: Vec<(Uuid, UsageSettlement)>,
    batches: Vec<(Marketplace, Vec<(UsageHour, UsageRecord)>)>,
}

/// Settlements grouped by lease, leases in the order they first arrived (a few at most: the
/// claims whose calls were in flight together).
fn by_lease(
    arrived: impl Iterator<Item = (Uuid, Vec<(Uuid, UsageSettlement)>)>,
) -> Vec<(Uuid, Vec<(Uuid, UsageSettlement)>)> {
    let mut groups: Vec<(Uuid, Vec<(Uuid, UsageSettlement)>)> = Vec::new();
    for (lease, settlements) in arrived {
        match groups.iter_mut().find(|(l, _)| *l == lease) {
            Some((_, group)) => group.extend(settlements),
            None => groups.push((lease, settlements)),
        }
    }
    groups
}

/// The record a claimed hour is sent as, or why it is settled without a call.
fn record_of(
    hour: &UsageHour,
    target: &UsageTarget,
    usage: &UsageRules,
) -> Result<UsageRecord, UsageSettlement> {
    let quantity = hour.sent_quantity.unwrap_or(hour.quantity);
    if quantity.micros() >= marketlink_store::MAX_HOUR_MICROS {
        return Err(UsageSettlement::Dead {
            reason: "the hourly total reached the largest quantity marketlink keeps; the usage \
                     reported for this hour needs a look"
                .into(),
        });
    }
    if quantity == Quantity::ZERO && !usage.zero_hours {
        return Err(UsageSettlement::Skipped {
            reason: "zero_not_sent".into(),
        });
    }
    let allocated = hour
        .allocations
        .iter()
        .try_fold(Quantity::ZERO, |sum, a| sum.checked_add(a.quantity));
    let allocations = if allocated == Some(quantity) {
        hour.allocations.clone()
    } else {
        if !hour.allocations.is_empty() {
            tracing::warn!(hour = %hour.id, "tagged and untagged usage in one hour: sending without allocations");
        }
        Vec::new()
    };
    Ok(UsageRecord {
        id: hour.id,
        subscription: target.external.clone(),
        plan_id: target.plan_id.as_ref().map(|p| p.0.clone()),
        dimension: hour.dimension.clone(),
        hour: hour.hour,
        quantity,
        allocations,
    })
}
