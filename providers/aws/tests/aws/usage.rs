//! BatchMeterUsage through report_usage: every outcome, batching and order.

use marketlink_core::{
    Clock, ExternalRef, MarketplaceProvider, ProviderError, Quantity, UsageAllocation,
    UsageOutcome, UsageRecord,
};
use marketlink_sandbox::aws::{InjectedError, OfferKind, SubscriptionAction};
use time::{Duration, OffsetDateTime, Time};

use crate::common::*;

fn hour_start(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::from_hms(t.hour(), 0, 0).unwrap())
}

fn rec(sub: &ExternalRef, dim: &str, qty: &str, hour: OffsetDateTime) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        subscription: sub.clone(),
        plan_id: None,
        dimension: dim.into(),
        hour,
        quantity: qty.parse::<Quantity>().unwrap(),
        allocations: vec![],
    }
}

async fn subscribed(h: &Harness, code: &str, offer: OfferKind, buyer: &str) -> ExternalRef {
    let p = h.sb.purchase(code, offer, buyer).unwrap();
    let r = h.resolve(&p.registration_token).await.subscription;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    r
}

fn batch_calls(h: &Harness) -> usize {
    h.sb.call_log()
        .iter()
        .filter(|c| c.operation == "BatchMeterUsage")
        .count()
}

#[tokio::test]
async fn success_resend_duplicate_and_not_subscribed() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let unsubscribed = {
        let p =
            h.sb.purchase(CLASSIC, OfferKind::Subscription, OTHER_BUYER)
                .unwrap();
        h.resolve(&p.registration_token).await.subscription
    };
    let hour = hour_start(h.clock.now()) - Duration::hours(1);
    let first = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "5", hour)])
        .await
        .unwrap();
    let UsageOutcome::Accepted {
        marketplace_id: Some(id),
    } = &first[0]
    else {
        panic!("{first:?}")
    };
    // Identical resend: Success with the same MeteringRecordId.
    let again = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "5", hour)])
        .await
        .unwrap();
    assert_eq!(
        again[0],
        UsageOutcome::Accepted {
            marketplace_id: Some(id.clone())
        }
    );
    let out = h
        .provider
        .report_usage(&[
            rec(&sub, "api_calls", "6", hour),
            rec(&unsubscribed, "api_calls", "1", hour),
        ])
        .await
        .unwrap();
    assert!(
        matches!(out[0], UsageOutcome::QuantityMismatch { .. }),
        "{out:?}"
    );
    assert!(!out[0].is_delivered());
    assert!(
        matches!(out[1], UsageOutcome::NotSubscribed { .. }),
        "{out:?}"
    );
    let ledger = h.sb.metered_records();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].quantity, "5");
    assert_eq!(
        ledger[0].customer_identifier.as_deref(),
        Some(sub.customer_id.as_str())
    );
}

#[tokio::test]
async fn more_than_25_records_split_with_outcomes_in_order() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let conc = subscribed(&h, CONCURRENT, OfferKind::Subscription, BUYER).await;
    let not_sub = {
        let p =
            h.sb.purchase(CLASSIC, OfferKind::Subscription, OTHER_BUYER)
                .unwrap();
        h.resolve(&p.registration_token).await.subscription
    };
    let base = hour_start(h.clock.now());
    let mut records = Vec::new();
    let mut expected_delivered = Vec::new();
    for i in 1..=15 {
        let hour = base - Duration::hours(i);
        for dim in ["api_calls", "storage_gb"] {
            records.push(rec(&sub, dim, &i.to_string(), hour));
            expected_delivered.push(true);
        }
        if i % 5 == 0 {
            records.push(rec(&not_sub, "api_calls", "1", hour));
            expected_delivered.push(false);
            records.push(rec(&conc, "api_calls", "2", hour));
            expected_delivered.push(true);
        }
    }
    assert_eq!(records.len(), 36);
    let out = h.provider.report_usage(&records).await.unwrap();
    assert_eq!(out.len(), records.len());
    for (i, (o, want)) in out.iter().zip(&expected_delivered).enumerate() {
        assert_eq!(o.is_delivered(), *want, "record {i}: {o:?}");
        if !want {
            assert!(matches!(o, UsageOutcome::NotSubscribed { .. }));
        }
    }
    // 33 classic records → 2 calls; 3 concurrent → 1 call.
    assert_eq!(batch_calls(&h), 3);
    assert_eq!(h.sb.metered_records().len(), 33);
    let conc_rows: Vec<_> =
        h.sb.metered_records()
            .into_iter()
            .filter(|m| m.license_arn.is_some())
            .collect();
    assert_eq!(conc_rows.len(), 3);
    assert_eq!(conc_rows[0].customer_aws_account_id.as_deref(), Some(BUYER));
    assert_eq!(conc_rows[0].license_arn, conc.license_arn);
}

