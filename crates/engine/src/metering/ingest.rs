//! Usage in: validate every event, resolve its subscription, store the batch durably.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use marketlink_core::{
    ProductId, Quantity, Subscription, SubscriptionId, SubscriptionStatus, TenantId,
    UsageAllocation,
};
use marketlink_store::{
    Backend, IngestOutcome, NewUsageEvent, Store, StoreError, SubscriptionFilter,
};
use time::{Duration, OffsetDateTime};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{delivery_deadline, hour_floor, metered_dimensions, product_of};
use crate::Engine;

/// One usage event as reported by the vendor's product.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageInput {
    /// The subscription, or else `tenant_id` + `product`.
    pub subscription_id: Option<SubscriptionId>,
    pub tenant_id: Option<TenantId>,
    /// The vendor's catalog product id.
    pub product: Option<ProductId>,
    pub dimension: String,
    pub quantity: Quantity,
    pub timestamp: OffsetDateTime,
    /// The same key twice (per subscription) is stored once.
    pub idempotency_key: Option<String>,
    /// AWS cost-allocation tags; quantities must add up to `quantity`.
    pub allocations: Vec<UsageAllocation>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestErrorKind {
    #[error("the batch holds no events")]
    EmptyBatch,
    #[error("the batch holds {got} events; at most {max} are accepted per request")]
    BatchTooLarge { got: usize, max: usize },
    #[error("give `subscription_id`, or `tenant_id` and `product`")]
    MissingSubscription,
    #[error("no such subscription")]
    UnknownSubscription,
    #[error(
        "the tenant has several subscriptions of this product that accept usage; give `subscription_id`"
    )]
    AmbiguousSubscription,
    #[error(
        "the subscription is {0}; usage is accepted only while it is active or in its unsubscribe-pending window"
    )]
    SubscriptionNotActive(SubscriptionStatus),
    #[error(
        "dimension `{dimension}` is not a metered dimension of the subscription's plan (known: {known})"
    )]
    UnknownDimension { dimension: String, known: String },
    #[error("timestamp {0} is in the future")]
    TimestampInFuture(OffsetDateTime),
    #[error(
        "timestamp {timestamp} is too old: the marketplace accepts this hour only until {deadline}"
    )]
    TimestampTooOld {
        timestamp: OffsetDateTime,
        deadline: OffsetDateTime,
    },
    #[error("invalid allocations: {0}")]
    InvalidAllocations(String),
    #[error("the idempotency key must be 1 to 200 characters")]
    InvalidIdempotencyKey,
    #[error("quantity {0} is more than {MAX_EVENT_UNITS}, the most one event may carry")]
    QuantityTooLarge(Quantity),
    #[error("{0}")]
    HourAlreadySent(String),
    #[error(transparent)]
    Store(StoreError),
}

/// Why a batch was refused; `index` is the offending event's position in the batch.
#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
pub struct IngestError {
    pub index: Option<usize>,
    pub kind: IngestErrorKind,
}

impl IngestError {
    fn at(index: usize, kind: IngestErrorKind) -> Self {
        Self {
            index: Some(index),
            kind,
        }
    }

    /// A stable machine code for API clients.
    pub fn code(&self) -> &'static str {
        match self.kind {
            IngestErrorKind::EmptyBatch => "empty_batch",
            IngestErrorKind::BatchTooLarge { .. } => "batch_too_large",
            IngestErrorKind::MissingSubscription => "missing_subscription",
            IngestErrorKind::UnknownSubscription => "unknown_subscription",
            IngestErrorKind::AmbiguousSubscription => "ambiguous_subscription",
            IngestErrorKind::SubscriptionNotActive(_) => "subscription_not_active",
            IngestErrorKind::UnknownDimension { .. } => "unknown_dimension",
            IngestErrorKind::TimestampInFuture(_) => "timestamp_in_future",
            IngestErrorKind::TimestampTooOld { .. } => "timestamp_too_old",
            IngestErrorKind::InvalidAllocations(_) => "invalid_allocations",
            IngestErrorKind::InvalidIdempotencyKey => "invalid_idempotency_key",
            IngestErrorKind::QuantityTooLarge(_) => "quantity_too_large",
            IngestErrorKind::HourAlreadySent(_) => "hour_already_sent",
            IngestErrorKind::Store(_) => "store",
        }
    }
}

