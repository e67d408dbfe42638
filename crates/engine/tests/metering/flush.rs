//! Usage out: hourly totals, zero records, batches, final usage.

use marketlink_core::{Lifecycle, ManualClock, Marketplace, Quantity};
use marketlink_engine::{Providers, metering::IngestErrorKind};
use time::Duration;
use uuid::Uuid;

use crate::{
    fake::Counting,
    harness::{T0, engine_on, harness, input, sqlite_store, subscription},
};

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
        hour_cap: None,
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
    h.engine.ingest_usage(&events, None).await.unwrap();
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
        .ingest_usage(
            &[input(
                sub.id,
                "api_calls",
                "7",
                start + Duration::minutes(5),
            )],
            None,
        )
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
    many_claims_with_cached_subscriptions(20_000).await;
}

/// Past the bound of subscriptions a run keeps between claims, the others come with each
/// claim: every hour still goes to its own customer (none is taken for a deleted one).
#[tokio::test]
async fn more_subscriptions_than_a_flush_keeps_are_read_with_each_claim() {
    many_claims_with_cached_subscriptions(1).await;
    many_claims_with_cached_subscriptions(0).await;
}

async fn many_claims_with_cached_subscriptions(cached: usize) {
    let provider = Counting::new(Marketplace::AWS);
    let start = T0 + Duration::hours(20) + Duration::minutes(10);
    let mut h = harness(provider.clone(), start).await;
    h.engine.metering.claim_limit = 7;
    h.engine.metering.cached_subscriptions = cached;
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
    h.engine.ingest_usage(&events, None).await.unwrap();
    let run = h.engine.flush_usage().await.unwrap();
    // No zero rows: active hours count from when the engine first saw the subscriptions.
    assert_eq!(run.zero_created, 0, "{run:?}");
    let sent = provider.sent();
    let usage: Vec<_> = sent.iter().filter(|r| r.dimension == "api_calls").collect();
    assert_eq!(usage.len(), 36, "{run:?}");
    assert_eq!(run.dead, 0, "{run:?}");
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
        .ingest_usage(
            &[
                input(sub.id, "api_calls", "2", now - Duration::minutes(5)),
                input(az.id, "api_calls", "0", now - Duration::hours(1)),
                input(az.id, "storage_gb", "1.25", now - Duration::hours(1)),
            ],
            None,
        )
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
        .ingest_usage(&[input(sub.id, "api_calls", "1", now)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(late.kind, IngestErrorKind::HourAlreadySent(_)),
        "{late}"
    );
}

/// Records per call are the smaller of the configured `batch_size` and what the marketplace
/// takes in one call.
#[tokio::test]
async fn batches_are_no_larger_than_the_marketplace_or_the_settings_allow() {
    let start = T0 + Duration::hours(20) + Duration::minutes(10);
    for (max_batch, batch_size, expected) in
        [(10, 25, vec![10, 10, 10]), (25, 7, vec![7, 7, 7, 7, 2])]
    {
        let provider = Counting::taking(Marketplace::AWS, max_batch);
        let mut h = harness(provider.clone(), start).await;
        h.engine.metering.batch_size = batch_size;
        let sub = subscription(&h.engine.store, Marketplace::AWS, "c1").await;
        let mut events = Vec::new();
        for i in 0..15 {
            for dim in ["api_calls", "storage_gb"] {
                events.push(input(sub.id, dim, "1", T0 + Duration::hours(i)));
            }
        }
        h.engine.ingest_usage(&events, None).await.unwrap();
        let run = h.engine.flush_usage().await.unwrap();
        assert_eq!(run.delivered, 30, "{run:?}");
        assert_eq!(*provider.batches.lock().unwrap(), expected);
    }
}
