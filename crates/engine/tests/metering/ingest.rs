//! Usage in: validation, resolution by tenant and product, idempotency.

use marketlink_core::{
    ExternalRef, ManualClock, Marketplace, ProductId, Quantity, Subscription, SubscriptionId,
    UsageAllocation,
};
use marketlink_engine::{Providers, metering::IngestErrorKind};
use time::{Duration, macros::datetime};

use crate::{
    fake::Counting,
    harness::{T0, engine_on, harness, input, settings, sqlite_store, subscription},
};

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
        kind(h.engine.ingest_usage(&[], None).await),
        IngestErrorKind::EmptyBatch
    ));
    let too_many = vec![ok.clone(); settings().max_batch_events + 1];
    assert!(matches!(
        kind(h.engine.ingest_usage(&too_many, None).await),
        IngestErrorKind::BatchTooLarge { .. }
    ));
    let mut e = ok.clone();
    e.subscription_id = None;
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::MissingSubscription
    ));
    let mut e = ok.clone();
    e.subscription_id = Some(SubscriptionId::new());
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::UnknownSubscription
    ));
    for dim in ["bogus", "seats"] {
        let e = input(sub.id, dim, "1", now);
        assert!(matches!(
            kind(h.engine.ingest_usage(&[ok.clone(), e], None).await),
            IngestErrorKind::UnknownDimension { .. }
        ));
    }
    let e = input(sub.id, "api_calls", "1", now + Duration::minutes(10));
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::TimestampInFuture(_)
    ));
    let e = input(sub.id, "api_calls", "1", now - Duration::hours(24));
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::TimestampTooOld { .. }
    ));
    let mut e = ok.clone();
    e.allocations = vec![UsageAllocation {
        quantity: Quantity::from_units(2),
        tags: vec![("team".into(), "a".into())],
    }];
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::InvalidAllocations(_)
    ));
    let mut e = ok.clone();
    e.idempotency_key = Some(String::new());
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
        IngestErrorKind::InvalidIdempotencyKey
    ));
    // More than one marketplace record can carry; the largest allowed is accepted below.
    let e = input(sub.id, "api_calls", "2147483647.000001", now);
    assert!(matches!(
        kind(h.engine.ingest_usage(&[e], None).await),
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
        kind(h.engine.ingest_usage(&[e], None).await),
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
    let first = h
        .engine
        .ingest_usage(&[by_tenant.clone()], None)
        .await
        .unwrap();
    let second = h.engine.ingest_usage(&[by_tenant], None).await.unwrap();
    assert_eq!(
        (first.accepted, second.accepted, second.duplicates),
        (1, 0, 1)
    );
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 1);
    // The largest event is taken, in an hour of its own (this one holds 1 already, and AWS
    // takes no more than 2,147,483,647 in an hour).
    let largest = input(sub.id, "api_calls", "2147483647", now - Duration::hours(1));
    h.engine.ingest_usage(&[largest], None).await.unwrap();
}

/// A caller limited to one tenant reports only for that tenant's subscriptions; anything else
/// (another tenant's, an unknown or an unnamed subscription) looks missing, and nothing of
/// the batch is stored.
#[tokio::test]
async fn a_tenant_scoped_caller_reports_only_for_its_own_tenant() {
    let now = T0 + Duration::minutes(30);
    let h = harness(Counting::new(Marketplace::AWS), now).await;
    let store = &h.engine.store;
    let ours = subscription(store, Marketplace::AWS, "c1").await;
    let theirs = subscription(store, Marketplace::AWS, "c2").await;
    let tenant = ours.tenant_id.unwrap();
    assert_ne!(theirs.tenant_id, Some(tenant));
    let own = input(ours.id, "api_calls", "1", now);
    let mut by_other_tenant = own.clone();
    by_other_tenant.subscription_id = None;
    by_other_tenant.tenant_id = theirs.tenant_id;
    by_other_tenant.product = Some(ProductId::new("analytics"));
    let mut unnamed = own.clone();
    unnamed.subscription_id = None;
    let refused = [
        input(theirs.id, "api_calls", "1", now),
        input(SubscriptionId::new(), "api_calls", "1", now),
        by_other_tenant,
        unnamed,
    ];
    for foreign in refused {
        let error = h
            .engine
            .ingest_usage(&[own.clone(), foreign], Some(tenant))
            .await
            .unwrap_err();
        assert!(
            matches!(error.kind, IngestErrorKind::UnknownSubscription),
            "{error}"
        );
        assert_eq!(error.index, Some(1));
    }
    assert_eq!(store.usage_event_count(ours.id).await.unwrap(), 0);

    let mut by_own_tenant = own.clone();
    by_own_tenant.subscription_id = None;
    by_own_tenant.tenant_id = Some(tenant);
    by_own_tenant.product = Some(ProductId::new("analytics"));
    let accepted = h
        .engine
        .ingest_usage(&[own, by_own_tenant], Some(tenant))
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 2);
    // Unscoped, any tenant's subscription is taken.
    let accepted = h
        .engine
        .ingest_usage(&[input(theirs.id, "api_calls", "1", now)], None)
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 1);
}

