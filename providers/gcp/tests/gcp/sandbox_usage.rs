//! Usage through the Google sandbox's Service Control: the operation Google records, a resend
//! and a changed quantity for a sent hour, and `services.check` errors that stop a report.
//! (Moved here from the stand-in, `usage.rs`, which keeps only what the sandbox cannot do.)

use marketlink_core::{ExternalRef, LandingToken, MarketplaceProvider, Quantity, UsageOutcome};
use marketlink_gcp::operation_id;
use marketlink_sandbox::gcp::{InjectedCheckError, PurchaseRequest};
use time::macros::datetime;

use super::sandbox::{World, record, start};

/// A usage-priced purchase, signed up and approved.
async fn active(w: &World) -> ExternalRef {
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let token = LandingToken {
        token: purchase.sign_up_token.clone(),
    };
    let subscription = w.provider.resolve(&token).await.unwrap().subscription;
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    subscription
}

#[tokio::test]
async fn an_hour_is_reported_as_googles_operation() {
    let w = start().await;
    let subscription = active(&w).await;
    let r = record(&subscription, "requests", 150);
    let outcomes = w
        .provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[..], [UsageOutcome::Accepted { .. }]),
        "{outcomes:?}"
    );
    let ledger = w.sandbox.usage_ledger();
    let [reported] = &ledger[..] else {
        panic!("one operation: {ledger:?}");
    };
    let entitlement = w.sandbox.entitlement(&subscription.external_id).unwrap();
    assert_eq!(reported.operation_id, operation_id(&r));
    assert_eq!(
        Some(&reported.consumer_id),
        entitlement.usage_reporting_id.as_ref(),
        "usageReportingId verbatim"
    );
    let domain = &w.sandbox.config().product_domain;
    assert_eq!(reported.metric, format!("{domain}/requests"));
    assert_eq!(reported.value, 150);
    assert_eq!(reported.start_time, datetime!(2026-03-02 09:00 UTC));
    assert_eq!(reported.end_time, datetime!(2026-03-02 10:00 UTC));
}

#[tokio::test]
async fn a_resend_is_one_operation_and_another_quantity_a_mismatch() {
    let w = start().await;
    let subscription = active(&w).await;
    let r = record(&subscription, "requests", 7);
    w.provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    let again = w
        .provider
        .report_usage(std::slice::from_ref(&r))
        .await
        .unwrap();
    assert!(again[0].is_delivered(), "{again:?}");
    // The same hour with another quantity is not billed twice: Google's ALREADY_EXISTS.
    let changed = marketlink_core::UsageRecord {
        quantity: Quantity::from_units(8),
        ..r
    };
    let outcomes = w.provider.report_usage(&[changed]).await.unwrap();
    assert!(
        matches!(outcomes[0], UsageOutcome::QuantityMismatch { .. }),
        "{outcomes:?}"
    );
    let ledger = w.sandbox.usage_ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].value, 7);
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
        let w = start().await;
        let subscription = active(&w).await;
        w.sandbox.inject_check_error(InjectedCheckError {
            consumer_id: None,
            code: code.into(),
            detail: "injected".into(),
        });
        let outcomes = w
            .provider
            .report_usage(&[record(&subscription, "requests", 1)])
            .await
            .unwrap();
        let got = serde_json::to_value(&outcomes[0]).unwrap();
        assert_eq!(got["outcome"], expect, "{code}: {got}");
        assert!(w.sandbox.usage_ledger().is_empty(), "{code}: not reported");
    }
}