#[derive(Clone, Hash, PartialEq, Eq)]
enum Target {
    Id(SubscriptionId),
    TenantProduct(TenantId, ProductId),
}

impl Engine {
    /// Validates a batch and stores it in one transaction: all events or none. Answers only
    /// once the batch is committed.
    pub async fn ingest_usage(&self, inputs: &[UsageInput]) -> Result<IngestOutcome, IngestError> {
        let settings = &self.metering;
        if inputs.is_empty() {
            return Err(IngestError {
                index: None,
                kind: IngestErrorKind::EmptyBatch,
            });
        }
        if inputs.len() > settings.max_batch_events {
            return Err(IngestError {
                index: None,
                kind: IngestErrorKind::BatchTooLarge {
                    got: inputs.len(),
                    max: settings.max_batch_events,
                },
            });
        }
        let now = self.clock.now();
        // Subscriptions named by id are read in one go for the whole batch.
        let mut by_id: Vec<SubscriptionId> =
            inputs.iter().filter_map(|i| i.subscription_id).collect();
        by_id.sort_unstable_by_key(|id| id.0);
        by_id.dedup();
        let mut known = self
            .store
            .usage_subscriptions(&by_id)
            .await
            .map_err(|e| IngestError {
                index: None,
                kind: IngestErrorKind::Store(e),
            })?;
        let mut resolved: HashMap<Target, (Subscription, Vec<String>)> = HashMap::new();
        let mut events = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let target = match (&input.subscription_id, &input.tenant_id, &input.product) {
                (Some(id), _, _) => Target::Id(*id),
                (None, Some(tenant), Some(product)) => {
                    Target::TenantProduct(*tenant, product.clone())
                }
                _ => return Err(IngestError::at(i, IngestErrorKind::MissingSubscription)),
            };
            if !resolved.contains_key(&target) {
                let subscription = match &target {
                    Target::Id(id) => known
                        .remove(id)
                        .ok_or(IngestErrorKind::UnknownSubscription)
                        .and_then(accepting_usage),
                    Target::TenantProduct(..) => self.resolve_usage_subscription(&target).await,
                }
                .map_err(|kind| IngestError::at(i, kind))?;
                let dimensions = metered_dimensions(&self.catalog, &subscription);
                resolved.insert(target.clone(), (subscription, dimensions));
            }
            let Some((subscription, dimensions)) = resolved.get(&target) else {
                return Err(IngestError::at(i, IngestErrorKind::UnknownSubscription));
            };
            if !dimensions.contains(&input.dimension) {
                return Err(IngestError::at(
                    i,
                    IngestErrorKind::UnknownDimension {
                        dimension: input.dimension.clone(),
                        known: if dimensions.is_empty() {
                            "none".into()
                        } else {
                            dimensions.join(", ")
                        },
                    },
                ));
            }
            let timestamp = input.timestamp.to_offset(time::UtcOffset::UTC);
            if timestamp > now + settings.future_tolerance {
                return Err(IngestError::at(
                    i,
                    IngestErrorKind::TimestampInFuture(timestamp),
                ));
            }
            let hour = hour_floor(timestamp);
            let marketplace = &subscription.external.marketplace;
            let deadline = delivery_deadline(marketplace, hour);
            let earliest_send = if subscription_final(subscription) {
                now
            } else {
                now.max(hour + Duration::hours(1) + settings.settle)
            };
            if earliest_send + settings.delivery_margin > deadline {
                return Err(IngestError::at(
                    i,
                    IngestErrorKind::TimestampTooOld {
                        timestamp,
                        deadline,
                    },
                ));
            }
            if input.quantity > Quantity::from_units(MAX_EVENT_UNITS) {
                return Err(IngestError::at(
                    i,
                    IngestErrorKind::QuantityTooLarge(input.quantity),
                ));
            }
            if let Some(key) = &input.idempotency_key
                && (key.is_empty() || key.len() > 200)
            {
                return Err(IngestError::at(i, IngestErrorKind::InvalidIdempotencyKey));
            }
            check_allocations(input, marketplace)
                .map_err(|m| IngestError::at(i, IngestErrorKind::InvalidAllocations(m)))?;
            events.push(NewUsageEvent {
                id: Uuid::now_v7(),
                subscription_id: subscription.id,
                dimension: input.dimension.clone(),
                occurred_at: timestamp,
                hour,
                quantity: input.quantity,
                idempotency_key: input.idempotency_key.clone(),
                allocations: input.allocations.clone(),
            });
        }
        let outcome = self
            .ingest_writer
            .write(&self.store, events, now)
            .await
            .map_err(|error| IngestError {
                index: None,
                kind: match error {
                    StoreError::Conflict(message) => IngestErrorKind::HourAlreadySent(message),
                    other => IngestErrorKind::Store(other),
                },
            })?;
        metrics::counter!("marketlink_usage_events_total", "result" => "accepted")
            .increment(outcome.accepted as u64);
        metrics::counter!("marketlink_usage_events_total", "result" => "duplicate")
            .increment(outcome.duplicates as u64);
        Ok(outcome)
    }

    async fn resolve_usage_subscription(
        &self,
        target: &Target,
    ) -> Result<Subscription, IngestErrorKind> {
        let subscription = match target {
            Target::Id(id) => match self.store.get_subscription(*id).await {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => return Err(IngestErrorKind::UnknownSubscription),
                Err(e) => return Err(IngestErrorKind::Store(e)),
            },
            Target::TenantProduct(tenant, product) => {
                let all = self
                    .store
                    .list_subscriptions(&SubscriptionFilter {
                        tenant_id: Some(*tenant),
                        limit: 1000,
                        ..Default::default()
                    })
                    .await
                    .map_err(IngestErrorKind::Store)?;
                let of_product: Vec<Subscription> = all
                    .into_iter()
                    .filter(|s| product_of(&self.catalog, s).is_some_and(|p| p.id == *product))
                    .collect();
                let mut accepting = of_product.iter().filter(|s| s.status.accepts_usage());
                match (accepting.next(), accepting.next()) {
                    (Some(one), None) => one.clone(),
                    (Some(_), Some(_)) => return Err(IngestErrorKind::AmbiguousSubscription),
                    (None, _) => {
                        return Err(match of_product.last() {
                            Some(s) => IngestErrorKind::SubscriptionNotActive(s.status),
                            None => IngestErrorKind::UnknownSubscription,
                        });
                    }
                }
            }
        };
        accepting_usage(subscription)
    }
}

