//! An outage of minutes (issue 21): both marketplaces' metering and Entra's key set are down
//! for 75 s while usage keeps arriving. The backlog is durable and visible (`/metrics`,
//! `/admin/usage`), nothing is dead-lettered, a webhook refused meanwhile is applied once it
//! can be checked, and every hour is billed exactly once within the retry cap
//! (`[metering] retry_max_secs`) of the marketplaces coming back.

use std::time::{Duration, Instant};

use marketlink_core::{Clock, Subscription, SystemClock};
use marketlink_e2e::{Stack, operator, operator_signs_in, start_full};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::{azure::MarketplaceAction, outage::OutageKind};
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use crate::{
    metering::{KEY, post, ts},
    outages::{AZURE_USAGE, aws_billed, azure_billed, gauge, one_of_each},
};

const OUTAGE: Duration = Duration::from_secs(75);
/// The retry cap this journey runs with: the backlog must be out this long after recovery,
/// plus one flush interval (2 s in the demo configuration) and room for a loaded machine.
const CAP_SECS: u64 = 15;
const CATCH_UP_BOUND: Duration = Duration::from_secs(CAP_SECS + 2 + 10);
const PASSWORD: &str = "operator passphrase 42";

/// Reports `quantity` api_calls for `sub` in `hour`, under a key of its own.
async fn report(stack: &Stack, sub: &Subscription, hour: OffsetDateTime, quantity: u64) {
    let event = json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
        "quantity": quantity, "timestamp": ts(hour + time::Duration::minutes(7)),
        "idempotency_key": format!("long-outage-{}-{}", sub.id, hour.unix_timestamp())});
    let (status, body) = post(stack, Some(KEY), event.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// A labelled series of `/metrics` (0 when absent).
async fn series(stack: &Stack, name_and_labels: &str) -> f64 {
    crate::outages::metric(stack, name_and_labels)
        .await
        .unwrap_or(0.0)
}

async fn all_delivered(stack: &Stack, subs: [&Subscription; 2], hours: usize) -> bool {
    let mut delivered = 0;
    for sub in subs {
        let rows = stack.store.usage_hours_of(sub.id).await.unwrap();
        delivered += rows
            .iter()
            .filter(|h| h.state == UsageHourState::Delivered)
            .count();
    }
    delivered == 2 * hours
}

#[tokio::test]
async fn an_outage_of_minutes_is_caught_up_within_the_retry_cap() {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(
        |_| {},
        |azure| azure.webhook_retry_delays_ms = vec![1_000, 5_000],
        move |config| {
            config.admin.users = vec![ops];
            config.metering.retry_max_secs = CAP_SECS;
        },
    )
    .await;
    let (aws, azure) = one_of_each(&stack).await;
    let subs = [&aws.1, &azure];

    stack
        .aws
        .start_outage("BatchMeterUsage", OutageKind::Unavailable, None);
    for path in AZURE_USAGE.into_iter().chain(["/discovery/v2.0/keys"]) {
        stack
            .azure
            .start_outage(path, OutageKind::Unavailable, None);
    }
    let began = Instant::now();
    // Microsoft renews the subscription: its webhook cannot be checked while the keys are down.
    let azure_id = azure.external.external_id.parse().unwrap();
    stack
        .azure
        .marketplace_action(azure_id, MarketplaceAction::Renew)
        .await
        .unwrap();

    // Usage keeps arriving: every few seconds, another closed hour for each subscription.
    let base = hour_floor(SystemClock.now()) - time::Duration::hours(2);
    let mut hours = Vec::new();
    while began.elapsed() < OUTAGE - Duration::from_secs(10) {
        let hour = base - time::Duration::hours(hours.len() as i64);
        report(&stack, &aws.1, hour, 10 + hours.len() as u64).await;
        report(&stack, &azure, hour, 20 + hours.len() as u64).await;
        hours.push(hour);
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let reported = (2 * hours.len()) as f64;

    // During the outage the whole backlog is visible, and none of it is given up.
    crate::outages::eventually_for("the backlog shows every hour", OUTAGE, || async {
        gauge(&stack, "marketlink_usage_due_hours").await >= reported
    })
    .await;
    assert!(gauge(&stack, "marketlink_usage_oldest_due_age_seconds").await >= 7200.0);
    assert_eq!(
        series(&stack, r#"marketlink_usage_hours{state="dead"}"#).await,
        0.0
    );
    let admin = operator_signs_in(&stack, "ops@vendor.example", PASSWORD).await;
    let page = admin
        .get(format!("{}/admin/usage", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("closed hours waiting"), "{page}");
    assert!(
        page.contains(&format!("{} (oldest", 2 * hours.len())),
        "{page}"
    );
    let attempts = stack.azure.webhook_attempts().await;
    assert!(attempts.len() >= 2, "Microsoft retried: {attempts:?}");
    assert!(
        attempts.iter().all(|a| a.status == Some(503)),
        "{attempts:?}"
    );
    assert!(stack.aws.outage_refusals() >= 2 && stack.azure.outage_refusals() >= 2);

    let left = OUTAGE.saturating_sub(began.elapsed());
    tokio::time::sleep(left).await;
    let outage = began.elapsed();
    stack.aws.end_outages();
    stack.azure.end_outages();
    let recovered = Instant::now();
    while !all_delivered(&stack, subs, hours.len()).await {
        assert!(
            recovered.elapsed() < CATCH_UP_BOUND,
            "not caught up {CATCH_UP_BOUND:?} after recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up = recovered.elapsed();
    println!(
        "outage of {:.1} s: {} hours caught up {:.1} s after recovery (bound {} s)",
        outage.as_secs_f64(),
        2 * hours.len(),
        catch_up.as_secs_f64(),
        CATCH_UP_BOUND.as_secs()
    );

    // Billed exactly once, each hour with its own quantity; nothing left behind.
    for (i, hour) in hours.iter().enumerate() {
        assert_eq!(
            aws_billed(&stack, &aws.0, *hour),
            vec![(10 + i).to_string()]
        );
        assert_eq!(
            azure_billed(&stack, &azure, *hour).await,
            vec![(20 + i) as f64]
        );
    }
    assert_eq!(gauge(&stack, "marketlink_usage_due_hours").await, 0.0);
    assert_eq!(
        series(&stack, r#"marketlink_usage_hours{state="dead"}"#).await,
        0.0
    );
    crate::outages::eventually_for(
        "the renewal webhook is accepted",
        CATCH_UP_BOUND,
        || async {
            let attempts = stack.azure.webhook_attempts().await;
            attempts.last().and_then(|a| a.status) == Some(200)
        },
    )
    .await;
}