#[tokio::test]
async fn validation_errors_are_isolated_to_the_bad_record() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let now = hour_start(h.clock.now());
    let out = h
        .provider
        .report_usage(&[
            rec(&sub, "api_calls", "1", now - Duration::hours(1)),
            rec(&sub, "api_calls", "1", now - Duration::hours(30)),
            rec(&sub, "no_such_dimension", "1", now - Duration::hours(2)),
            rec(&sub, "storage_gb", "3", now - Duration::hours(1)),
        ])
        .await
        .unwrap();
    assert!(out[0].is_delivered(), "{out:?}");
    assert_eq!(
        out[1],
        UsageOutcome::Rejected {
            code: "TimestampOutOfBoundsException".into(),
            detail: match &out[1] {
                UsageOutcome::Rejected { detail, .. } => detail.clone(),
                _ => String::new(),
            }
        }
    );
    assert!(
        matches!(&out[2], UsageOutcome::Rejected { code, .. } if code == "InvalidUsageDimensionException"),
        "{out:?}"
    );
    assert!(out[3].is_delivered(), "{out:?}");
    assert_eq!(h.sb.metered_records().len(), 2);
}

#[tokio::test]
async fn fractional_quantities_are_refused_before_sending() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let hour = hour_start(h.clock.now()) - Duration::hours(1);
    let out = h
        .provider
        .report_usage(&[
            rec(&sub, "api_calls", "2.5", hour),
            rec(&sub, "storage_gb", "4", hour),
        ])
        .await
        .unwrap();
    assert!(
        matches!(&out[0], UsageOutcome::Rejected { code, detail } if code == "FractionalQuantity" && detail.contains("2.5")),
        "{out:?}"
    );
    assert!(out[1].is_delivered());
    assert_eq!(h.sb.metered_records().len(), 1);
    // All fractional: nothing sent at all.
    let before = batch_calls(&h);
    let out = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "0.1", hour)])
        .await
        .unwrap();
    assert!(matches!(out[0], UsageOutcome::Rejected { .. }));
    assert_eq!(batch_calls(&h), before);
}

#[tokio::test]
async fn allocations_are_sent() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let hour = hour_start(h.clock.now()) - Duration::hours(1);
    let mut r = rec(&sub, "api_calls", "10", hour);
    r.allocations = vec![
        UsageAllocation {
            quantity: Quantity::from_units(4),
            tags: vec![("team".into(), "a".into())],
        },
        UsageAllocation {
            quantity: Quantity::from_units(6),
            tags: vec![("team".into(), "b".into())],
        },
    ];
    let out = h.provider.report_usage(&[r]).await.unwrap();
    assert!(out[0].is_delivered(), "{out:?}");
    let ledger = h.sb.metered_records();
    let allocs = ledger[0].usage_allocations.as_ref().unwrap();
    assert_eq!(allocs.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn whole_call_failures() {
    let h = start().await;
    let sub = subscribed(&h, CLASSIC, OfferKind::Subscription, BUYER).await;
    let hour = hour_start(h.clock.now()) - Duration::hours(1);
    // Throttled beyond the retry budget: Err(Retryable), nothing billed.
    h.sb.inject_errors("BatchMeterUsage", InjectedError::Throttling, 3);
    let err = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "1", hour)])
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(h.sb.metered_records().is_empty());
    // Throttled once: retried, accepted.
    h.sb.inject_errors("BatchMeterUsage", InjectedError::Internal, 1);
    let out = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "1", hour)])
        .await
        .unwrap();
    assert!(out[0].is_delivered());
    // Disabled API: a configuration problem.
    h.sb.inject_errors("BatchMeterUsage", InjectedError::DisabledApi, 1);
    let err = h
        .provider
        .report_usage(&[rec(&sub, "api_calls", "1", hour)])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Configuration(_)), "{err:?}");
    // Empty input: no call.
    assert!(h.provider.report_usage(&[]).await.unwrap().is_empty());
}
