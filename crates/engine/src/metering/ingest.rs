//! Usage in: validate every event, resolve its subscription, store the batch durably.

use std::collections::HashMap;

use marketlink_core::{
    ProductId, Quantity, Subscription, SubscriptionId, SubscriptionStatus, TenantId,
    UsageAllocation, UsageRules,
};
use marketlink_store::{IngestOutcome, NewUsageEvent, StoreError, SubscriptionFilter};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{hour_floor, metered_dimensions, product_of};
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
    /// Cost-allocation tags, on a marketplace that takes them (AWS); quantities must add up
    /// to `quantity`.
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
    #[error(
        "quantity {quantity} is not a whole number: {marketplace} bills whole units only; \
         report whole units (round, or use a smaller unit)"
    )]
    FractionalQuantity {
        quantity: Quantity,
        marketplace: String,
    },
    #[error("{0}")]
    HourAlreadySent(String),
    #[error(
        "usage of `{dimension}` for the hour starting {hour} would total {total} units \
         ({accepted} accepted before this request): more than {cap}, the most {marketplace} \
         takes for one hour; report it in a larger unit"
    )]
    HourlyQuantityLimit {
        subscription: SubscriptionId,
        dimension: String,
        hour: OffsetDateTime,
        accepted: Quantity,
        total: Quantity,
        cap: Quantity,
        marketplace: String,
    },
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

    fn batch(kind: IngestErrorKind) -> Self {
        Self { index: None, kind }
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
            IngestErrorKind::FractionalQuantity { .. } => "whole_units_only",
            IngestErrorKind::HourAlreadySent(_) => "hour_already_sent",
            IngestErrorKind::HourlyQuantityLimit { .. } => "hourly_quantity_limit",
            IngestErrorKind::Store(_) => "store",
        }
    }
}

/// How an event names its subscription.
#[derive(Clone, Hash, PartialEq, Eq)]
enum Target {
    Id(SubscriptionId),
    TenantProduct(TenantId, ProductId),
}

impl Target {
    fn of(input: &UsageInput) -> Option<Self> {
        match (&input.subscription_id, &input.tenant_id, &input.product) {
            (Some(id), _, _) => Some(Self::Id(*id)),
            (None, Some(tenant), Some(product)) => {
                Some(Self::TenantProduct(*tenant, product.clone()))
            }
            _ => None,
        }
    }
}

/// A subscription that accepts usage, with what its events are checked against.
struct Accepting {
    subscription: Subscription,
    dimensions: Vec<String>,
    /// How buyers know the subscription's marketplace, for refusals a person reads.
    marketplace_name: String,
    rules: UsageRules,
}

