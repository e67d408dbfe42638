//! AWS as it behaves on day one, not as a kind sandbox would: the service restarts between a
//! purchase and its cancellation on every notification channel, renewals move licences,
//! buyers come back, the seller's other products send events too, and deliveries come twice
//! and out of order.

use std::{sync::Arc, time::Duration};

use marketlink_aws::{AwsProvider, Secret};
use marketlink_core::{MarketplaceProvider, SubscriptionStatus, SystemClock};
use marketlink_e2e::{Stack, browser, start_full};
use marketlink_sandbox::aws::{DeliveryChaos, OfferKind, Purchase, SubscriptionAction};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::aws::{land, sign_up, subscription, wait_status};

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const BUYER: &str = "444455556666";
const EVENTBRIDGE_SECRET: &str = "day-one-eventbridge-secret-0123456789";

/// Deliveries as AWS makes them on a bad day: a third of them twice, in any order, late.
fn chaos(stack: &Stack, seed: u64) {
    stack.aws.set_delivery_chaos(Some(DeliveryChaos {
        seed,
        duplicate_percent: 35,
        reorder: true,
        max_delay_ms: 300,
    }));
}

/// How AWS's notifications reach marketlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// SNS to the HTTPS endpoint and to the SQS queue both (the demo's set-up).
    SnsHttpAndSqs,
    /// SNS to the HTTPS endpoint only: marketlink reads no SNS queue.
    SnsHttp,
    /// SNS to the SQS queue only: no HTTPS subscription.
    SnsSqs,
    /// EventBridge rule with an SQS target.
    EventBridgeSqs,
    /// EventBridge rule with an API destination posting to `/aws/events`.
    EventBridgeHttp,
}

impl Channel {
    fn product(self) -> &'static str {
        match self {
            Self::SnsHttpAndSqs | Self::SnsHttp | Self::SnsSqs => CLASSIC,
            Self::EventBridgeSqs | Self::EventBridgeHttp => CONCURRENT,
        }
    }
}

