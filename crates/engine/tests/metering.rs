//! The metering engine against a counting provider: validation, hourly totals, zero records,
//! batching, retries, dead letters, final usage, and two flushers on one PostgreSQL database.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration as StdDuration,
};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, Catalog, ChangeOutcome, Clock, Dimension, DimensionKind,
    Entitlement, ExternalRef, InboundMessage, LandingToken, Lifecycle, Listing, ManualClock,
    Marketplace, MarketplaceEvent, MarketplaceProvider, Plan, PlanId, Product, ProductId,
    ProviderError, Quantity, ResolvedPurchase, Subscription, SubscriptionId, Tenant, UsageOutcome,
    UsageRecord,
};
use marketlink_engine::{
    ChangePolicy, Engine, Providers,
    backoff::Backoff,
    metering::{IngestErrorKind, MeteringSettings, UsageInput},
};
use marketlink_store::{Store, StoreOptions, UsageHourState};
use time::{Duration, OffsetDateTime, macros::datetime};
use uuid::Uuid;

/// 2026-11-25 10:00 UTC, the start of an hour.
const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

/// A marketplace that records every record it is sent, answering per dimension as told.
struct Counting {
    marketplace: Marketplace,
    sent: Mutex<Vec<UsageRecord>>,
    batches: Mutex<Vec<usize>>,
    /// Whole-call failures still to produce, in order.
    failures: Mutex<VecDeque<ProviderError>>,
    /// Outcome per dimension; Accepted otherwise.
    outcomes: Mutex<HashMap<String, UsageOutcome>>,
    delay: StdDuration,
}

impl Counting {
    fn new(marketplace: Marketplace) -> Arc<Self> {
        Arc::new(Self {
            marketplace,
            sent: Mutex::default(),
            batches: Mutex::default(),
            failures: Mutex::default(),
            outcomes: Mutex::default(),
            delay: StdDuration::ZERO,
        })
    }

    fn sent(&self) -> Vec<UsageRecord> {
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
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        Ok(vec![])
    }
}

fn catalog() -> Catalog {
    let dim = |id: &str, kind| Dimension {
        id: id.into(),
        name: None,
        kind,
    };
    Catalog {
        products: vec![Product {
            id: ProductId::new("analytics"),
            name: "Analytics".into(),
            listings: vec![
                Listing {
                    marketplace: Marketplace::AWS,
                    product_code: "prod-a".into(),
                    listing_url: None,
                },
                Listing {
                    marketplace: Marketplace::AZURE,
                    product_code: "offer-a".into(),
                    listing_url: None,
                },
            ],
            plans: vec![Plan {
                id: PlanId::new("pro"),
                name: None,
                features: vec![],
                dimensions: vec![
                    dim("api_calls", DimensionKind::Metered),
                    dim("storage_gb", DimensionKind::Metered),
                    dim("seats", DimensionKind::Contract),
                ],
            }],
        }],
    }
}

