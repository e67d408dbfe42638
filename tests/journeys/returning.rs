//! An AWS buyer who cancels and later subscribes again: classic listings give them the same
//! CustomerIdentifier, so the set-up link leads back to the subscription their account holds.
//! The sign-up page sends them to sign in (not to a new account that would be refused), and
//! the new subscribe-success makes the same subscription active again, history kept.

use marketlink_core::SubscriptionStatus;
use marketlink_e2e::{Stack, browser, csrf, eventually, start};
use marketlink_sandbox::aws::{OfferKind, Purchase, SubscriptionAction};
use reqwest::{Client, StatusCode};

use crate::aws::subscription;

const CLASSIC: &str = "mlsandboxclassic0000000001";
const BUYER: &str = "444455556666";
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct-horse-battery";

async fn land(stack: &Stack, client: &Client, purchase: &Purchase) -> String {
    let landed = client
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&[("x-amzn-marketplace-token", &purchase.registration_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(landed.headers()["location"], "/signup");
    let page = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

async fn status_becomes(stack: &Stack, purchase: &Purchase, status: SubscriptionStatus) {
    eventually(&format!("subscription {status}"), || async {
        subscription(stack, purchase)
            .await
            .is_some_and(|s| s.status == status)
    })
    .await;
}

async fn send(stack: &Stack, purchase: &Purchase, action: SubscriptionAction) {
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, action)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_buyer_who_subscribes_again_signs_in_and_is_active_again() {
    let stack = start(|_| {}).await;
    // Deliveries duplicated, reordered and late, as AWS makes them: a late copy of the first
    // subscribe-success must not revive the cancelled subscription before the buyer returns.
    stack
        .aws
        .set_delivery_chaos(Some(marketlink_sandbox::aws::DeliveryChaos {
            seed: 16,
            duplicate_percent: 35,
            reorder: true,
            max_delay_ms: 300,
        }));
    let first = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    let signup = land(&stack, &client, &first).await;
    assert!(!signup.contains("You already have an account here"));
    let created = client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", csrf(&signup).as_str()),
            ("name", "Ada Lovelace"),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.headers()["location"], "/account?linked=1");
    send(&stack, &first, SubscriptionAction::SubscribeSuccess).await;
    status_becomes(&stack, &first, SubscriptionStatus::Active).await;
    send(&stack, &first, SubscriptionAction::UnsubscribePending).await;
    send(&stack, &first, SubscriptionAction::UnsubscribeSuccess).await;
    status_becomes(&stack, &first, SubscriptionStatus::Cancelled).await;
    let before = subscription(&stack, &first).await.unwrap();

    // Later, from another browser, the same buyer subscribes again.
    let again = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    assert_eq!(again.customer_identifier, first.customer_identifier);
    let returning = browser();
    let signup = land(&stack, &returning, &again).await;
    assert!(
        signup.contains("You already have an account here"),
        "{signup}"
    );
    assert!(!signup.contains("Create a new account"), "{signup}");
    let signed_in = returning
        .post(format!("{}/signin", stack.app_url))
        .form(&[
            ("csrf", csrf(&signup).as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.headers()["location"], "/account?linked=1");

    send(&stack, &again, SubscriptionAction::SubscribeSuccess).await;
    status_becomes(&stack, &again, SubscriptionStatus::Active).await;
    let after = subscription(&stack, &again).await.unwrap();
    assert_eq!((after.id, after.tenant_id), (before.id, before.tenant_id));
    eventually("the timeline keeps both subscriptions", || async {
        let outcomes: Vec<String> = stack
            .store
            .timeline(after.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.outcome))
            .collect();
        outcomes.contains(&"lifecycle:cancel applied".to_owned())
            && outcomes.contains(&"lifecycle:activate resubscribed (was cancelled)".to_owned())
    })
    .await;
}