/// The stack with marketlink reading only `channel`'s way in.
async fn stack_for(channel: Channel) -> Stack {
    let tune = move |config: &mut marketlink_cli::config::Config| {
        let aws = config.aws.as_mut().expect("AWS configured");
        aws.eventbridge_secret = Some(Secret::new(EVENTBRIDGE_SECRET));
        let unread = match channel {
            Channel::SnsHttpAndSqs | Channel::SnsSqs | Channel::EventBridgeSqs => None,
            Channel::SnsHttp => Some("sns-notifications"),
            Channel::EventBridgeHttp => Some("eventbridge-events"),
        };
        if let Some(queue) = unread {
            aws.sqs_queue_urls.retain(|u| !u.ends_with(queue));
        }
    };
    if channel == Channel::SnsSqs {
        marketlink_e2e::start_sns_over_sqs_only(tune).await
    } else {
        start_full(|_| {}, |_| {}, tune).await
    }
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
        Channel::SnsSqs,
        Channel::EventBridgeSqs,
        Channel::EventBridgeHttp,
    ] {
        let mut stack = stack_for(channel).await;
        chaos(&stack, 11);
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
        if channel == Channel::SnsSqs {
            assert!(stack.aws.http_deliveries().is_empty(), "SQS alone");
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
    chaos(&stack, 12);
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

/// The concurrent product metered like the classic one (the demo lists it without plans).
fn meter_the_concurrent_product(config: &mut marketlink_cli::config::Config) {
    let plans = config
        .catalog
        .products
        .iter()
        .find(|p| p.id.as_str() == "analytics")
        .map(|p| p.plans.clone())
        .unwrap_or_default();
    if let Some(teams) = config
        .catalog
        .products
        .iter_mut()
        .find(|p| p.id.as_str() == "analytics-teams")
    {
        teams.plans = plans;
    }
}

/// Waits until marketlink has taken and handled (not dead-lettered) an inbox message whose
/// kind starts with `kind` and which names `needle`.
async fn handled(stack: &Stack, kind: &str, needle: &str) {
    marketlink_e2e::eventually(&format!("{kind} for {needle} handled"), || async {
        stack
            .store
            .inbox_list(marketlink_store::QueueState::Done, 500)
            .await
            .expect("inbox")
            .iter()
            .any(|m| m.kind.starts_with(kind) && m.payload.to_string().contains(needle))
    })
    .await;
}

/// Reports `quantity` api_calls for `subscription` an hour ago through the usage API.
async fn report_usage(stack: &Stack, subscription: &marketlink_core::Subscription, quantity: u64) {
    // Two hours back: an hour closes only five minutes (the settle delay) after it ends, so
    // usage of the last hour reported in the first minutes of an hour would wait past the
    // test's patience.
    let at = marketlink_core::Clock::now(&SystemClock) - time::Duration::hours(2);
    let body = serde_json::json!({
        "subscription_id": subscription.id.to_string(),
        "dimension": "api_calls",
        "quantity": quantity,
        "timestamp": at.format(&time::format_description::well_known::Rfc3339).expect("time"),
    });
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/usage", stack.app_url))
        .bearer_auth("demo-usage-key-0123")
        .json(&body)
        .send()
        .await
        .expect("usage API");
    assert_eq!(response.status(), StatusCode::ACCEPTED, "usage taken");
}

/// A renewal that brings a new LicenseArn continues the same subscription: the licence moves,
/// usage is billed on the new one, and the old licence's deprovisioning cancels nothing.
#[tokio::test]
async fn renewal_with_a_new_licence_keeps_the_tenant_and_moves_metering() {
    let stack = start_full(|_| {}, |_| {}, meter_the_concurrent_product).await;
    chaos(&stack, 13);
    let first = active_buyer(&stack, CONCURRENT, "renewal@example.com").await;
    let before = subscription(&stack, &first).await.expect("stored");
    let renewed = stack
        .aws
        .renew(&first.agreement_id, true)
        .await
        .expect("renewal");
    assert_ne!(renewed.license_arn, first.license_arn);
    marketlink_e2e::eventually("the subscription moves to the new licence", || async {
        subscription(&stack, &first).await.is_some_and(|s| {
            s.external.license_arn.as_deref() == Some(renewed.license_arn.as_str())
        })
    })
    .await;
    handled(&stack, "License Deprovisioned", &first.agreement_id).await;
    handled(&stack, "Purchase Agreement Ended", &first.agreement_id).await;
    let after = subscription(&stack, &first).await.expect("stored");
    assert_eq!(after.id, before.id, "the same subscription");
    assert_eq!(after.tenant_id, before.tenant_id);
    assert_eq!(after.status, SubscriptionStatus::Active);

    report_usage(&stack, &after, 42).await;
    marketlink_e2e::eventually("usage billed on the new licence", || async {
        stack.aws.metered_records().iter().any(|r| {
            r.license_arn.as_deref() == Some(renewed.license_arn.as_str()) && r.quantity == "42"
        })
    })
    .await;
    assert!(
        !stack
            .aws
            .metered_records()
            .iter()
            .any(|r| r.license_arn.as_deref() == Some(first.license_arn.as_str())),
        "nothing billed on the old licence"
    );
}

/// A replacement agreement (same licence) continues the subscription with the new term.
#[tokio::test]
async fn replacement_continues_the_subscription() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    chaos(&stack, 14);
    let first = active_buyer(&stack, CONCURRENT, "replace@example.com").await;
    let replaced = stack
        .aws
        .replace(&first.agreement_id, false)
        .await
        .expect("replacement");
    handled(&stack, "Purchase Agreement Created", &replaced.agreement_id).await;
    handled(&stack, "Purchase Agreement Ended", &first.agreement_id).await;
    let sub = subscription(&stack, &first).await.expect("stored");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    let timeline = stack.store.timeline(sub.id, 50).await.expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e.kind == "renewed" && e.outcome == "applied"),
        "the new term is recorded: {timeline:?}"
    );
    // Ending the replacement ends the subscription: its agreement is one of its names now.
    send(&stack, &replaced, SubscriptionAction::UnsubscribePending).await;
    wait_status(&stack, &first, SubscriptionStatus::UnsubscribePending).await;
}

/// The state AWS reports for an agreement, in our words.
fn as_aws_says(stack: &Stack, purchase: &Purchase) -> SubscriptionStatus {
    use marketlink_sandbox::aws::SubscriptionState as Aws;
    match stack
        .aws
        .agreement(&purchase.agreement_id)
        .expect("agreement")
        .state
    {
        Aws::Pending => SubscriptionStatus::Pending,
        Aws::Subscribed => SubscriptionStatus::Active,
        Aws::Failed => SubscriptionStatus::Failed,
        Aws::UnsubscribePending => SubscriptionStatus::UnsubscribePending,
        Aws::Unsubscribed => SubscriptionStatus::Cancelled,
    }
}

