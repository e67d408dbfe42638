//! AWS as it behaves on day one, not as a kind sandbox would: the service restarts between a
//! purchase and its cancellation on every notification channel, renewals move licences,
//! buyers come back, the seller's other products send events too, and deliveries come twice
//! and out of order.

use std::{sync::Arc, time::Duration};

use marketlink_aws::{AwsProvider, Secret};
use marketlink_core::{MarketplaceProvider, SubscriptionStatus, SystemClock};
use marketlink_e2e::{Stack, browser, start_full};
use marketlink_sandbox::aws::{OfferKind, Purchase, SubscriptionAction};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::aws::{land, sign_up, subscription, wait_status};

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const BUYER: &str = "444455556666";
const EVENTBRIDGE_SECRET: &str = "day-one-eventbridge-secret-0123456789";

/// How AWS's notifications reach marketlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// SNS to the HTTPS endpoint and to the SQS queue both (the demo's set-up).
    SnsHttpAndSqs,
    /// SNS to the HTTPS endpoint only: marketlink reads no SNS queue.
    SnsHttp,
    /// EventBridge rule with an SQS target.
    EventBridgeSqs,
    /// EventBridge rule with an API destination posting to `/aws/events`.
    EventBridgeHttp,
}

impl Channel {
    fn product(self) -> &'static str {
        match self {
            Self::SnsHttpAndSqs | Self::SnsHttp => CLASSIC,
            Self::EventBridgeSqs | Self::EventBridgeHttp => CONCURRENT,
        }
    }
}

/// The stack with marketlink reading only `channel`'s way in.
async fn stack_for(channel: Channel) -> Stack {
    start_full(
        |_| {},
        |_| {},
        |config| {
            let aws = config.aws.as_mut().expect("AWS configured");
            aws.eventbridge_secret = Some(Secret::new(EVENTBRIDGE_SECRET));
            match channel {
                Channel::SnsHttpAndSqs | Channel::EventBridgeSqs => {}
                Channel::SnsHttp => aws
                    .sqs_queue_urls
                    .retain(|u| !u.ends_with("sns-notifications")),
                Channel::EventBridgeHttp => {
                    aws.sqs_queue_urls
                        .retain(|u| !u.ends_with("eventbridge-events"));
                }
            }
        },
    )
    .await
}

