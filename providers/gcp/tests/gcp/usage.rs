//! Usage through Service Control against the stand-in, for what the Google sandbox cannot be
//! made to do: a `reportErrors` entry (code 14) for an operation that passed its check, an
//! entitlement whose `usageReportingId` is empty, and the order of `:check` before `:report`
//! as calls (the sandbox keeps no call log). The rest is in `sandbox_usage.rs`.

use marketlink_core::{ExternalRef, Marketplace, MarketplaceProvider, Quantity, UsageRecord};
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
async fn checked_before_reported() {
    let h = Harness::start().await;
    active(&h, &["ent-1"]);
    h.provider
        .report_usage(&[record("ent-1", "requests", 1)])
        .await
        .unwrap();
    let world = h.world.lock().unwrap();
    let at = |verb: &str| world.calls.iter().position(|c| c.ends_with(verb));
    assert!(
        at(":check").unwrap() < at(":report").unwrap(),
        "{:?}",
        world.calls
    );
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