/// Whole lifecycles fired at once under several chaos seeds, on SNS (HTTP and SQS) and on
/// EventBridge: duplicated and reordered deliveries end every subscription in the state AWS
/// reports, each lifecycle step applied at most once, the final one exactly once.
#[tokio::test]
async fn duplicated_and_reordered_deliveries_end_where_aws_says() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let mut buyers = Vec::new();
    for seed in [21_u64, 22, 23] {
        chaos(&stack, seed);
        for product in [CLASSIC, CONCURRENT] {
            let purchase = stack
                .aws
                .purchase(
                    product,
                    OfferKind::Contract,
                    &format!("{:012}", 444_455_550_000_u64 + buyers.len() as u64),
                )
                .expect("purchase");
            let client = browser();
            land(&stack, &client, &purchase.registration_token, false).await;
            let email = format!("chaos-{seed}-{}@example.com", buyers.len());
            assert_eq!(
                sign_up(&stack, &client, &email).await.status(),
                StatusCode::SEE_OTHER
            );
            send(&stack, &purchase, SubscriptionAction::SubscribeSuccess).await;
            stack
                .aws
                .update_entitlements(&purchase.agreement_id, &[("seats", 20)])
                .await
                .expect("amendment");
            send(&stack, &purchase, SubscriptionAction::UnsubscribePending).await;
            send(&stack, &purchase, SubscriptionAction::UnsubscribeSuccess).await;
            buyers.push(purchase);
        }
    }
    for purchase in &buyers {
        let aws_says = as_aws_says(&stack, purchase);
        assert_eq!(aws_says, SubscriptionStatus::Cancelled);
        wait_status(&stack, purchase, aws_says).await;
    }
    // The chaos was real: some SNS envelopes reached marketlink twice over HTTP.
    let deliveries = stack.aws.http_deliveries();
    let twice = deliveries.iter().filter(|d| {
        deliveries
            .iter()
            .filter(|o| o.message_id == d.message_id && o.status == Some(200))
            .count()
            > 1
    });
    assert!(twice.count() > 0, "duplicates were delivered");
    for purchase in &buyers {
        let stored = subscription(&stack, purchase).await.expect("stored");
        let timeline = stack
            .store
            .timeline(stored.id, 100)
            .await
            .expect("timeline");
        let applied = |kind: &str| {
            timeline
                .iter()
                .filter(|e| e.kind == kind && e.outcome == "applied")
                .count()
        };
        for kind in ["lifecycle:activate", "lifecycle:begin_cancel"] {
            assert!(
                applied(kind) <= 1,
                "{kind} applied at most once: {timeline:?}"
            );
        }
        assert_eq!(applied("lifecycle:cancel"), 1, "{timeline:?}");
    }
    let dead = stack
        .store
        .inbox_list(marketlink_store::QueueState::Dead, 100)
        .await
        .expect("inbox");
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
}

/// A classic-identity listing (CustomerIdentifier) that notifies through EventBridge.
const CLASSIC_EVENTBRIDGE: &str = "mlsandboxclassiceb00000004";

/// The stack with a classic-identity EventBridge product on both sides.
async fn classic_eventbridge_stack() -> Stack {
    use marketlink_sandbox::aws::{IdentityMode, NotificationMode, ProductConfig};
    start_full(
        |scenario| {
            scenario.products.push(ProductConfig::standard(
                CLASSIC_EVENTBRIDGE,
                "prod-mlsandboxclassiceb4",
                "Classic identity, EventBridge notifications",
                IdentityMode::Classic,
                NotificationMode::Eventbridge,
            ));
        },
        |_| {},
        |config| {
            let aws = config.aws.as_mut().expect("AWS configured");
            aws.products.push(marketlink_aws::ProductConfig {
                product_code: CLASSIC_EVENTBRIDGE.into(),
                product_id: Some("prod-mlsandboxclassiceb4".into()),
                notification_mode: marketlink_aws::NotificationMode::Eventbridge,
                identity_mode: marketlink_aws::IdentityMode::Classic,
                subscription_topic_arn: None,
                entitlement_topic_arn: None,
            });
            let mut product = config.catalog.products[0].clone();
            product.id = marketlink_core::ProductId::new("analytics-classic-eb");
            product.listings = vec![marketlink_core::Listing {
                marketplace: marketlink_core::Marketplace::AWS,
                product_code: CLASSIC_EVENTBRIDGE.into(),
                listing_url: None,
            }];
            config.catalog.products.push(product);
        },
    )
    .await
}

async fn land_and_sign_up(stack: &Stack, purchase: &Purchase, email: &str) {
    let client = browser();
    let landed = land(stack, &client, &purchase.registration_token, false).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sign_up(stack, &client, email).await.status(),
        StatusCode::SEE_OTHER
    );
}

