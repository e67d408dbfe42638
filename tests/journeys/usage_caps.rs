//! Usage AWS would refuse is refused when it arrives: a BatchMeterUsage record carries at most
//! 2,147,483,647 units, and marketlink sends one record per subscription, dimension and hour,
//! so an event that would take the hour past it is answered 400 `hourly_quantity_limit`, and
//! what was accepted before is billed.

use marketlink_core::{Clock, SystemClock};
use marketlink_e2e::{eventually, start};
use marketlink_engine::metering::hour_floor;
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::json;
use time::Duration;

use crate::metering::{KEY, post, subscribed, ts};

#[tokio::test]
async fn an_hour_past_what_aws_takes_is_refused_and_the_rest_billed() {
    let stack = start(|_| {}).await;
    let (purchase, sub) = subscribed(&stack, &stack.store).await;
    let hour = hour_floor(SystemClock.now()) - Duration::hours(2);
    let event = |minute: i64, key: &str| {
        json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
               "quantity": 2_000_000_000u64, "timestamp": ts(hour + Duration::minutes(minute)),
               "idempotency_key": key})
        .to_string()
    };

    let (status, body) = post(&stack, Some(KEY), event(5, "first")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post(&stack, Some(KEY), event(40, "second")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("hourly_quantity_limit")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("4000000000")
            && message.contains("2147483647")
            && message.contains("AWS Marketplace"),
        "{message}"
    );
    // Resending the first is still a harmless duplicate.
    let (status, body) = post(&stack, Some(KEY), event(5, "first")).await;
    assert_eq!(
        (status, body["duplicates"].as_u64()),
        (StatusCode::ACCEPTED, Some(1))
    );

    // The accepted 2,000,000,000 is billed, as one record, and nothing is dead.
    eventually("the hour is billed", || async {
        stack
            .store
            .usage_hours_of(sub.id)
            .await
            .unwrap()
            .iter()
            .any(|h| h.hour == hour && h.state == UsageHourState::Delivered)
    })
    .await;
    let billed: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| {
            r.customer_identifier.as_deref() == Some(&purchase.customer_identifier)
                && r.hour == hour
        })
        .collect();
    assert_eq!(billed.len(), 1);
    assert_eq!(billed[0].quantity, "2000000000");
}
