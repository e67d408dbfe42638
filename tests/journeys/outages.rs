//! Faults from outside (issue 21): marketplace outages and connection resets. marketlink keeps
//! the usage it could not deliver, shows the backlog, and bills it exactly once when the
//! marketplace is back.

use std::time::Duration;

use marketlink_core::{Clock, Marketplace, Subscription, SystemClock};
use marketlink_e2e::{Stack, browser_trusting, eventually, start};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::{aws::Purchase, outage::OutageKind};
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use crate::metering::{KEY, post, subscribed, ts};

/// The Microsoft metering paths marketlink may call (single event and batch).
const AZURE_USAGE: [&str; 2] = ["/api/usageEvent", "/api/batchUsageEvent"];

/// An active AWS subscription and an active Microsoft one (plan `pro`, with `api_calls`).
async fn one_of_each(stack: &Stack) -> ((Purchase, Subscription), Subscription) {
    let aws = subscribed(stack, &stack.store).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = crate::azure::active_subscription(stack, &client, "pro", Some(3)).await;
    let azure = stack
        .store
        .find_subscription(&Marketplace::AZURE, &id)
        .await
        .unwrap()
        .unwrap();
    (aws, azure)
}

/// Reports `quantity` api_calls for `sub` in `hour` through the usage API.
async fn report(stack: &Stack, sub: &Subscription, hour: OffsetDateTime, quantity: u64) {
    let event = json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
        "quantity": quantity, "timestamp": ts(hour + time::Duration::minutes(7)),
        "idempotency_key": format!("outage-{}", sub.id)});
    let (status, body) = post(stack, Some(KEY), event.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// The AWS ledger's records of `purchase` for `hour`.
fn aws_billed(stack: &Stack, purchase: &Purchase, hour: OffsetDateTime) -> Vec<String> {
    stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| {
            r.customer_identifier.as_deref() == Some(&purchase.customer_identifier)
                && r.hour == hour
        })
        .map(|r| r.quantity)
        .collect()
}

/// The Microsoft sandbox's accepted usage events of `sub` for `hour`.
async fn azure_billed(stack: &Stack, sub: &Subscription, hour: OffsetDateTime) -> Vec<f64> {
    let resource = sub.external.external_id.as_str();
    stack
        .azure
        .usage_events()
        .await
        .into_iter()
        .filter(|e| {
            e.resource_id.to_string() == resource
                && e.effective_start_time >= hour
                && e.effective_start_time < hour + time::Duration::hours(1)
        })
        .map(|e| e.quantity)
        .collect()
}

/// A gauge (no labels) from `/metrics` (public in the demo configuration).
async fn gauge(stack: &Stack, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", stack.app_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits for both hours to be billed, then checks each marketplace holds them exactly once and
/// nothing was dead-lettered.
async fn billed_once_after_recovery(
    stack: &Stack,
    (purchase, aws_sub): &(Purchase, Subscription),
    azure_sub: &Subscription,
    hour: OffsetDateTime,
) {
    for sub in [aws_sub, azure_sub] {
        eventually("the hour is delivered after recovery", || async {
            let hours = stack.store.usage_hours_of(sub.id).await.unwrap();
            !hours.is_empty() && hours.iter().all(|h| h.state == UsageHourState::Delivered)
        })
        .await;
    }
    assert_eq!(aws_billed(stack, purchase, hour), vec!["5".to_owned()]);
    assert_eq!(azure_billed(stack, azure_sub, hour).await, vec![7.0]);
    assert_eq!(gauge(stack, "marketlink_usage_due_hours").await, 0.0);
}

#[tokio::test]
async fn usage_during_metering_outages_is_billed_once_after_recovery() {
    let stack = start(|_| {}).await;
    let (aws, azure) = one_of_each(&stack).await;
    stack
        .aws
        .start_outage("BatchMeterUsage", OutageKind::Unavailable, None);
    for path in AZURE_USAGE {
        stack
            .azure
            .start_outage(path, OutageKind::Unavailable, None);
    }
    let hour = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    report(&stack, &aws.1, hour, 5).await;
    report(&stack, &azure, hour, 7).await;

    // Both marketplaces turn the flusher away, more than once (it backs off and tries again).
    eventually("both marketplaces are tried during the outage", || async {
        stack.aws.outage_refusals() >= 2 && stack.azure.outage_refusals() >= 2
    })
    .await;
    // Meanwhile the backlog is durable and visible: two closed hours due, none given up.
    assert!(gauge(&stack, "marketlink_usage_due_hours").await >= 2.0);
    assert!(gauge(&stack, "marketlink_usage_oldest_due_age_seconds").await >= 3600.0);
    for sub in [&aws.1, &azure] {
        let hours = stack.store.usage_hours_of(sub.id).await.unwrap();
        assert!(
            hours.iter().all(|h| h.state == UsageHourState::Sending),
            "{hours:?}"
        );
    }
    assert!(aws_billed(&stack, &aws.0, hour).is_empty());
    assert!(azure_billed(&stack, &azure, hour).await.is_empty());

    stack.aws.end_outages();
    stack.azure.end_outages();
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;
}

#[tokio::test]
async fn connection_resets_during_a_timed_outage_are_retried_to_completion() {
    let stack = start(|_| {}).await;
    let (aws, azure) = one_of_each(&stack).await;
    // An outage of a few seconds that ends on its own: every call's connection is closed
    // without an answer until then.
    let lasting = Some(Duration::from_secs(4));
    stack
        .aws
        .start_outage("BatchMeterUsage", OutageKind::Reset, lasting);
    for path in AZURE_USAGE {
        stack.azure.start_outage(path, OutageKind::Reset, lasting);
    }
    let hour = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    report(&stack, &aws.1, hour, 5).await;
    report(&stack, &azure, hour, 7).await;
    eventually("both marketplaces reset the flusher's calls", || async {
        stack.aws.outage_refusals() >= 1 && stack.azure.outage_refusals() >= 1
    })
    .await;
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;
}
