//! AWS Marketplace: a buyer from the sandbox's purchase to an active, then cancelled,
//! subscription; linking, refusals, trials, contracts, concurrent agreements, bad tokens.

use marketlink_core::{ExternalRef, Marketplace, Subscription, SubscriptionStatus};
use marketlink_e2e::{Stack, browser, csrf, eventually, start};
use marketlink_sandbox::aws::{OfferKind, Purchase, SubscriptionAction};
use reqwest::{Client, StatusCode};

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const BUYER: &str = "444455556666";

pub(crate) async fn land(
    stack: &Stack,
    client: &Client,
    token: &str,
    trial: bool,
) -> reqwest::Response {
    let mut form = vec![("x-amzn-marketplace-token", token)];
    if trial {
        form.push(("x-amzn-marketplace-offer-type", "free-trial"));
    }
    client
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&form)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn sign_up(stack: &Stack, client: &Client, email: &str) -> reqwest::Response {
    let page = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Ada Lovelace"),
            ("company", "Analytical Engines"),
            ("email", email),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap()
}

async fn account(stack: &Stack, client: &Client) -> String {
    client
        .get(format!("{}/account", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The id marketlink stores an AWS purchase under (also used by the reconcile journeys).
pub(crate) fn external_id(purchase: &Purchase) -> String {
    if purchase.product_code == CONCURRENT {
        purchase.license_arn.clone()
    } else {
        ExternalRef::aws_classic_id(&purchase.customer_identifier, &purchase.product_code)
    }
}

pub(crate) async fn subscription(stack: &Stack, purchase: &Purchase) -> Option<Subscription> {
    stack
        .store
        .find_subscription(&Marketplace::AWS, &external_id(purchase))
        .await
        .unwrap()
}

pub(crate) async fn wait_status(stack: &Stack, purchase: &Purchase, status: SubscriptionStatus) {
    eventually(&format!("subscription {status}"), || async {
        subscription(stack, purchase)
            .await
            .is_some_and(|s| s.status == status)
    })
    .await;
}

/// Purchase → landing → sign-up → subscribe-success → unsubscribe-pending → unsubscribe-success,
/// over SNS HTTP deliveries (and the same envelopes over SQS, de-duplicated).
#[tokio::test]
async fn new_account_and_the_whole_sns_lifecycle() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();

    let landed = land(&stack, &client, &purchase.registration_token, false).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/signup");
    // Resolved, but only held in the session: nothing stored until the buyer signs up.
    assert!(subscription(&stack, &purchase).await.is_none());

    let signed_up = sign_up(&stack, &client, "ada@example.com").await;
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_up.headers()["location"], "/account?linked=1");
    let stored = subscription(&stack, &purchase).await.unwrap();
    assert_eq!(
        stored.status,
        SubscriptionStatus::Pending,
        "not active before subscribe-success"
    );
    assert!(stored.tenant_id.is_some());
    assert!(
        account(&stack, &client)
            .await
            .contains("Waiting for the marketplace to confirm")
    );

    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::Active).await;
    assert!(account(&stack, &client).await.contains("Active"));

    stack
        .aws
        .send_subscription_event(
            &purchase.agreement_id,
            SubscriptionAction::UnsubscribePending,
        )
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::UnsubscribePending).await;
    stack
        .aws
        .send_subscription_event(
            &purchase.agreement_id,
            SubscriptionAction::UnsubscribeSuccess,
        )
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::Cancelled).await;

    // The timeline line is written just after the status it reports.
    eventually("the timeline records the whole lifecycle", || async {
        let timeline = stack.store.timeline(stored.id, 50).await.unwrap();
        let applied: Vec<&str> = timeline
            .iter()
            .filter(|e| e.outcome == "applied")
            .map(|e| e.kind.as_str())
            .collect();
        [
            "lifecycle:activate",
            "lifecycle:begin_cancel",
            "lifecycle:cancel",
        ]
        .iter()
        .all(|kind| applied.contains(kind))
    })
    .await;
}

#[tokio::test]
async fn subscribe_fail_marks_the_subscription_failed() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &purchase.registration_token, false).await;
    sign_up(&stack, &client, "fail@example.com").await;
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeFail)
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::Failed).await;
    assert!(account(&stack, &client).await.contains("Failed"));
}

