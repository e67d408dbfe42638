//! Usage through batchUsageEvent: per-record outcomes in input order, batches split at 25.

use marketlink_core::{ExternalRef, MarketplaceProvider, Quantity, UsageOutcome, UsageRecord};
use time::{Duration, OffsetDateTime};

use crate::common::H;

fn hour(t: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp().div_euclid(3600) * 3600).unwrap()
}

fn record(
    sub: &ExternalRef,
    plan: &str,
    dimension: &str,
    at: OffsetDateTime,
    q: &str,
) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        subscription: sub.clone(),
        plan_id: Some(plan.into()),
        dimension: dimension.into(),
        hour: hour(at),
        quantity: q.parse::<Quantity>().unwrap(),
        allocations: vec![],
    }
}

#[tokio::test]
async fn batch_outcomes_in_input_order() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    let now = marketlink_core::Clock::now(&h.clock);
    let mut unknown = sub.clone();
    unknown.external_id = "00000000-0000-4000-8000-000000000000".into();
    let mut no_plan = record(&sub, "basic", "api_calls", now - Duration::hours(3), "1");
    no_plan.plan_id = None;
    let records = vec![
        record(&sub, "basic", "api_calls", now, "10.5"),
        record(&sub, "basic", "api_calls", now, "10.5"),
        record(&sub, "basic", "api_calls", now, "11"),
        record(&sub, "basic", "api_calls", now - Duration::hours(25), "1"),
        record(&sub, "basic", "bogus", now - Duration::hours(1), "1"),
        no_plan,
        record(
            &unknown,
            "basic",
            "api_calls",
            now - Duration::hours(2),
            "1",
        ),
        record(&sub, "pro", "api_calls", now - Duration::hours(2), "1"),
    ];
    let outcomes = h.provider.report_usage(&records).await.unwrap();
    assert_eq!(outcomes.len(), records.len());
    let ledger = h.sandbox.usage_events().await;
    assert_eq!(ledger.len(), 1);
    let id = ledger[0].usage_event_id.to_string();
    assert_eq!(ledger[0].quantity, 10.5);
    assert_eq!(
        outcomes[0],
        UsageOutcome::Accepted {
            marketplace_id: Some(id.clone())
        }
    );
    assert_eq!(
        outcomes[1],
        UsageOutcome::AlreadyAccepted {
            marketplace_id: Some(id)
        }
    );
    assert!(
        matches!(&outcomes[2], UsageOutcome::QuantityMismatch { detail } if detail.contains("10.5")),
        "{:?}",
        outcomes[2]
    );
    let code = |o: &UsageOutcome| match o {
        UsageOutcome::Rejected { code, .. } => code.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(code(&outcomes[3]), "Expired");
    assert_eq!(code(&outcomes[4]), "InvalidDimension");
    assert_eq!(code(&outcomes[5]), "missing_plan");
    assert_eq!(code(&outcomes[6]), "ResourceNotFound");
    assert_eq!(code(&outcomes[7]), "BadArgument");
    assert_eq!(h.calls_to("/api/batchUsageEvent").await, 1);

    // Resent later (after a crash): delivered, not double-billed.
    let again = h.provider.report_usage(&records[..1]).await.unwrap();
    assert!(again[0].is_delivered());
    assert_eq!(h.sandbox.usage_events().await.len(), 1);

    // A suspended subscription is not subscribed.
    h.sandbox
        .marketplace_action(
            uuid::Uuid::parse_str(&sub.external_id).unwrap(),
            marketlink_sandbox::azure::MarketplaceAction::Suspend,
        )
        .await
        .unwrap();
    let out = h
        .provider
        .report_usage(&[record(
            &sub,
            "basic",
            "api_calls",
            now - Duration::hours(5),
            "1",
        )])
        .await
        .unwrap();
    assert!(
        matches!(out[0], UsageOutcome::NotSubscribed { .. }),
        "{out:?}"
    );
    assert!(h.provider.report_usage(&[]).await.unwrap().is_empty());
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn more_than_25_records_are_split() {
    let h = H::start().await;
    let a = h.subscribed("basic", None).await;
    let b = h.subscribed("pro", Some(2)).await;
    let now = marketlink_core::Clock::now(&h.clock);
    let mut records = Vec::new();
    for i in 0..15 {
        records.push(record(
            &a,
            "basic",
            "api_calls",
            now - Duration::hours(i),
            &format!("{}", i + 1),
        ));
        records.push(record(
            &b,
            "pro",
            "api_calls",
            now - Duration::hours(i),
            "0.25",
        ));
    }
    let outcomes = h.provider.report_usage(&records).await.unwrap();
    assert_eq!(outcomes.len(), 30);
    assert_eq!(h.calls_to("/api/batchUsageEvent").await, 2);
    let ledger = h.sandbox.usage_events().await;
    assert_eq!(ledger.len(), 30);
    for (record, outcome) in records.iter().zip(&outcomes) {
        let UsageOutcome::Accepted {
            marketplace_id: Some(id),
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        let entry = ledger
            .iter()
            .find(|e| e.usage_event_id.to_string() == *id)
            .unwrap();
        assert_eq!(
            entry.resource_id.to_string(),
            record.subscription.external_id
        );
        assert_eq!(entry.effective_start_time, record.hour);
        assert_eq!(entry.quantity, record.quantity.as_f64());
    }
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn whole_call_failures() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    let now = marketlink_core::Clock::now(&h.clock);
    let records = [record(&sub, "basic", "api_calls", now, "1")];
    // The marketplace is unreachable: nothing processed, retry later.
    let mut config = crate::common::provider_config(&h.sandbox);
    config.marketplace_api_base = "https://127.0.0.1:1/api".into();
    let down =
        marketlink_azure::AzureProvider::new(config, std::sync::Arc::new(h.clock.clone())).unwrap();
    assert!(
        down.report_usage(&records)
            .await
            .unwrap_err()
            .is_retryable()
    );
    // Credentials of another publisher: a configuration problem.
    let other = h.sandbox.config().other_apps[0].clone();
    let mut config = crate::common::provider_config(&h.sandbox);
    config.tenant_id = other.tenant_id;
    config.client_id = other.client_id;
    config.client_secret = other.client_secret.expose().into();
    let foreign =
        marketlink_azure::AzureProvider::new(config, std::sync::Arc::new(h.clock.clone())).unwrap();
    assert!(matches!(
        foreign.report_usage(&records).await,
        Err(marketlink_core::ProviderError::Configuration(_))
    ));
    h.sandbox.shutdown().await;
}