fn accepting_usage(subscription: Subscription) -> Result<Subscription, IngestErrorKind> {
    if subscription.status.accepts_usage() {
        Ok(subscription)
    } else {
        Err(IngestErrorKind::SubscriptionNotActive(subscription.status))
    }
}

/// The largest quantity of one event: AWS's largest hourly record (its `Quantity` is a 32-bit
/// integer). It also keeps hourly sums far from 64-bit overflow.
pub const MAX_EVENT_UNITS: u32 = i32::MAX as u32;

/// How many waiting requests one group commit takes at most.
const MAX_GROUP: usize = 64;

/// Group commits in flight at once on PostgreSQL (each holds one pooled connection).
const POSTGRES_WRITERS: usize = 4;

/// A request waiting for the writer.
struct Pending {
    events: Vec<NewUsageEvent>,
    now: OffsetDateTime,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// Group commit for usage ingest: a writer takes every request that is waiting when it gets to
/// write and stores them in one transaction ([`Store::usage_ingest_group`]; each batch still
/// all or nothing on its own). Concurrent API requests thus share a commit instead of queueing
/// for SQLite's write lock (whose busy handler sleeps in milliseconds) or paying a WAL flush
/// each on PostgreSQL. A request is answered only after its group committed, and the write
/// goes on even if the caller gives up waiting (a dropped HTTP request), so a group is never
/// left half-answered.
///
/// SQLite has one writer, so groups commit one after another. PostgreSQL commits
/// [`POSTGRES_WRITERS`] groups at once: a request only appends to the ledger (ADR 0010), so
/// concurrent groups share no rows and do not queue on one another's locks.
#[derive(Default)]
pub(crate) struct IngestWriter {
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl IngestWriter {
    async fn write(
        &self,
        store: &Store,
        events: Vec<NewUsageEvent>,
        now: OffsetDateTime,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { events, now, reply };
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let pending = match queue.as_ref() {
                Some(sender) => match sender.send(pending) {
                    Ok(()) => None,
                    // The writer is gone (its runtime shut down): start another.
                    Err(mpsc::error::SendError(back)) => Some(back),
                },
                None => Some(pending),
            };
            if let Some(pending) = pending {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_writer(store.clone(), receiver));
                // Cannot fail: the receiver is alive in the task just spawned.
                let _ = sender.send(pending);
                *queue = Some(sender);
            }
        }
        wait(answer).await
    }
}