struct Harness {
    engine: Engine,
    clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

fn settings() -> MeteringSettings {
    MeteringSettings {
        api_key_hashes: vec![],
        settle: Duration::minutes(5),
        lease: Duration::minutes(5),
        backoff: Backoff {
            base: Duration::seconds(10),
            max: Duration::minutes(10),
            max_attempts: 5,
        },
        ..MeteringSettings::default()
    }
}

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("m.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

fn engine_on(store: Store, clock: &ManualClock, providers: Providers) -> Engine {
    Engine::new(
        store,
        providers,
        Arc::new(clock.clone()),
        Arc::new(catalog()),
        ChangePolicy::default(),
    )
    .with_metering(settings())
}

async fn harness(provider: Arc<Counting>, start: OffsetDateTime) -> Harness {
    let (store, dir) = sqlite_store().await;
    let clock = ManualClock::new(start);
    Harness {
        engine: engine_on(store, &clock, Providers::new().with(provider)),
        clock,
        _dir: Some(dir),
    }
}

async fn subscription(store: &Store, marketplace: Marketplace, customer: &str) -> Subscription {
    let code = if marketplace == Marketplace::AWS {
        "prod-a"
    } else {
        "offer-a"
    };
    let tenant = Tenant::new("Acme", None, "ops@acme.example", T0).unwrap();
    store.create_tenant(&tenant).await.unwrap();
    let mut sub = Subscription::pending(
        ExternalRef {
            marketplace,
            external_id: format!("{customer}/{code}"),
            product_code: code.into(),
            customer_id: customer.into(),
            customer_account_id: None,
            license_arn: None,
        },
        T0 - Duration::days(1),
    );
    sub.plan_id = Some(PlanId::new("pro"));
    let sub = store.upsert_subscription(&sub).await.unwrap();
    store
        .bind_subscription(sub.id, tenant.id, T0)
        .await
        .unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, T0 - Duration::days(1))
        .await
        .unwrap();
    store.get_subscription(sub.id).await.unwrap()
}

fn input(sub: SubscriptionId, dimension: &str, qty: &str, at: OffsetDateTime) -> UsageInput {
    UsageInput {
        subscription_id: Some(sub),
        tenant_id: None,
        product: None,
        dimension: dimension.into(),
        quantity: qty.parse().unwrap(),
        timestamp: at,
        idempotency_key: None,
        allocations: vec![],
    }
}

#[tokio::test]
async fn every_validation_error_is_named() {
    let provider = Counting::new(Marketplace::AWS);
    let now = T0 + Duration::minutes(30);
    let h = harness(provider, now).await;
    let store = &h.engine.store;
    let sub = subscription(store, Marketplace::AWS, "c1").await;
    let tenant = sub.tenant_id.unwrap();
    let ok = input(sub.id, "api_calls", "1", now);
    let kind = |r: Result<_, marketlink_engine::metering::IngestError>| r.unwrap_err().kind;

    assert!(matches!(
        kind(h.engine.ingest_usage(&[]).await),
        IngestErrorKind::EmptyBatch
    ));
    let too_many = vec![ok.clone(); settings().max_batch_events + 1];
    assert!(matches!(
        kind(h.engine.ingest_usage(&too_many).await),
        IngestErrorKind::BatchTooLarge { .. }
    ));
    let mut e = ok.clone();
    e.subscription_id = None;
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::MissingSubscription
    ));
    let mut e = ok.clone();
    e.subscription_id = Some(SubscriptionId::new());
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::UnknownSubscription
    ));
    for dim in ["bogus", "seats"] {
        let e = input(sub.id, dim, "1", now);
        assert!(matches!(
            kind(h.engine.ingest_usage(&[ok.clone(), e]).await),
            IngestErrorKind::UnknownDimension { .. }
        ));
    }
    let e = input(sub.id, "api_calls", "1", now + Duration::minutes(10));
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::TimestampInFuture(_)
    ));
    let e = input(sub.id, "api_calls", "1", now - Duration::hours(24));
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::TimestampTooOld { .. }
    ));
    let mut e = ok.clone();
    e.allocations = vec![marketlink_core::UsageAllocation {
        quantity: Quantity::from_units(2),
        tags: vec![("team".into(), "a".into())],
    }];
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::InvalidAllocations(_)
    ));
    let mut e = ok.clone();
    e.idempotency_key = Some(String::new());
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::InvalidIdempotencyKey
    ));
    // More than one marketplace record can carry; the largest allowed is accepted below.
    let e = input(sub.id, "api_calls", "2147483647.000001", now);
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::QuantityTooLarge(_)
    ));
    // Not yet active (seed 000/001: no usage before subscribe-success / activation).
    let pending = store
        .upsert_subscription(&Subscription::pending(
            ExternalRef {
                marketplace: Marketplace::AWS,
                external_id: "c2/prod-a".into(),
                product_code: "prod-a".into(),
                customer_id: "c2".into(),
                customer_account_id: None,
                license_arn: None,
            },
            T0,
        ))
        .await
        .unwrap();
    let e = input(pending.id, "api_calls", "1", now);
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e]).await),
        IngestErrorKind::SubscriptionNotActive(_)
    ));
    // Nothing of the refused batches was stored.
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 0);

    // By tenant and product, with an idempotency key: stored once.
    let mut by_tenant = ok.clone();
    by_tenant.subscription_id = None;
    by_tenant.tenant_id = Some(tenant);
    by_tenant.product = Some(ProductId::new("analytics"));
    by_tenant.idempotency_key = Some("evt-1".into());
    let first = h.engine.ingest_usage(&[by_tenant.clone()]).await.unwrap();
    let second = h.engine.ingest_usage(&[by_tenant]).await.unwrap();
    assert_eq!(
        (first.accepted, second.accepted, second.duplicates),
        (1, 0, 1)
    );
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 1);
    h.engine
        .ingest_usage(&[input(sub.id, "api_calls", "2147483647", now)])
        .await
        .unwrap();
}

