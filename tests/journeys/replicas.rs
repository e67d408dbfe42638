//! Horizontal scale: two marketlink replicas on one PostgreSQL database, each with its own
//! workers (queue pollers, inbox, outbox, metering flusher). Sessions work on either replica,
//! every marketplace message is applied once, and every usage hour is billed once.

use marketlink_core::{ExternalRef, Marketplace, SubscriptionStatus, SystemClock};
use marketlink_e2e::{
    aws_buyer_signs_up, browser, eventually, fresh_postgres_database, start_replicas,
};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, format_description::well_known::Rfc3339};

const KEY: &str = "demo-usage-key-0123";

#[tokio::test]
async fn two_replicas_on_one_postgres_database_share_sessions_and_do_everything_once() {
    if marketlink_e2e::postgres_skipped() {
        return;
    }
    let database = fresh_postgres_database().await;
    // Both replicas start at once and migrate the same empty database.
    let (stack, others) = start_replicas(&database, 2).await;
    let second = &others[0];
    assert!(stack.store.pending_migrations().await.unwrap().is_empty());

    // The buyer lands and signs up on the first replica; the second knows the session.
    let client = browser();
    let purchase = aws_buyer_signs_up(
        &stack,
        &client,
        OfferKind::Subscription,
        "444455556666",
        "buyer@acme.example",
    )
    .await;
    let page = client
        .get(format!("{second}/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Contoso Analytics"));

    // subscribe-success reaches both replicas (SNS over HTTP to one, the SQS queue polled by
    // both): it is applied once.
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let external =
        ExternalRef::aws_classic_id(&purchase.customer_identifier, &purchase.product_code);
    let sub = stack
        .store
        .find_subscription(&Marketplace::AWS, &external)
        .await
        .unwrap()
        .unwrap();
    eventually("the subscription is active", || async {
        stack.store.get_subscription(sub.id).await.unwrap().status == SubscriptionStatus::Active
    })
    .await;

    // The same usage batch sent to both replicas at once (a client retrying elsewhere).
    let hour = hour_floor(marketlink_core::Clock::now(&SystemClock)) - Duration::hours(2);
    let at = (hour + Duration::minutes(5)).format(&Rfc3339).unwrap();
    let batch = json!({"events": [
        {"subscription_id": sub.id.to_string(), "dimension": "api_calls", "quantity": 2,
         "timestamp": at, "idempotency_key": "r-1"},
        {"subscription_id": sub.id.to_string(), "dimension": "api_calls", "quantity": 3,
         "timestamp": at, "idempotency_key": "r-2"},
    ]});
    let post = |url: String| {
        let batch = batch.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{url}/api/v1/usage"))
                .bearer_auth(KEY)
                .json(&batch)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            response.json::<Value>().await.unwrap()
        }
    };
    let (a, b) = tokio::join!(post(stack.app_url.clone()), post(second.clone()));
    let accepted = a["accepted"].as_u64().unwrap() + b["accepted"].as_u64().unwrap();
    assert_eq!(accepted, 2, "{a} {b}");
    assert_eq!(stack.store.usage_event_count(sub.id).await.unwrap(), 2);

    // Both flushers run every 2 s; the hour is billed once.
    eventually("the hour is delivered", || async {
        stack
            .store
            .usage_hours_of(sub.id)
            .await
            .unwrap()
            .iter()
            .any(|h| h.hour == hour && h.state == UsageHourState::Delivered)
    })
    .await;
    // Give both flushers a few more rounds to do something wrong.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let billed: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| {
            r.customer_identifier.as_deref() == Some(&purchase.customer_identifier)
                && r.hour == hour
                && r.dimension == "api_calls"
        })
        .collect();
    assert_eq!(billed.len(), 1, "{billed:?}");
    assert_eq!(billed[0].quantity.as_str(), "5");

    // The activation was applied once, whichever replica took it.
    let timeline = stack.store.timeline(sub.id, 100).await.unwrap();
    let activations = timeline
        .iter()
        .filter(|e| e.kind == "lifecycle:activate" && e.outcome == "applied")
        .count();
    assert_eq!(activations, 1, "{timeline:?}");
    drop(stack);
    marketlink_e2e::drop_postgres_database(&database).await;
}