/// Seed 003: the same customer buys a second product and links it to the account it has.
#[tokio::test]
async fn second_product_links_to_the_existing_account() {
    let stack = start(|_| {}).await;
    let first = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &first.registration_token, false).await;
    sign_up(&stack, &client, "owner@example.com").await;

    // Later, in a fresh browser, the second product: sign in instead of signing up.
    let second = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Subscription, BUYER)
        .unwrap();
    let other_browser = browser();
    let landed = land(&stack, &other_browser, &second.registration_token, false).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    let html = other_browser
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Contoso Analytics for Teams"));
    let wrong = other_browser
        .post(format!("{}/signin", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("email", "owner@example.com"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let linked = other_browser
        .post(format!("{}/signin", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("email", "Owner@Example.com"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    assert_eq!(linked.headers()["location"], "/account?linked=1");

    let a = subscription(&stack, &first).await.unwrap();
    let b = subscription(&stack, &second).await.unwrap();
    assert_eq!(a.tenant_id, b.tenant_id, "one tenant, two products");
    let page = account(&stack, &other_browser).await;
    assert!(page.contains("Contoso Analytics for Teams") && page.contains(">Contoso Analytics<"));
}

#[tokio::test]
async fn a_subscription_cannot_be_bound_to_two_accounts() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let first = browser();
    land(&stack, &first, &purchase.registration_token, false).await;
    sign_up(&stack, &first, "first@example.com").await;

    // The same token again (it resolves the same within its lifetime) in another browser.
    let second = browser();
    land(&stack, &second, &purchase.registration_token, false).await;
    let refused = sign_up(&stack, &second, "second@example.com").await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("belongs to another account")
    );
    assert!(
        stack
            .store
            .find_user_by_email("second@example.com")
            .await
            .unwrap()
            .is_none(),
        "no orphan account is created"
    );
}

/// The free-trial mark comes from AWS (subscribe-success's `isFreeTrialTermPresent`), never
/// from the landing form's `x-amzn-marketplace-offer-type`, which any browser can post.
#[tokio::test]
async fn free_trial_is_marked_by_aws_not_by_the_form() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::FreeTrial, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &purchase.registration_token, true).await;
    sign_up(&stack, &client, "trial@example.com").await;
    assert!(!subscription(&stack, &purchase).await.unwrap().free_trial);
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::Active).await;
    assert!(subscription(&stack, &purchase).await.unwrap().free_trial);
    assert!(account(&stack, &client).await.contains("free trial"));

    // A paid subscription posted with the trial field stays paid.
    let paid = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, "555566667777")
        .unwrap();
    let other = browser();
    land(&stack, &other, &paid.registration_token, true).await;
    let signup = other
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!signup.contains("Free trial"), "{signup}");
    sign_up(&stack, &other, "paid@example.com").await;
    assert!(!subscription(&stack, &paid).await.unwrap().free_trial);
}

/// AWS POSTs the set-up token; the same token in a URL is not taken (URLs land in histories,
/// logs and Referer headers), and stays good for AWS's own POST.
#[tokio::test]
async fn the_landing_page_takes_the_aws_token_by_post_only() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    let by_get = client
        .get(format!("{}/aws/landing", stack.app_url))
        .query(&[(
            "x-amzn-marketplace-token",
            purchase.registration_token.as_str(),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(by_get.status(), StatusCode::BAD_REQUEST);
    assert!(
        by_get
            .text()
            .await
            .unwrap()
            .contains("We could not find your subscription token")
    );
    let by_post = land(&stack, &client, &purchase.registration_token, false).await;
    assert!(by_post.status().is_success() || by_post.status().is_redirection());
    sign_up(&stack, &client, "post@example.com").await;
    assert!(subscription(&stack, &purchase).await.is_some());
}

/// Contracts: entitlements are read at registration and again on entitlement-updated.
#[tokio::test]
async fn contract_entitlements_are_read_and_updated() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Contract, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &purchase.registration_token, false).await;
    sign_up(&stack, &client, "contract@example.com").await;
    let sub = subscription(&stack, &purchase).await.unwrap();
    let seats = |list: Vec<marketlink_core::Entitlement>| {
        list.into_iter()
            .find(|e| e.dimension == "seats")
            .map(|e| e.value)
    };
    // The contract's quantities are readable once AWS confirms the subscription.
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("contract seats read at activation", || async {
        seats(stack.store.entitlements(sub.id).await.unwrap())
            == Some(marketlink_core::EntitlementValue::Integer(10))
    })
    .await;
    stack
        .aws
        .update_entitlements(&purchase.agreement_id, &[("seats", 25)])
        .await
        .unwrap();
    eventually("seats updated to 25", || async {
        seats(stack.store.entitlements(sub.id).await.unwrap())
            == Some(marketlink_core::EntitlementValue::Integer(25))
    })
    .await;
    assert!(account(&stack, &client).await.contains("seats: 25"));
}