/// Hourly totals saturate instead of overflowing (so one runaway hour cannot stop every
/// fold), and the flusher dead-letters a saturated hour rather than bill it.
#[tokio::test]
async fn a_saturated_hour_is_dead_lettered_not_sent() {
    let provider = Counting::new(Marketplace::AWS);
    let start = T0 + Duration::hours(2);
    let h = harness(provider.clone(), start).await;
    let store = &h.engine.store;
    let sub = subscription(store, Marketplace::AWS, "c1").await;
    // Written past the engine's per-event cap, straight into the store.
    let event = |micros: i64| marketlink_store::NewUsageEvent {
        id: Uuid::now_v7(),
        subscription_id: sub.id,
        dimension: "api_calls".into(),
        occurred_at: T0,
        hour: T0,
        quantity: Quantity::from_micros(micros).unwrap(),
        idempotency_key: None,
        allocations: vec![],
    };
    store
        .usage_ingest(&[event(i64::MAX), event(i64::MAX)], start)
        .await
        .unwrap();
    store.usage_fold().await.unwrap();
    store.usage_ingest(&[event(i64::MAX)], start).await.unwrap();
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!(
        hours[0].quantity.micros(),
        marketlink_store::MAX_HOUR_MICROS
    );
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.dead, 1, "{run:?}");
    assert!(provider.sent().iter().all(|r| r.hour != T0));
    let dead = store
        .usage_hours_in(marketlink_store::UsageHourState::Dead, 10)
        .await
        .unwrap();
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("largest quantity")
    );
}

#[tokio::test]
async fn hourly_totals_zero_records_and_batches_of_25() {
    let provider = Counting::new(Marketplace::AWS);
    let start = T0 + Duration::hours(20) + Duration::minutes(10);
    let h = harness(provider.clone(), start).await;
    let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
    // 15 past hours × 2 dimensions, two events each.
    let mut events = Vec::new();
    for i in 0..15 {
        let hour = T0 + Duration::hours(i);
        for dim in ["api_calls", "storage_gb"] {
            events.push(input(sub.id, dim, "1.5", hour + Duration::minutes(3)));
            events.push(input(sub.id, dim, "2.5", hour + Duration::minutes(58)));
        }
    }
    h.engine.ingest_usage(&events).await.unwrap();
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(
        (run.claimed, run.delivered, run.calls),
        (30, 30, 2),
        "{run:?}"
    );
    assert_eq!(*provider.batches.lock().unwrap(), vec![25, 5]);
    assert!(
        provider
            .sent()
            .iter()
            .all(|r| r.quantity == Quantity::from_units(4))
    );
    assert!(
        provider
            .sent()
            .iter()
            .all(|r| r.plan_id.as_deref() == Some("pro"))
    );
    // Nothing more is due: a second flush sends nothing.
    assert_eq!(h.engine.flush_usage().await.unwrap().claimed, 0);

    // Two hours on, with usage in only one dimension of one hour: zero records for the rest
    // of the active hours since the engine first saw the subscription (20:00).
    h.engine
        .ingest_usage(&[input(
            sub.id,
            "api_calls",
            "7",
            start + Duration::minutes(5),
        )])
        .await
        .unwrap();
    h.clock.advance(Duration::hours(2));
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.zero_created, 3, "{run:?}");
    let sent = provider.sent();
    let late: Vec<_> = sent[30..]
        .iter()
        .map(|r| (r.hour, r.dimension.as_str(), r.quantity.to_string()))
        .collect();
    let h20 = T0 + Duration::hours(20);
    let h21 = T0 + Duration::hours(21);
    assert_eq!(late.len(), 4, "{late:?}");
    assert!(late.contains(&(h20, "api_calls", "7".into())));
    assert!(late.contains(&(h20, "storage_gb", "0".into())));
    assert!(late.contains(&(h21, "api_calls", "0".into())));
    assert!(late.contains(&(h21, "storage_gb", "0".into())));
    // Every record was sent exactly once.
    let mut ids: Vec<Uuid> = sent.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent.len());
}