impl Engine {
    /// Validates a batch and stores it in one transaction: all events or none. Answers only
    /// once the batch is committed.
    ///
    /// `tenant_scope` limits the batch to one tenant's subscriptions (`None`: any tenant). An
    /// event outside it is refused as an unknown subscription, so the caller does not learn
    /// that it exists.
    pub async fn ingest_usage(
        &self,
        inputs: &[UsageInput],
        tenant_scope: Option<TenantId>,
    ) -> Result<IngestOutcome, IngestError> {
        self.check_batch_size(inputs)?;
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
            .map_err(|e| IngestError::batch(IngestErrorKind::Store(e)))?;
        if let Some(tenant) = tenant_scope {
            within_tenant(inputs, &known, tenant)?;
        }
        let mut resolved: HashMap<Target, Accepting> = HashMap::new();
        let mut events = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let at = |kind| IngestError::at(i, kind);
            let target =
                Target::of(input).ok_or_else(|| at(IngestErrorKind::MissingSubscription))?;
            if !resolved.contains_key(&target) {
                let subscription = match &target {
                    Target::Id(id) => known
                        .remove(id)
                        .ok_or(IngestErrorKind::UnknownSubscription)
                        .and_then(accepting_usage),
                    Target::TenantProduct(tenant, product) => {
                        self.resolve_by_tenant(*tenant, product).await
                    }
                }
                .map_err(at)?;
                resolved.insert(target.clone(), self.accepting(subscription));
            }
            let Some(accepting) = resolved.get(&target) else {
                return Err(at(IngestErrorKind::UnknownSubscription));
            };
            events.push(self.validate(input, accepting, now).map_err(at)?);
        }
        self.store_usage(events, now)
            .await
            .map_err(|e| over_cap_at(e, inputs, &resolved))
    }

    fn check_batch_size(&self, inputs: &[UsageInput]) -> Result<(), IngestError> {
        let max = self.metering.max_batch_events;
        if inputs.is_empty() {
            Err(IngestError::batch(IngestErrorKind::EmptyBatch))
        } else if inputs.len() > max {
            Err(IngestError::batch(IngestErrorKind::BatchTooLarge {
                got: inputs.len(),
                max,
            }))
        } else {
            Ok(())
        }
    }

    fn accepting(&self, subscription: Subscription) -> Accepting {
        let rules = self.providers.rules(&subscription.external.marketplace);
        Accepting {
            dimensions: metered_dimensions(&self.catalog, &subscription),
            marketplace_name: rules.display_name.into_owned(),
            rules: rules.usage,
            subscription,
        }
    }

    /// Checks one event against its subscription and the marketplace's rules.
    fn validate(
        &self,
        input: &UsageInput,
        accepting: &Accepting,
        now: OffsetDateTime,
    ) -> Result<NewUsageEvent, IngestErrorKind> {
        let Accepting {
            subscription,
            dimensions,
            marketplace_name,
            rules,
        } = accepting;
        if !dimensions.contains(&input.dimension) {
            return Err(IngestErrorKind::UnknownDimension {
                dimension: input.dimension.clone(),
                known: if dimensions.is_empty() {
                    "none".into()
                } else {
                    dimensions.join(", ")
                },
            });
        }
        let timestamp = input.timestamp.to_offset(time::UtcOffset::UTC);
        let hour = self.check_timestamp(timestamp, subscription, rules, now)?;
        if input.quantity > Quantity::from_units(MAX_EVENT_UNITS) {
            return Err(IngestErrorKind::QuantityTooLarge(input.quantity));
        }
        // Refused here rather than dead-lettered at the flush: a 202 means "will be billed".
        if rules.whole_units && input.quantity.whole_units().is_none() {
            return Err(IngestErrorKind::FractionalQuantity {
                quantity: input.quantity,
                marketplace: marketplace_name.clone(),
            });
        }
        if let Some(key) = &input.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(IngestErrorKind::InvalidIdempotencyKey);
        }
        check_allocations(input, marketplace_name, rules)
            .map_err(IngestErrorKind::InvalidAllocations)?;
        Ok(NewUsageEvent {
            id: Uuid::now_v7(),
            subscription_id: subscription.id,
            dimension: input.dimension.clone(),
            occurred_at: timestamp,
            hour,
            quantity: input.quantity,
            idempotency_key: input.idempotency_key.clone(),
            allocations: input.allocations.clone(),
            // The store counts the hour against it in the batch's transaction: two requests
            // that together pass it cannot both be taken.
            hour_cap: hour_cap(rules),
        })
    }

    /// The event's hour, if it can still be delivered before the marketplace's deadline
    /// (with the configured margin) and is not in the future.
    fn check_timestamp(
        &self,
        timestamp: OffsetDateTime,
        subscription: &Subscription,
        rules: &UsageRules,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, IngestErrorKind> {
        let settings = &self.metering;
        if timestamp > now + settings.future_tolerance {
            return Err(IngestErrorKind::TimestampInFuture(timestamp));
        }
        let hour = hour_floor(timestamp);
        let deadline = rules.deadline(hour);
        let earliest_send = if subscription_final(subscription) {
            now
        } else {
            now.max(hour + Duration::hours(1) + settings.settle)
        };
        if earliest_send + settings.delivery_margin > deadline {
            return Err(IngestErrorKind::TimestampTooOld {
                timestamp,
                deadline,
            });
        }
        Ok(hour)
    }

    /// Stores a validated batch through the group-commit writer.
    async fn store_usage(
        &self,
        events: Vec<NewUsageEvent>,
        now: OffsetDateTime,
    ) -> Result<IngestOutcome, IngestError> {
        let outcome = self
            .ingest_writer
            .write(&self.store, events, now)
            .await
            .map_err(|error| {
                IngestError::batch(match error {
                    StoreError::Conflict(message) => IngestErrorKind::HourAlreadySent(message),
                    StoreError::HourCapExceeded {
                        subscription_id,
                        dimension,
                        hour,
                        accepted_micros,
                        adding_micros,
                        cap_micros,
                    } => {
                        let quantity =
                            |micros: i64| Quantity::from_micros(micros).unwrap_or_default();
                        IngestErrorKind::HourlyQuantityLimit {
                            subscription: SubscriptionId(subscription_id),
                            dimension,
                            hour,
                            accepted: quantity(accepted_micros),
                            total: quantity(accepted_micros.saturating_add(adding_micros)),
                            cap: quantity(cap_micros),
                            marketplace: String::new(),
                        }
                    }
                    other => IngestErrorKind::Store(other),
                })
            })?;
        metrics::counter!("marketlink_usage_events_total", "result" => "accepted")
            .increment(outcome.accepted as u64);
        metrics::counter!("marketlink_usage_events_total", "result" => "duplicate")
            .increment(outcome.duplicates as u64);
        Ok(outcome)
    }

    /// The one subscription of `product` that `tenant` may report usage for.
    async fn resolve_by_tenant(
        &self,
        tenant: TenantId,
        product: &ProductId,
    ) -> Result<Subscription, IngestErrorKind> {
        let all = self
            .store
            .list_subscriptions(&SubscriptionFilter {
                tenant_id: Some(tenant),
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
        let subscription = match (accepting.next(), accepting.next()) {
            (Some(one), None) => one.clone(),
            (Some(_), Some(_)) => return Err(IngestErrorKind::AmbiguousSubscription),
            (None, _) => {
                return Err(match of_product.last() {
                    Some(s) => IngestErrorKind::SubscriptionNotActive(s.status),
                    None => IngestErrorKind::UnknownSubscription,
                });
            }
        };
        accepting_usage(subscription)
    }
}

/// Refuses the batch if any event names a subscription outside `tenant`, or names none: to a
/// caller limited to one tenant, another tenant's subscription looks missing.
fn within_tenant(
    inputs: &[UsageInput],
    known: &HashMap<SubscriptionId, Subscription>,
    tenant: TenantId,
) -> Result<(), IngestError> {
    for (i, input) in inputs.iter().enumerate() {
        let theirs = match (&input.subscription_id, &input.tenant_id) {
            (Some(id), _) => known.get(id).and_then(|s| s.tenant_id),
            (None, Some(named)) => Some(*named),
            (None, None) => None,
        };
        if theirs != Some(tenant) {
            return Err(IngestError::at(i, IngestErrorKind::UnknownSubscription));
        }
    }
    Ok(())
}

fn accepting_usage(subscription: Subscription) -> Result<Subscription, IngestErrorKind> {
    if subscription.status.accepts_usage() {
        Ok(subscription)
    } else {
        Err(IngestErrorKind::SubscriptionNotActive(subscription.status))
    }
}

/// The cap on an hour's total under `rules`, if the marketplace has one.
fn hour_cap(rules: &UsageRules) -> Option<Quantity> {
    let units = rules.max_hourly_quantity?;
    i64::try_from(units)
        .ok()
        .and_then(|u| u.checked_mul(1_000_000))
        .and_then(|micros| Quantity::from_micros(micros).ok())
}

/// Names the first event of the batch in an hour past its cap, and the marketplace, in the
/// refusal the store gave for the batch as a whole.
fn over_cap_at(
    mut error: IngestError,
    inputs: &[UsageInput],
    resolved: &HashMap<Target, Accepting>,
) -> IngestError {
    let IngestErrorKind::HourlyQuantityLimit {
        subscription,
        dimension,
        hour,
        marketplace,
        ..
    } = &mut error.kind
    else {
        return error;
    };
    let found = inputs.iter().enumerate().find_map(|(i, input)| {
        let accepting = Target::of(input).and_then(|t| resolved.get(&t))?;
        let utc = input.timestamp.to_offset(time::UtcOffset::UTC);
        (accepting.subscription.id == *subscription
            && input.dimension == *dimension
            && hour_floor(utc) == *hour)
            .then(|| (i, accepting.marketplace_name.clone()))
    });
    if let Some((index, name)) = found {
        error.index = Some(index);
        *marketplace = name;
    }
    error
}

/// The largest quantity of one event: AWS's largest hourly record (its `Quantity` is a 32-bit
/// integer). It also keeps hourly sums far from 64-bit overflow.
pub const MAX_EVENT_UNITS: u32 = i32::MAX as u32;

/// In its unsubscribe-pending window a subscription's hours are sent at once (final usage),
/// not after the hour closes.
fn subscription_final(subscription: &Subscription) -> bool {
    subscription.status == SubscriptionStatus::UnsubscribePending
}

fn check_allocations(
    input: &UsageInput,
    marketplace_name: &str,
    rules: &UsageRules,
) -> Result<(), String> {
    if input.allocations.is_empty() {
        return Ok(());
    }
    if !rules.allocations {
        return Err(format!(
            "{marketplace_name} does not take cost-allocation tags"
        ));
    }
    let mut sum = Quantity::ZERO;
    for a in &input.allocations {
        if a.tags.is_empty() || a.tags.len() > 5 {
            return Err("each allocation carries 1 to 5 tags".into());
        }
        if rules.whole_units && a.quantity.whole_units().is_none() {
            return Err(format!(
                "allocated quantity {} is not a whole number: {marketplace_name} bills whole \
                 units only",
                a.quantity
            ));
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