/// EventBridge listing with concurrent agreements: two agreements of one account are two
/// subscriptions of one tenant, each activated by its own License Updated event over SQS.
#[tokio::test]
async fn concurrent_agreements_over_eventbridge() {
    let stack = start(|_| {}).await;
    let client = browser();
    let first = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Subscription, BUYER)
        .unwrap();
    land(&stack, &client, &first.registration_token, false).await;
    sign_up(&stack, &client, "teams@example.com").await;
    let second = stack
        .aws
        .purchase(CONCURRENT, OfferKind::Contract, BUYER)
        .unwrap();
    land(&stack, &client, &second.registration_token, false).await;
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let linked = client
        .post(format!("{}/signup/link", stack.app_url))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    let (a, b) = (
        subscription(&stack, &first).await.unwrap(),
        subscription(&stack, &second).await.unwrap(),
    );
    assert_ne!(a.id, b.id);
    assert_eq!(a.tenant_id, b.tenant_id);
    assert_eq!(
        a.external.license_arn.as_deref(),
        Some(first.license_arn.as_str())
    );

    for purchase in [&first, &second] {
        stack
            .aws
            .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    wait_status(&stack, &first, SubscriptionStatus::Active).await;
    wait_status(&stack, &second, SubscriptionStatus::Active).await;
    // Ending one agreement leaves the other untouched.
    stack
        .aws
        .send_subscription_event(&first.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    wait_status(&stack, &first, SubscriptionStatus::UnsubscribePending).await;
    assert_eq!(
        subscription(&stack, &second).await.unwrap().status,
        SubscriptionStatus::Active
    );
}

/// A notification that arrives before the buyer finishes registration is not lost.
#[tokio::test]
async fn notification_before_registration_is_kept() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    wait_status(&stack, &purchase, SubscriptionStatus::Active).await;
    assert!(
        subscription(&stack, &purchase)
            .await
            .unwrap()
            .tenant_id
            .is_none()
    );
    let client = browser();
    land(&stack, &client, &purchase.registration_token, false).await;
    sign_up(&stack, &client, "late@example.com").await;
    let sub = subscription(&stack, &purchase).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert!(sub.tenant_id.is_some());
}

#[tokio::test]
async fn bad_tokens_get_clear_pages() {
    let stack = start(|config| config.token_ttl_secs = 1).await;
    let client = browser();

    let missing = client
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&[("something", "else")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("Set up your account")
    );

    let invalid = land(&stack, &client, "not-a-real-token", false).await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert!(invalid.text().await.unwrap().contains("not valid"));

    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let expired = land(&stack, &client, &purchase.registration_token, false).await;
    assert_eq!(expired.status(), StatusCode::GONE);
    assert!(expired.text().await.unwrap().contains("expired"));

    // Without a resolved purchase, the sign-up page says what to do.
    let nothing = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(nothing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &purchase.registration_token, false).await;
    let forged = client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", "forged"),
            ("name", "Mallory"),
            ("email", "mallory@example.com"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(subscription(&stack, &purchase).await.is_none());
}

#[tokio::test]
async fn forged_sns_messages_are_rejected() {
    let stack = start(|_| {}).await;
    let body = serde_json::json!({
        "Type": "Notification",
        "MessageId": "forged-1",
        "TopicArn": format!("arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{CLASSIC}"),
        "Message": "{\"action\":\"subscribe-success\",\"customer-identifier\":\"x\",\"product-code\":\"mlsandboxclassic0000000001\"}",
        "Timestamp": "2026-11-25T10:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "Zm9yZ2Vk",
        "SigningCertURL": format!("{}/SimpleNotificationService-sandbox.pem", stack.aws_url),
    });
    let response = browser()
        .post(format!("{}/aws/sns", stack.app_url))
        .header("x-amz-sns-message-type", "Notification")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        stack
            .store
            .inbox_list(marketlink_store::QueueState::Pending, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Seed 000's manual path: the buyer asks to be set up by the vendor's team.
#[tokio::test]
async fn a_buyer_can_ask_for_a_hand_held_set_up() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    let client = browser();
    land(&stack, &client, &purchase.registration_token, false).await;
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let asked = client
        .post(format!("{}/signup/contact", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Grace Hopper"),
            ("email", "Grace@Navy.example"),
            ("company", "Navy"),
            ("message", "Please migrate our existing workspace."),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    assert!(asked.text().await.unwrap().contains("grace@navy.example"));
    let requests = stack
        .store
        .list_onboarding_requests("open", 10)
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].purchase.subscription.customer_id, purchase.customer_identifier,
        "the identity comes from AWS, not from the form"
    );
}

#[tokio::test]
async fn aws_throttling_on_resolve_ends_in_a_try_again_page() {
    let stack = start(|_| {}).await;
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, BUYER)
        .unwrap();
    stack.aws.inject_errors(
        "ResolveCustomer",
        marketlink_sandbox::aws::InjectedError::Throttling,
        100,
    );
    let page = land(&stack, &browser(), &purchase.registration_token, false).await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("try again"));
}
