//! Usage through Service Control: check, then report, one outcome per record in order.

use marketlink_core::{
    ExternalRef, Marketplace, MarketplaceProvider, Quantity, UsageOutcome, UsageRecord,
};
use marketlink_gcp::operation_id;
use serde_json::json;
use time::{Duration, macros::datetime};
use uuid::Uuid;

use super::common::{Harness, SERVICE};

fn record(entitlement: &str, dimension: &str, units: u32) -> UsageRecord {
    UsageRecord {
        id: Uuid::now_v7(),
        subscription: ExternalRef {
            marketplace: Marketplace::parse("gcp").unwrap(),
            external_id: entitlement.into(),
            product_code: SERVICE.into(),
            customer_id: "acc-1".into(),
            customer_account_id: None,
            license_arn: None,
        },
        plan_id: None,
        dimension: dimension.into(),
        hour: datetime!(2026-03-02 09:00 UTC),
        quantity: Quantity::from_units(units),
        allocations: Vec::new(),
    }
}

fn active(h: &Harness, ids: &[&str]) {
    h.add_account("acc-1", true);
    for id in ids {
        h.add_entitlement(id, "acc-1", "ENTITLEMENT_ACTIVE");
    }
}

#[tokio::test]
async fn an_hour_is_checked_then_reported_as_googles_operation() {
    let h = Harness::start().await;
    active(&h, &["ent-1"]);
    let r = record("ent-1", "requests", 150);
    let outcomes = h
        .provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[..], [UsageOutcome::Accepted { .. }]),
        "{outcomes:?}"
    );
    let world = h.world.lock().unwrap();
    let op = &world.reported[&operation_id(&r)];
    assert_eq!(
        op["consumerId"], "project_number:ent-1",
        "usageReportingId verbatim"
    );
    assert_eq!(op["startTime"], "2026-03-02T09:00:00Z");
    assert_eq!(op["endTime"], "2026-03-02T10:00:00Z");
    assert_eq!(
        op["metricValueSets"][0]["metricName"],
        format!("{SERVICE}/requests")
    );
    assert_eq!(
        op["metricValueSets"][0]["metricValues"][0]["int64Value"],
        "150"
    );
    let check_at = world
        .calls
        .iter()
        .position(|c| c.ends_with(":check"))
        .unwrap();
    let report_at = world
        .calls
        .iter()
        .position(|c| c.ends_with(":report"))
        .unwrap();
    assert!(check_at < report_at);
}

#[test]
fn the_operation_id_is_the_same_on_every_resend_and_differs_per_hour() {
    let first = record("ent-1", "requests", 5);
    let resend = UsageRecord {
        id: Uuid::now_v7(),
        ..first.clone()
    };
    assert_eq!(operation_id(&first), operation_id(&resend));
    let next_hour = UsageRecord {
        hour: first.hour + Duration::hours(1),
        ..first.clone()
    };
    assert_ne!(operation_id(&first), operation_id(&next_hour));
    let other_metric = record("ent-1", "storage", 5);
    assert_ne!(operation_id(&first), operation_id(&other_metric));
}

#[tokio::test]
async fn a_resend_is_one_operation_at_google() {
    let h = Harness::start().await;
    active(&h, &["ent-1"]);
    let r = record("ent-1", "requests", 7);
    h.provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    let again = h
        .provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    assert!(again[0].is_delivered());
    assert_eq!(h.world.lock().unwrap().reported.len(), 1);
    // The same hour with another quantity is not billed twice: a discrepancy.
    let changed = UsageRecord {
        quantity: Quantity::from_units(8),
        ..r
    };
    let outcomes = h.provider.report_usage(&[changed]).await.unwrap();
    assert!(
        matches!(outcomes[0], UsageOutcome::QuantityMismatch { .. }),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn check_errors_stop_retry_or_reject_without_reporting() {
    for (code, expect) in [
        ("BILLING_DISABLED", "not_subscribed"),
        ("SERVICE_NOT_ACTIVATED", "not_subscribed"),
        ("RESOURCE_EXHAUSTED", "retry"),
        ("NAMESPACE_LOOKUP_UNAVAILABLE", "retry"),
        ("API_KEY_INVALID", "rejected"),
    ] {
        let h = Harness::start().await;
        active(&h, &["ent-1"]);
        h.world.lock().unwrap().check_error = Some(code.into());
        let outcomes = h
            .provider
            .report_usage(&[record("ent-1", "requests", 1)])
            .await
            .unwrap();
        let got = serde_json::to_value(&outcomes[0]).unwrap();
        assert_eq!(got["outcome"], expect, "{code}: {got}");
        assert_eq!(h.world.lock().unwrap().report_calls, 0, "{code}");
    }
}

#[tokio::test]
async fn outcomes_follow_input_order_across_subscriptions_and_report_errors() {
    let h = Harness::start().await;
    active(&h, &["ent-1", "ent-2"]);
    h.set("ent-2", "usageReportingId", json!(""));
    h.world.lock().unwrap().report_error = Some(json!({"code": 14, "message": "try later"}));
    let records = [
        record("ent-1", "requests", 1),
        record("ent-2", "requests", 2),
        record("ent-gone", "requests", 3),
        record("ent-1", "storage", 4),
        UsageRecord {
            quantity: Quantity::from_f64(0.5).unwrap(),
            ..record("ent-1", "cpu", 0)
        },
    ];
    let outcomes = h.provider.report_usage(&records).await.unwrap();
    let names: Vec<String> = outcomes
        .iter()
        .map(|o| {
            serde_json::to_value(o).unwrap()["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "retry",
            "rejected",
            "not_subscribed",
            "accepted",
            "rejected"
        ]
    );
    assert_eq!(
        h.world.lock().unwrap().report_calls,
        1,
        "one report for the batch"
    );
}

#[tokio::test]
async fn the_deadline_is_an_hour_after_the_hour() {
    let h = Harness::start().await;
    let rules = h.provider.rules().usage;
    let hour = datetime!(2026-03-02 09:00 UTC);
    assert_eq!(rules.deadline(hour), datetime!(2026-03-02 11:00 UTC));
    assert!(rules.whole_units && !rules.zero_hours && !rules.allocations);
}