/// A flush of many claims: the next claim is taken while the current one is sent, and the
/// subscriptions met by an earlier claim are not read again. Every hour goes out once, with its
/// own subscription's identity.
#[tokio::test]
async fn many_claims_in_one_flush_send_every_hour_once_to_its_own_customer() {
    let provider = Counting::new(Marketplace::AWS);
    let start = T0 + Duration::hours(20) + Duration::minutes(10);
    let mut h = harness(provider.clone(), start).await;
    h.engine.metering.claim_limit = 7;
    let mut subs = Vec::new();
    for c in 0..3 {
        subs.push(subscription(&h.engine.store, Marketplace::AWS, &format!("cust-{c}")).await);
    }
    // Hour by hour, as usage arrives: 12 hours × 3 subscriptions = 36 totals, 6 claims.
    let mut events = Vec::new();
    for i in 0..12 {
        for (n, sub) in subs.iter().enumerate() {
            let qty = format!("{}", 1 + i * 3 + n as i64);
            events.push(input(sub.id, "api_calls", &qty, T0 + Duration::hours(i)));
        }
    }
    h.engine.ingest_usage(&events).await.unwrap();
    let run = h.engine.flush_usage().await.unwrap();
    // No zero rows: active hours count from when the engine first saw the subscriptions.
    assert_eq!(run.zero_created, 0, "{run:?}");
    let sent = provider.sent();
    let usage: Vec<_> = sent.iter().filter(|r| r.dimension == "api_calls").collect();
    assert_eq!(usage.len(), 36, "{run:?}");
    assert_eq!(run.delivered, sent.len(), "{run:?}");
    for i in 0..12 {
        for (n, sub) in subs.iter().enumerate() {
            let record = usage
                .iter()
                .find(|r| {
                    r.hour == T0 + Duration::hours(i)
                        && r.subscription.customer_id == sub.external.customer_id
                })
                .unwrap_or_else(|| panic!("hour {i} of customer {n} was not sent"));
            assert_eq!(
                record.quantity.to_string(),
                format!("{}", 1 + i * 3 + n as i64)
            );
        }
    }
    let mut ids: Vec<Uuid> = sent.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent.len(), "a record went out twice");
    assert_eq!(h.engine.flush_usage().await.unwrap().claimed, 0);
}