/// Plays EventBridge's API destination: takes each event the rule's target queue holds and
/// POSTs it to `/aws/events` with the connection's secret header, keeping it (to try again,
/// as EventBridge retries for 24 hours) until marketlink answers 2xx.
fn api_destination(stack: &Stack) -> CancellationToken {
    let stop = CancellationToken::new();
    let mut config = stack.config.aws.clone().expect("AWS configured");
    config.sqs_queue_urls = vec![stack.aws.eventbridge_queue_url()];
    let reader = AwsProvider::new(config, Arc::new(SystemClock)).expect("queue reader");
    let target = format!("{}/aws/events", stack.app_url);
    let http = reqwest::Client::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        while !stopped.is_cancelled() {
            for pulled in reader.pull(10).await.unwrap_or_default() {
                let posted = http
                    .post(&target)
                    .header("content-type", "application/json")
                    .header("x-marketlink-eventbridge-secret", EVENTBRIDGE_SECRET)
                    .body(pulled.message.body.clone())
                    .send()
                    .await;
                if posted.is_ok_and(|r| r.status().is_success()) {
                    let _ = reader.ack(&pulled.receipt).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    stop
}

/// A buyer of `product` who lands and signs up, then AWS confirms the subscription.
async fn active_buyer(stack: &Stack, product: &str, email: &str) -> Purchase {
    let purchase = stack
        .aws
        .purchase(product, OfferKind::Subscription, BUYER)
        .expect("purchase");
    let client = browser();
    let landed = land(stack, &client, &purchase.registration_token, false).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sign_up(stack, &client, email).await.status(),
        StatusCode::SEE_OTHER
    );
    send(stack, &purchase, SubscriptionAction::SubscribeSuccess).await;
    wait_status(stack, &purchase, SubscriptionStatus::Active).await;
    purchase
}

async fn send(stack: &Stack, purchase: &Purchase, action: SubscriptionAction) {
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, action)
        .await
        .expect("sandbox event");
}

/// A purchase made before a restart is cancelled after it, on each way AWS notifies: the
/// agreement and licence names are in the database, not in the process.
#[tokio::test]
async fn restart_between_purchase_and_cancellation_on_every_channel() {
    for channel in [
        Channel::SnsHttpAndSqs,
        Channel::SnsHttp,
        Channel::EventBridgeSqs,
        Channel::EventBridgeHttp,
    ] {
        let mut stack = stack_for(channel).await;
        let relay = (channel == Channel::EventBridgeHttp).then(|| api_destination(&stack));
        let email = format!("restart-{channel:?}@example.com").to_lowercase();
        let purchase = active_buyer(&stack, channel.product(), &email).await;

        stack.restart().await;
        send(&stack, &purchase, SubscriptionAction::UnsubscribePending).await;
        wait_status(&stack, &purchase, SubscriptionStatus::UnsubscribePending).await;
        stack.restart().await;
        send(&stack, &purchase, SubscriptionAction::UnsubscribeSuccess).await;
        wait_status(&stack, &purchase, SubscriptionStatus::Cancelled).await;

        let stored = subscription(&stack, &purchase).await.expect("stored");
        let timeline = stack.store.timeline(stored.id, 50).await.expect("timeline");
        let applied = |kind: &str| {
            timeline
                .iter()
                .filter(|e| e.kind == kind && e.outcome == "applied")
                .count()
        };
        for kind in [
            "lifecycle:activate",
            "lifecycle:begin_cancel",
            "lifecycle:cancel",
        ] {
            assert_eq!(applied(kind), 1, "{channel:?}: {kind} applied once");
        }
        if let Some(relay) = relay {
            relay.cancel();
        }
    }
}

/// The seller's other product, listed on AWS with EventBridge but not sold through marketlink:
/// the account's rule sends its events to the same queue.
const OTHER_PRODUCT: &str = "mlsandboxotherproduct00003";

/// Events of the seller's other products are taken (they are genuine) and change nothing:
/// no subscription appears, nothing is dead-lettered, ours are untouched.
#[tokio::test]
async fn another_products_events_are_left_alone() {
    let stack = start_full(
        |scenario| {
            let mut other = scenario
                .products
                .iter()
                .find(|p| p.product_code == CONCURRENT)
                .cloned()
                .expect("the concurrent product");
            other.product_code = OTHER_PRODUCT.into();
            other.product_id = "prod-mlsandboxother0003".into();
            other.title = "Another product of the same seller".into();
            scenario.products.push(other);
        },
        |_| {},
        |_| {},
    )
    .await;
    let ours = active_buyer(&stack, CONCURRENT, "ours@example.com").await;
    let theirs = stack
        .aws
        .purchase(OTHER_PRODUCT, OfferKind::Contract, BUYER)
        .expect("purchase of the other product");
    for action in [
        SubscriptionAction::SubscribeSuccess,
        SubscriptionAction::UnsubscribePending,
        SubscriptionAction::UnsubscribeSuccess,
    ] {
        send(&stack, &theirs, action).await;
    }
    stack
        .aws
        .update_entitlements(&theirs.agreement_id, &[("seats", 7)])
        .await
        .expect("amendment");
    marketlink_e2e::eventually("the other product's events are all handled", || async {
        let pending = stack
            .store
            .inbox_list(marketlink_store::QueueState::Pending, 100)
            .await
            .expect("inbox");
        let done = stack
            .store
            .inbox_list(marketlink_store::QueueState::Done, 100)
            .await
            .expect("inbox");
        pending.is_empty()
            && done
                .iter()
                .filter(|m| m.payload.to_string().contains(&theirs.agreement_id))
                .count()
                >= 5
    })
    .await;
    let dead = stack
        .store
        .inbox_list(marketlink_store::QueueState::Dead, 100)
        .await
        .expect("inbox");
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    assert!(subscription(&stack, &theirs).await.is_none());
    let all = stack
        .store
        .list_subscriptions(&marketlink_store::SubscriptionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("subscriptions");
    assert_eq!(all.len(), 1, "only our buyer's subscription: {all:?}");
    assert_eq!(
        subscription(&stack, &ours).await.expect("ours").status,
        SubscriptionStatus::Active
    );
}