/// Classic identity over EventBridge: a contract activates before the buyer lands (the
/// CustomerIdentifier read from GetEntitlements by licence), a subscription without
/// entitlements waits for the landing page, and both end after restarts.
#[tokio::test]
async fn classic_identity_on_eventbridge_activates_early_and_ends_after_a_restart() {
    let mut stack = classic_eventbridge_stack().await;
    chaos(&stack, 15);
    let contract = stack
        .aws
        .purchase(CLASSIC_EVENTBRIDGE, OfferKind::Contract, BUYER)
        .expect("purchase");
    send(&stack, &contract, SubscriptionAction::SubscribeSuccess).await;
    wait_status(&stack, &contract, SubscriptionStatus::Active).await;
    let early = subscription(&stack, &contract).await.expect("stored");
    assert!(early.tenant_id.is_none(), "active before anyone landed");
    assert_eq!(early.external.customer_id, contract.customer_identifier);

    let pay_as_you_go = stack
        .aws
        .purchase(CLASSIC_EVENTBRIDGE, OfferKind::Subscription, "777788889999")
        .expect("purchase");
    send(&stack, &pay_as_you_go, SubscriptionAction::SubscribeSuccess).await;
    stack.restart().await;
    land_and_sign_up(&stack, &contract, "classic-eb@example.com").await;
    land_and_sign_up(&stack, &pay_as_you_go, "classic-eb-payg@example.com").await;
    // The waiting License Updated is applied once the landing page named the buyer.
    wait_status(&stack, &pay_as_you_go, SubscriptionStatus::Active).await;
    assert!(
        subscription(&stack, &contract)
            .await
            .expect("stored")
            .tenant_id
            .is_some()
    );

    stack.restart().await;
    for purchase in [&contract, &pay_as_you_go] {
        send(&stack, purchase, SubscriptionAction::UnsubscribePending).await;
        send(&stack, purchase, SubscriptionAction::UnsubscribeSuccess).await;
    }
    for purchase in [&contract, &pay_as_you_go] {
        wait_status(&stack, purchase, SubscriptionStatus::Cancelled).await;
    }
}

/// SNS keeps retrying a message we answered 503 because our configuration did not know its
/// topic yet; once the operator fixes the configuration (and restarts), the next retry is
/// taken and applied. Nothing was lost in between.
#[tokio::test]
async fn a_message_refused_for_our_configuration_is_retried_and_applied_once_fixed() {
    let mut stack = start_full(
        |scenario| scenario.sns_http_retry_delays_ms = vec![1_000; 10],
        |_| {},
        |config| {
            let aws = config.aws.as_mut().expect("AWS configured");
            // Marketlink reads SNS over HTTP only here: the retry is SNS's to make.
            aws.sqs_queue_urls
                .retain(|u| !u.ends_with("sns-notifications"));
            let classic = aws
                .products
                .iter_mut()
                .find(|p| p.product_code == CLASSIC)
                .expect("classic product");
            classic.subscription_topic_arn = Some(
                "arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-notyetright"
                    .into(),
            );
        },
    )
    .await;
    chaos(&stack, 17);
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .expect("purchase");
    send(&stack, &purchase, SubscriptionAction::SubscribeSuccess).await;
    // The topic's SubscriptionConfirmation is refused like the rest, so SNS holds the
    // notification back until the subscription is confirmed.
    marketlink_e2e::eventually("SNS was answered 503", || async {
        stack
            .aws
            .http_deliveries()
            .iter()
            .any(|d| d.status == Some(503))
    })
    .await;
    assert!(subscription(&stack, &purchase).await.is_none());

    let aws = stack.config.aws.as_mut().expect("AWS configured");
    let classic = aws
        .products
        .iter_mut()
        .find(|p| p.product_code == CLASSIC)
        .expect("classic product");
    classic.subscription_topic_arn = Some(format!(
        "arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{CLASSIC}"
    ));
    stack.restart().await;
    wait_status(&stack, &purchase, SubscriptionStatus::Active).await;
    // Each message refused with 503 was delivered by a later retry.
    let deliveries = stack.aws.http_deliveries();
    let refused: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.status == Some(503))
        .map(|d| d.message_id.as_str())
        .collect();
    assert!(!refused.is_empty());
    for id in refused {
        assert!(
            deliveries
                .iter()
                .any(|d| d.message_id == id && d.status == Some(200)),
            "{id} was retried until taken: {deliveries:?}"
        );
    }
}