#[tokio::test]
async fn retries_honour_retry_after_then_dead_letter() {
    let provider = Counting::new(Marketplace::AWS);
    let now = T0 + Duration::hours(2);
    let h = harness(provider.clone(), now).await;
    let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
    h.engine
        .ingest_usage(&[input(sub.id, "api_calls", "3", T0)])
        .await
        .unwrap();
    provider
        .failures
        .lock()
        .unwrap()
        .push_back(ProviderError::Retryable {
            message: "throttled".into(),
            retry_after: Some(StdDuration::from_secs(120)),
        });
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.retried, 1);
    let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Sending);
    assert!(rows[0].next_attempt_at >= now + Duration::seconds(120));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("temporary marketplace failure: throttled")
    );
    // Not before Retry-After.
    h.clock.advance(Duration::seconds(60));
    assert_eq!(h.engine.flush_usage().await.unwrap().claimed, 0);
    h.clock.advance(Duration::seconds(61));
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.delivered, 1);
    assert_eq!(provider.sent().len(), 1);

    // Per-record outcomes: retry with backoff until attempts run out, then the dead letter;
    // refusals and mismatches are settled at once.
    {
        let mut outcomes = provider.outcomes.lock().unwrap();
        outcomes.insert(
            "api_calls".into(),
            UsageOutcome::Retry {
                detail: "unprocessed".into(),
            },
        );
        outcomes.insert(
            "storage_gb".into(),
            UsageOutcome::QuantityMismatch {
                detail: "DuplicateRecord".into(),
            },
        );
    }
    let at = T0 + Duration::hours(1);
    h.engine
        .ingest_usage(&[
            input(sub.id, "api_calls", "1", at),
            input(sub.id, "storage_gb", "1", at),
        ])
        .await
        .unwrap();
    h.clock.advance(Duration::hours(1));
    for attempt in 1..=5 {
        let run = h.engine.flush_usage().await.unwrap();
        assert_eq!(
            run.claimed,
            if attempt == 1 { 2 } else { 1 },
            "attempt {attempt}"
        );
        let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
        let row = rows
            .iter()
            .find(|r| r.hour == at && r.dimension == "api_calls")
            .unwrap();
        if attempt < 5 {
            assert_eq!(row.state, UsageHourState::Sending);
            // Exponential backoff with jitter: within [base·2^(n-1)/2, base·2^(n-1)].
            let ceiling = Duration::seconds(10) * 2_i32.pow(attempt - 1);
            let delay = row.next_attempt_at - h.clock.now();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay}"
            );
            h.clock.advance(delay);
        } else {
            assert_eq!(row.state, UsageHourState::Dead);
            assert!(
                row.last_error
                    .as_deref()
                    .unwrap()
                    .contains("gave up after 5 attempts")
            );
        }
    }
    let mismatched = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Mismatch, 10)
        .await
        .unwrap();
    assert_eq!(mismatched.len(), 1);
    assert_eq!(mismatched[0].last_error.as_deref(), Some("DuplicateRecord"));
    // Every attempt resent the identical record.
    let resent: Vec<_> = provider
        .sent()
        .into_iter()
        .filter(|r| r.hour == at && r.dimension == "api_calls")
        .collect();
    assert_eq!(resent.len(), 5);
    assert!(resent.iter().all(|r| r == &resent[0]));

    // A refusal is a dead letter with the marketplace's reason.
    provider.outcomes.lock().unwrap().insert(
        "api_calls".into(),
        UsageOutcome::Rejected {
            code: "InvalidUsageDimension".into(),
            detail: "no such dimension".into(),
        },
    );
    h.engine
        .ingest_usage(&[input(
            sub.id,
            "api_calls",
            "1",
            h.clock.now() - Duration::hours(1),
        )])
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(10));
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.dead, 1, "{run:?}");
    let dead = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    assert!(
        dead.iter()
            .any(|d| d.last_error.as_deref() == Some("InvalidUsageDimension: no such dimension"))
    );
}

#[tokio::test]
async fn final_usage_goes_out_at_once_when_cancellation_begins_and_azure_skips_zeros() {
    let aws = Counting::new(Marketplace::AWS);
    let azure = Counting::new(Marketplace::AZURE);
    let now = T0 + Duration::minutes(20);
    let (store, dir) = sqlite_store().await;
    let clock = ManualClock::new(now);
    let engine = engine_on(
        store,
        &clock,
        Providers::new().with(aws.clone()).with(azure.clone()),
    );
    let _dir = dir;
    let sub = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let az = subscription(&engine.store, Marketplace::AZURE, "c9").await;
    engine
        .ingest_usage(&[
            input(sub.id, "api_calls", "2", now - Duration::minutes(5)),
            input(az.id, "api_calls", "0", now - Duration::hours(1)),
            input(az.id, "storage_gb", "1.25", now - Duration::hours(1)),
        ])
        .await
        .unwrap();
    // The current hour is open: nothing of it is sent yet.
    let run = engine.flush_usage().await.unwrap();
    assert!(aws.sent().is_empty(), "{run:?}");
    // Zero usage is not sent to Microsoft (it refuses quantities ≤ 0); real usage is.
    assert_eq!(azure.sent().len(), 1);
    assert_eq!(azure.sent()[0].quantity.to_string(), "1.25");
    assert_eq!(run.skipped, 1);
    // Unsubscribe-pending: the unfinished hour is the final usage and goes out now.
    engine
        .store
        .apply_lifecycle(sub.id, Lifecycle::BeginCancel, now)
        .await
        .unwrap();
    let run = engine.flush_usage().await.unwrap();
    assert_eq!(run.delivered, 1, "{run:?}");
    assert_eq!(aws.sent()[0].hour, T0);
    // The hour is frozen now: later usage for it is refused with a clear conflict.
    let late = engine
        .ingest_usage(&[input(sub.id, "api_calls", "1", now)])
        .await
        .unwrap_err();
    assert!(
        matches!(late.kind, IngestErrorKind::HourAlreadySent(_)),
        "{late}"
    );
}