/// How long an hour is accepted and whether tags are taken come from the provider's rules:
/// the AWS-like fake closes the previous month at 06:00 UTC on the 1st and takes tags; the
/// generic one keeps the whole 24 hours and refuses tags.
#[tokio::test]
async fn deadlines_and_tags_follow_the_marketplace_rules() {
    let now = datetime!(2026-12-01 05:40 UTC);
    let (store, _dir) = sqlite_store().await;
    let clock = ManualClock::new(now);
    let providers = Providers::new()
        .with(Counting::new(Marketplace::AWS))
        .with(Counting::new(Marketplace::AZURE));
    let engine = engine_on(store, &clock, providers);
    let aws = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let azure = subscription(&engine.store, Marketplace::AZURE, "c9").await;
    let last_hour_of_november = datetime!(2026-11-30 23:10 UTC);

    // Sent at 06:10 at the earliest with the 30-minute margin: after AWS's month close.
    let error = engine
        .ingest_usage(
            &[input(aws.id, "api_calls", "1", last_hour_of_november)],
            None,
        )
        .await
        .unwrap_err();
    match error.kind {
        IngestErrorKind::TimestampTooOld { deadline, .. } => {
            assert_eq!(deadline, datetime!(2026-12-01 06:00 UTC));
        }
        other => panic!("{other}"),
    }
    engine
        .ingest_usage(
            &[input(azure.id, "api_calls", "1", last_hour_of_november)],
            None,
        )
        .await
        .unwrap();

    let tagged = |sub| {
        let mut e = input(sub, "api_calls", "2", now - Duration::minutes(5));
        e.allocations = vec![UsageAllocation {
            quantity: Quantity::from_units(2),
            tags: vec![("team".into(), "a".into())],
        }];
        e
    };
    engine.ingest_usage(&[tagged(aws.id)], None).await.unwrap();
    let error = engine
        .ingest_usage(&[tagged(azure.id)], None)
        .await
        .unwrap_err();
    match error.kind {
        IngestErrorKind::InvalidAllocations(message) => {
            assert!(
                message.contains("does not take cost-allocation tags"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
}

/// A marketplace that takes whole units only refuses a fractional quantity when it arrives,
/// with the whole batch, instead of accepting it and dead-lettering it at the flush; one that
/// takes decimals accepts it.
#[tokio::test]
async fn fractions_are_refused_where_the_marketplace_takes_whole_units_only() {
    let now = T0 + Duration::minutes(30);
    let (store, _dir) = sqlite_store().await;
    let clock = ManualClock::new(now);
    let providers = Providers::new()
        .with(Counting::whole_units_only(Marketplace::AWS))
        .with(Counting::new(Marketplace::AZURE));
    let engine = engine_on(store, &clock, providers);
    let whole = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let decimal = subscription(&engine.store, Marketplace::AZURE, "c9").await;

    let batch = [
        input(whole.id, "api_calls", "2", now),
        input(whole.id, "api_calls", "1.5", now),
    ];
    let error = engine.ingest_usage(&batch, None).await.unwrap_err();
    assert_eq!(error.index, Some(1));
    assert_eq!(error.code(), "whole_units_only");
    let message = error.to_string();
    assert!(
        message.contains("1.5") && message.contains(&Marketplace::AWS.to_string()),
        "{message}"
    );
    assert!(matches!(
        error.kind,
        IngestErrorKind::FractionalQuantity { .. }
    ));
    // The whole batch was refused, its whole first event included.
    assert_eq!(engine.store.usage_event_count(whole.id).await.unwrap(), 0);

    // Whole quantities whose allocations are fractional cannot be billed either.
    let mut split = input(whole.id, "api_calls", "2", now);
    split.allocations = ["0.5", "1.5"]
        .map(|q| UsageAllocation {
            quantity: q.parse().unwrap(),
            tags: vec![("team".into(), q.into())],
        })
        .into();
    let error = engine.ingest_usage(&[split], None).await.unwrap_err();
    match error.kind {
        IngestErrorKind::InvalidAllocations(message) => {
            assert!(message.contains("whole units only"), "{message}");
        }
        other => panic!("{other}"),
    }

    let accepted = engine
        .ingest_usage(&[input(whole.id, "api_calls", "2", now)], None)
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 1);
    let accepted = engine
        .ingest_usage(&[input(decimal.id, "api_calls", "1.5", now)], None)
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 1);
}

/// AWS takes one record of at most 2,147,483,647 units per subscription, dimension and hour:
/// usage that would take an hour past it is refused when it arrives, with its batch, and of
/// two concurrent requests that together pass it only one is taken (whether the group commit
/// puts them in one transaction or not). Other hours, and Microsoft's usage, are not capped.
#[tokio::test]
async fn an_hour_past_the_marketplace_cap_is_refused_at_ingest() {
    let now = T0 + Duration::minutes(30);
    let (store, _dir) = sqlite_store().await;
    let clock = ManualClock::new(now);
    let providers = Providers::new()
        .with(Counting::new(Marketplace::AWS))
        .with(Counting::new(Marketplace::AZURE));
    let engine = engine_on(store, &clock, providers);
    let aws = subscription(&engine.store, Marketplace::AWS, "c1").await;
    let azure = subscription(&engine.store, Marketplace::AZURE, "c9").await;
    let two_billion = |sub: SubscriptionId, key: &str| {
        let mut e = input(sub, "api_calls", "2000000000", now);
        e.idempotency_key = Some(key.into());
        e
    };

    engine
        .ingest_usage(&[two_billion(aws.id, "a")], None)
        .await
        .unwrap();
    let batch = [
        input(aws.id, "api_calls", "1", now - Duration::hours(1)),
        two_billion(aws.id, "b"),
    ];
    let error = engine.ingest_usage(&batch, None).await.unwrap_err();
    assert_eq!(error.code(), "hourly_quantity_limit");
    assert_eq!(error.index, Some(1), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("4000000000")
            && message.contains("2000000000 accepted")
            && message.contains("2147483647")
            && message.contains(&Marketplace::AWS.to_string()),
        "{message}"
    );
    assert_eq!(engine.store.usage_event_count(aws.id).await.unwrap(), 1);
    // The next hour is counted on its own.
    let next = input(aws.id, "api_calls", "2000000000", now + Duration::hours(1));
    clock.advance(Duration::hours(1));
    engine.ingest_usage(&[next], None).await.unwrap();
    // Microsoft declares no cap.
    for key in ["x", "y"] {
        engine
            .ingest_usage(&[two_billion(azure.id, key)], None)
            .await
            .unwrap();
    }

    // Concurrent requests for one fresh hour: exactly one of each pair is taken.
    for round in 0..4 {
        let sub = subscription(&engine.store, Marketplace::AWS, &format!("race-{round}")).await;
        let at = now + Duration::hours(1);
        let one = [input(sub.id, "api_calls", "2000000000", at)];
        let two = [input(sub.id, "api_calls", "2000000000", at)];
        let (a, b) = tokio::join!(
            engine.ingest_usage(&one, None),
            engine.ingest_usage(&two, None)
        );
        assert_eq!(
            [&a, &b].iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        assert_eq!(engine.store.usage_event_count(sub.id).await.unwrap(), 1);
    }
}
