//! Faults from outside (issue 21): marketplace outages, connection resets, and the key and
//! certificate endpoints that notifications are checked with being down. marketlink keeps the
//! usage it could not deliver, shows the backlog, bills it exactly once when the marketplace is
//! back, and answers notifications it cannot check with a 5xx so that they come again.

use std::time::Duration;

use marketlink_core::{Clock, Marketplace, Subscription, SubscriptionStatus, SystemClock};
use marketlink_e2e::{
    Stack, aws_buyer_signs_up, browser, browser_trusting, eventually, start, start_full, start_with,
};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::{
    aws::{
        HttpDeliveryAttempt, InjectedError as AwsInjected, OfferKind, Purchase, SubscriptionAction,
    },
    azure::{InjectedError as AzureInjected, MarketplaceAction},
    outage::OutageKind,
};
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::metering::{KEY, post, subscribed, ts};

const CLASSIC: &str = "mlsandboxclassic0000000001";

/// The Microsoft metering paths marketlink may call (single event and batch).
pub(crate) const AZURE_USAGE: [&str; 2] = ["/api/usageEvent", "/api/batchUsageEvent"];

/// An active AWS subscription and an active Microsoft one (plan `pro`, with `api_calls`).
pub(crate) async fn one_of_each(stack: &Stack) -> ((Purchase, Subscription), Subscription) {
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
pub(crate) async fn report(stack: &Stack, sub: &Subscription, hour: OffsetDateTime, quantity: u64) {
    let event = json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
        "quantity": quantity, "timestamp": ts(hour + time::Duration::minutes(7)),
        "idempotency_key": format!("outage-{}", sub.id)});
    let (status, body) = post(stack, Some(KEY), event.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// The AWS ledger's records of `purchase` for `hour`.
pub(crate) fn aws_billed(stack: &Stack, purchase: &Purchase, hour: OffsetDateTime) -> Vec<String> {
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
pub(crate) async fn azure_billed(
    stack: &Stack,
    sub: &Subscription,
    hour: OffsetDateTime,
) -> Vec<f64> {
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

/// A series of `/metrics` (public in the demo configuration), by name and labels as printed.
pub(crate) async fn metric(stack: &Stack, name_and_labels: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", stack.app_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// A gauge (no labels) from `/metrics`; it must be there.
pub(crate) async fn gauge(stack: &Stack, name: &str) -> f64 {
    metric(stack, name)
        .await
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Status and time of every Microsoft metering call, oldest first.
pub(crate) async fn azure_usage_calls(stack: &Stack) -> Vec<(u16, OffsetDateTime)> {
    stack
        .azure
        .call_log()
        .await
        .iter()
        .filter(|c| AZURE_USAGE.contains(&c.path.split('?').next().unwrap_or_default()))
        .map(|c| (c.status, OffsetDateTime::parse(&c.at, &Rfc3339).unwrap()))
        .collect()
}

/// Polls `check` until it is true or `limit` passes.
pub(crate) async fn eventually_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for both hours to be billed, then checks each marketplace holds them exactly once and
/// nothing was dead-lettered.
pub(crate) async fn billed_once_after_recovery(
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
    // Both logs say no answer was given (status 0), not a status the client never saw.
    assert!(
        stack
            .aws
            .call_log()
            .iter()
            .any(|c| c.operation == "BatchMeterUsage" && c.status == 0)
    );
    assert!(
        stack.azure.call_log().await.iter().any(|c| c.status == 0
            && AZURE_USAGE.contains(&c.path.split('?').next().unwrap_or_default()))
    );
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;
}

#[tokio::test]
async fn webhooks_while_the_jwks_is_down_are_answered_5xx_then_applied() {
    let stack = start_with(
        |_| {},
        |azure| {
            azure.webhook_retry_delays_ms = vec![500];
        },
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = crate::azure::active_subscription(&stack, &client, "pro", Some(3)).await;
    // Entra's key set cannot be downloaded: no webhook token can be checked.
    stack
        .azure
        .start_outage("/discovery/v2.0/keys", OutageKind::Unavailable, None);
    stack
        .azure
        .marketplace_action(id.parse().unwrap(), MarketplaceAction::Suspend)
        .await
        .unwrap();
    eventually("Microsoft retries the refused webhook", || async {
        let attempts = stack.azure.webhook_attempts().await;
        attempts.len() >= 2 && stack.azure.outage_refusals() >= 2
    })
    .await;
    let attempts = stack.azure.webhook_attempts().await;
    assert!(
        attempts.iter().all(|a| a.status == Some(503)),
        "answered 5xx, never 2xx unchecked: {attempts:?}"
    );
    let sub = stack
        .store
        .find_subscription(&Marketplace::AZURE, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sub.status,
        SubscriptionStatus::Active,
        "nothing applied yet"
    );

    stack.azure.end_outages();
    eventually("the retried webhook is accepted and applied", || async {
        stack
            .store
            .find_subscription(&Marketplace::AZURE, &id)
            .await
            .unwrap()
            .is_some_and(|s| s.status == SubscriptionStatus::Suspended)
    })
    .await;
    let attempts = stack.azure.webhook_attempts().await;
    assert_eq!(attempts.last().and_then(|a| a.status), Some(200));
}

#[tokio::test]
async fn sns_while_its_certificate_endpoint_is_down_is_answered_5xx_then_applied() {
    let mut stack = start(|aws| aws.sns_http_retry_delays_ms = vec![500; 40]).await;
    let purchase = aws_buyer_signs_up(
        &stack,
        &browser(),
        OfferKind::Subscription,
        "444455556666",
        "buyer@example.com",
    )
    .await;
    // Another buyer's notification confirms the HTTP subscription first (SNS sends the
    // SubscriptionConfirmation before the first notification), so what follows is ours.
    let other = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, "555566667777")
        .unwrap();
    stack
        .aws
        .send_subscription_event(&other.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("the HTTP subscription is confirmed and used", || async {
        notifications(&stack).iter().any(|a| a.status == Some(200))
    })
    .await;
    let before = notifications(&stack).len();
    // A new process has no certificate cached: it must download it for the next message.
    stack.restart().await;
    let ours = || notifications(&stack).split_off(before);
    stack
        .aws
        .start_outage("SigningCert", OutageKind::Unavailable, None);
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let external_id = crate::metering::external(&purchase).external_id;
    let status = || async {
        stack
            .store
            .find_subscription(&Marketplace::AWS, &external_id)
            .await
            .unwrap()
            .map(|s| s.status)
    };
    eventually("SNS retries the refused notification", || async {
        ours().len() >= 2
    })
    .await;
    let refused = ours();
    assert!(
        refused.iter().all(|a| a.status == Some(503)),
        "answered 5xx, never 2xx unverified: {refused:?}"
    );
    assert!(stack.aws.outage_refusals() >= 2);
    assert_eq!(status().await, Some(SubscriptionStatus::Pending));

    stack.aws.end_outages();
    eventually(
        "the retried notification is accepted and applied",
        || async { status().await == Some(SubscriptionStatus::Active) },
    )
    .await;
    eventually("SNS sees it delivered", || async {
        ours().last().is_some_and(|a| a.status == Some(200))
    })
    .await;
}

/// SNS's HTTP attempts to deliver notifications (not the subscription confirmation).
fn notifications(stack: &Stack) -> Vec<HttpDeliveryAttempt> {
    stack
        .aws
        .http_deliveries()
        .into_iter()
        .filter(|a| a.message_type == "Notification")
        .collect()
}

#[tokio::test]
async fn answers_later_than_our_timeouts_are_retried_and_billed_once() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            if let Some(aws) = config.aws.as_mut() {
                aws.api_timeout_secs = 1;
            }
            if let Some(azure) = config.azure.as_mut() {
                azure.http_timeout_secs = 1;
            }
        },
    )
    .await;
    let (aws, azure) = one_of_each(&stack).await;
    // Each marketplace records the usage at once and answers after our timeout: marketlink
    // cannot know it was taken, so it sends it again.
    stack
        .aws
        .inject_errors("BatchMeterUsage", AwsInjected::LateAnswer(2_500), 1);
    for path in AZURE_USAGE {
        // Injections match the path under the API base (`/api`).
        let under_api = path.trim_start_matches("/api");
        stack
            .azure
            .inject_errors(under_api, AzureInjected::LateAnswer(2_500), 1);
    }
    let hour = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    report(&stack, &aws.1, hour, 5).await;
    report(&stack, &azure, hour, 7).await;
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;
    let aws_calls = stack
        .aws
        .call_log()
        .iter()
        .filter(|c| c.operation == "BatchMeterUsage")
        .count();
    assert!(aws_calls >= 2, "the late call was sent again ({aws_calls})");
    let azure_calls = stack
        .azure
        .call_log()
        .await
        .iter()
        .filter(|c| AZURE_USAGE.contains(&c.path.split('?').next().unwrap_or_default()))
        .count();
    assert!(
        azure_calls >= 2,
        "the late call was sent again ({azure_calls})"
    );
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_after_the_time_asked_and_billed_once() {
    let stack = start(|_| {}).await;
    let (aws, azure) = one_of_each(&stack).await;
    // AWS: throttled, then failing, for whole flushes (each exhausts the call's own retries).
    stack
        .aws
        .inject_errors("BatchMeterUsage", AwsInjected::Throttling, 3);
    stack
        .aws
        .inject_errors("BatchMeterUsage", AwsInjected::Internal, 3);
    // Microsoft: a 429 asking for 6 s, longer than our first backoff (2.5-5 s), then a 500.
    for path in AZURE_USAGE {
        let under_api = path.trim_start_matches("/api");
        stack
            .azure
            .inject_errors(under_api, AzureInjected::Throttled(6), 1);
        stack
            .azure
            .inject_errors(under_api, AzureInjected::Internal, 1);
    }
    let hour = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    report(&stack, &aws.1, hour, 5).await;
    report(&stack, &azure, hour, 7).await;
    billed_once_after_recovery(&stack, &aws, &azure, hour).await;

    let failures = stack
        .aws
        .call_log()
        .iter()
        .filter(|c| c.operation == "BatchMeterUsage" && c.status != 200)
        .count();
    assert_eq!(failures, 6, "every injected failure was met and retried");
    let calls = azure_usage_calls(&stack).await;
    assert_eq!(
        calls.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![429, 500, 200],
        "{calls:?}"
    );
    assert!(
        calls[1].1 - calls[0].1 >= time::Duration::seconds(6),
        "Retry-After is honoured: {calls:?}"
    );
}