/// A fresh database on the PostgreSQL server of the test suite.
async fn postgres_store() -> Option<(Store, String)> {
    use sqlx::{Connection, Executor};
    if std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        return None;
    }
    let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("marketlink_meter_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((store, name))
}

#[tokio::test]
async fn two_flushers_on_postgres_never_send_a_record_twice() {
    let Some((store, name)) = postgres_store().await else {
        return;
    };
    let now = T0 + Duration::hours(23);
    let clock = ManualClock::new(now);
    // Both replicas' providers write to one ledger, as the marketplace would see it.
    let slow = Arc::new(Counting {
        marketplace: Marketplace::AWS,
        sent: Mutex::default(),
        batches: Mutex::default(),
        failures: Mutex::default(),
        outcomes: Mutex::default(),
        delay: StdDuration::from_millis(5),
    });
    let small = |mut e: Engine| {
        e.metering.claim_limit = 40;
        e
    };
    let a = small(engine_on(
        store.clone(),
        &clock,
        Providers::new().with(slow.clone()),
    ));
    let b_store = Store::connect(
        &format!(
            "{}/{name}",
            std::env::var("MARKETLINK_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
                .rsplit_once('/')
                .unwrap()
                .0
        ),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let b = small(engine_on(
        b_store,
        &clock,
        Providers::new().with(slow.clone()),
    ));
    let mut events = Vec::new();
    for c in 0..10 {
        let sub = subscription(&store, Marketplace::AWS, &format!("cust-{c}")).await;
        for i in 0..20 {
            events.push(input(sub.id, "api_calls", "1", T0 + Duration::hours(i)));
        }
    }
    a.ingest_usage(&events).await.unwrap();
    let (ra, rb) = tokio::join!(a.flush_usage(), b.flush_usage());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 200, "{ra:?} {rb:?}");
    assert!(
        ra.claimed > 0 && rb.claimed > 0,
        "both replicas worked: {ra:?} {rb:?}"
    );
    let sent = slow.sent();
    let mut ids: Vec<Uuid> = sent.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (sent.len(), ids.len()),
        (200, 200),
        "a record was sent twice"
    );
    assert!(slow.batches.lock().unwrap().iter().all(|n| *n <= 25));
    let backlog = store.usage_backlog(now).await.unwrap();
    assert_eq!(backlog.by_state.get("delivered"), Some(&200));
    store.close().await;
    a.store.close().await;
    b.store.close().await;
    if std::env::var("MARKETLINK_TEST_NO_DESTROY").as_deref() != Ok("1") {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_dead_hour_sent_again_by_an_operator_is_delivered_with_the_same_record() {
    let provider = Counting::new(Marketplace::AWS);
    let h = harness(provider.clone(), T0 + Duration::hours(2)).await;
    let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
    h.engine
        .ingest_usage(&[input(sub.id, "api_calls", "4", T0)])
        .await
        .unwrap();
    provider.outcomes.lock().unwrap().insert(
        "api_calls".into(),
        UsageOutcome::Rejected {
            code: "CustomerNotEntitledException".into(),
            detail: "not entitled".into(),
        },
    );
    assert_eq!(h.engine.flush_usage().await.unwrap().dead, 1);
    let dead = h
        .engine
        .store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    // Only dead hours can be sent again.
    let now = h.clock.now();
    let delivered_id = Uuid::now_v7();
    assert!(matches!(
        h.engine.store.usage_requeue(delivered_id, now).await,
        Err(marketlink_store::StoreError::NotFound(_))
    ));
    // The operator fixed the entitlement and sends the hour again.
    provider.outcomes.lock().unwrap().clear();
    h.engine.store.usage_requeue(dead[0].id, now).await.unwrap();
    let run = h.engine.flush_usage().await.unwrap();
    assert_eq!(run.delivered, 1, "{run:?}");
    let rows = h.engine.store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Delivered);
    let sent = provider.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0], sent[1],
        "the identical frozen record went out again"
    );
    assert!(matches!(
        h.engine.store.usage_requeue(dead[0].id, now).await,
        Err(marketlink_store::StoreError::NotFound(_))
    ));
}