async fn wait(
    answer: oneshot::Receiver<Result<IngestOutcome, StoreError>>,
) -> Result<IngestOutcome, StoreError> {
    answer.await.unwrap_or_else(|_| {
        Err(StoreError::unavailable(
            "the usage writer stopped before answering".into(),
        ))
    })
}

async fn run_writer(store: Store, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let writers = Arc::new(Semaphore::new(match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => POSTGRES_WRITERS,
    }));
    loop {
        // Wait for a free writer first: requests that arrive meanwhile join the next group.
        let Ok(writer) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        if queue.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit_group(&store, group).await;
            drop(writer);
        });
    }
}

/// Stores one group and answers each of its requests.
async fn commit_group(store: &Store, mut group: Vec<Pending>) {
    let batches: Vec<(&[NewUsageEvent], OffsetDateTime)> =
        group.iter().map(|p| (p.events.as_slice(), p.now)).collect();
    let results = store.usage_ingest_group(&batches).await;
    drop(batches);
    match results {
        Ok(results) => {
            for (pending, result) in group.drain(..).zip(results) {
                // The caller may have gone; its batch is stored all the same.
                let _ = pending.reply.send(result);
            }
        }
        Err(error) => {
            // Nothing of the group was stored. The first caller gets the error itself, the
            // others its description (a store error is not cloneable).
            let message = format!("the shared commit failed: {error}");
            let mut first = Some(error);
            for pending in group.drain(..) {
                let error = first
                    .take()
                    .unwrap_or_else(|| StoreError::unavailable(message.clone()));
                let _ = pending.reply.send(Err(error));
            }
        }
    }
}

/// In its unsubscribe-pending window a subscription's hours are sent at once (final usage),
/// not after the hour closes.
fn subscription_final(subscription: &Subscription) -> bool {
    subscription.status == SubscriptionStatus::UnsubscribePending
}

fn check_allocations(
    input: &UsageInput,
    marketplace: &marketlink_core::Marketplace,
) -> Result<(), String> {
    if input.allocations.is_empty() {
        return Ok(());
    }
    if *marketplace != marketlink_core::Marketplace::AWS {
        return Err(format!("{marketplace} does not take cost-allocation tags"));
    }
    let mut sum = Quantity::ZERO;
    for a in &input.allocations {
        if a.tags.is_empty() || a.tags.len() > 5 {
            return Err("each allocation carries 1 to 5 tags".into());
        }
        sum = sum
            .checked_add(a.quantity)
            .ok_or_else(|| "allocated quantities overflow".to_owned())?;
    }
    if sum != input.quantity {
        return Err(format!(
            "allocated quantities add up to {sum}, not the event's quantity {}",
            input.quantity
        ));
    }
    Ok(())
}
