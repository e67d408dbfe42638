//! Microsoft marketplace: landing with `?token=`, Entra sign-in, sign-up, activation, then
//! marketplace-side changes through the webhook.

use marketlink_core::{Marketplace, PlanId, Subscription, SubscriptionStatus};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in as land_and_sign_in, browser_trusting, csrf, eventually, start,
    start_with,
};
use marketlink_sandbox::azure::{MarketplaceAction, PurchaseRequest};
use reqwest::{Client, StatusCode};

const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CAROL: &str = "22222222-bbbb-4ccc-8ddd-000000000003";

pub(crate) async fn buy(
    stack: &Stack,
    plan: &str,
    quantity: Option<i64>,
    buyer: &str,
) -> (String, String) {
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: plan.into(),
            quantity,
            buyer_object_id: buyer.into(),
            subscription_name: Some("Analytics for the data team".into()),
            is_test: false,
        })
        .await
        .unwrap();
    (purchase.subscription_id.to_string(), purchase.landing_url)
}

pub(crate) async fn sign_up(stack: &Stack, client: &Client, email: &str) -> reqwest::Response {
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Alice Buyer"),
            ("email", email),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap()
}

async fn subscription(stack: &Stack, id: &str) -> Option<Subscription> {
    stack
        .store
        .find_subscription(&Marketplace::AZURE, id)
        .await
        .unwrap()
}

pub(crate) async fn wait_for(
    stack: &Stack,
    id: &str,
    what: &str,
    check: impl Fn(&Subscription) -> bool,
) {
    eventually(what, || async {
        subscription(stack, id).await.is_some_and(|s| check(&s))
    })
    .await;
}

async fn marketplace_status(stack: &Stack, id: &str) -> String {
    stack.azure.subscription(id.parse().unwrap()).await.unwrap()["saasSubscriptionStatus"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn purchase_sign_in_activate_change_and_unsubscribe() {
    let stack = start(|_| {}).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let (id, landing) = buy(&stack, "pro", Some(5), ALICE).await;

    let back = land_and_sign_in(&client, &landing, ALICE).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "/signup");
    let signup = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signup.contains("Microsoft"), "the marketplace is named");
    assert!(
        signup.contains("pro") && signup.contains(">5<"),
        "plan and seats shown"
    );
    assert!(signup.contains("alice@"), "email prefilled from Graph mail");

    let done = sign_up(&stack, &client, "alice@fabrikam.example").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    // Activation goes through the outbox to the marketplace.
    wait_for(&stack, &id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    assert_eq!(marketplace_status(&stack, &id).await, "Subscribed");
    let sub = subscription(&stack, &id).await.unwrap();
    assert_eq!(sub.plan_id, Some(PlanId::new("pro")));
    assert_eq!(sub.quantity, Some(5));

    // From the marketplace side: seats, plan, suspension, reinstatement, then cancellation.
    let subscription_id = id.parse().unwrap();
    stack
        .azure
        .marketplace_action(subscription_id, MarketplaceAction::ChangeQuantity(8))
        .await
        .unwrap();
    wait_for(&stack, &id, "8 seats", |s| s.quantity == Some(8)).await;
    stack
        .azure
        .marketplace_action(
            subscription_id,
            MarketplaceAction::ChangePlan("basic".into()),
        )
        .await
        .unwrap();
    wait_for(&stack, &id, "plan basic", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;
    // The stored entitlements follow: the plan read back from the marketplace right after
    // the change is applied (the flat-rate plan has no seats any more).
    let stored = subscription(&stack, &id).await.unwrap();
    eventually("entitlements follow the plan change", || async {
        let entitlements = stack.store.entitlements(stored.id).await.unwrap();
        let plan = entitlements.iter().find(|e| e.dimension == "plan");
        plan.is_some_and(|e| e.value.to_string() == "basic")
            && !entitlements.iter().any(|e| e.dimension == "quantity")
    })
    .await;
    stack
        .azure
        .marketplace_action(subscription_id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    wait_for(&stack, &id, "suspended", |s| {
        s.status == SubscriptionStatus::Suspended
    })
    .await;
    stack
        .azure
        .marketplace_action(subscription_id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    wait_for(&stack, &id, "reinstated", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    stack
        .azure
        .marketplace_action(subscription_id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    wait_for(&stack, &id, "cancelled", |s| {
        s.status == SubscriptionStatus::Cancelled
    })
    .await;
}

/// Seed 002: a buyer without `mail` or `userPrincipalName` must be asked for an email.
#[tokio::test]
async fn a_buyer_without_email_is_asked_for_one() {
    let stack = start(|_| {}).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let (id, landing) = buy(&stack, "basic", None, CAROL).await;
    land_and_sign_in(&client, &landing, CAROL).await;
    let signup = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        signup.contains("name=\"email\" type=\"email\" autocomplete=\"email\" required value=\"\""),
        "the email field is empty and required"
    );
    let missing = sign_up(&stack, &client, "").await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        sign_up(&stack, &client, "carol@contoso.example")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    wait_for(&stack, &id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
}

/// A landing link whose token arrived un-encoded (pasted, rewritten by a mailer): the query's
/// form decoding reads each `+` as a space; the purchase resolves all the same.
#[tokio::test]
async fn a_landing_link_with_a_raw_plus_resolves() {
    let stack = start(|_| {}).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    // Sandbox tokens are standard base64: buy until one holds a `+`.
    let mut raw_link = None;
    for _ in 0..40 {
        let (_, landing) = buy(&stack, "basic", None, ALICE).await;
        let (page, query) = landing.split_once("?token=").unwrap();
        let token = url::form_urlencoded::parse(format!("t={query}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        if token.contains('+') {
            raw_link = Some(format!("{page}?token={token}"));
            break;
        }
    }
    let raw_link = raw_link.expect("a token with a +");
    let back = land_and_sign_in(&client, &raw_link, ALICE).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "/signup");
}

#[tokio::test]
async fn an_expired_landing_token_gets_a_clear_page() {
    let stack = start_with(|_| {}, |azure| azure.landing_token_ttl_secs = 1).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let (_, landing) = buy(&stack, "basic", None, ALICE).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let page = land_and_sign_in(&client, &landing, ALICE).await;
    assert!(
        page.status() == StatusCode::BAD_REQUEST || page.status() == StatusCode::GONE,
        "{}",
        page.status()
    );
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Configure account now"),
        "tells the buyer what to do"
    );
}

#[tokio::test]
async fn forged_webhooks_are_rejected() {
    let stack = start(|_| {}).await;
    let response = reqwest::Client::new()
        .post(format!("{}/azure/webhook", stack.app_url))
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl")
        .json(&serde_json::json!({
            "id": "11111111-2222-3333-4444-555555555555",
            "action": "Unsubscribe",
            "subscriptionId": "11111111-2222-3333-4444-666666666666",
            "status": "Succeeded"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Signs a buyer up for `plan` and waits until the subscription is active.
pub(crate) async fn active_subscription(
    stack: &Stack,
    client: &Client,
    plan: &str,
    seats: Option<i64>,
) -> String {
    let (id, landing) = buy(stack, plan, seats, ALICE).await;
    land_and_sign_in(client, &landing, ALICE).await;
    sign_up(stack, client, "alice@fabrikam.example").await;
    wait_for(stack, &id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    id
}

pub(crate) async fn manage_page(stack: &Stack, client: &Client, id: &str) -> String {
    client
        .get(format!("{}/account/subscriptions/{id}", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_vendor_side_changes_plan_and_seats_then_cancels() {
    let stack = start(|_| {}).await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    let ours = subscription(&stack, &id).await.unwrap().id;

    let page = manage_page(&stack, &client, &ours.to_string()).await;
    assert!(
        page.contains("Change plan") && page.contains("value=\"basic\""),
        "available plans listed"
    );
    let changed = client
        .post(format!(
            "{}/account/subscriptions/{ours}/quantity",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str()), ("quantity", "12")])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    wait_for(&stack, &id, "12 seats", |s| s.quantity == Some(12)).await;

    let bad = client
        .post(format!(
            "{}/account/subscriptions/{ours}/quantity",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str()), ("quantity", "-3")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let page = manage_page(&stack, &client, &ours.to_string()).await;
    client
        .post(format!(
            "{}/account/subscriptions/{ours}/plan",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str()), ("plan", "basic")])
        .send()
        .await
        .unwrap();
    wait_for(&stack, &id, "plan basic", |s| {
        s.plan_id == Some(PlanId::new("basic"))
    })
    .await;

    let page = manage_page(&stack, &client, &ours.to_string()).await;
    let unconfirmed = client
        .post(format!(
            "{}/account/subscriptions/{ours}/cancel",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(unconfirmed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    client
        .post(format!(
            "{}/account/subscriptions/{ours}/cancel",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&page).as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    wait_for(&stack, &id, "cancelled", |s| {
        s.status == SubscriptionStatus::Cancelled
    })
    .await;
    assert_eq!(marketplace_status(&stack, &id).await, "Unsubscribed");
    let history = manage_page(&stack, &client, &ours.to_string()).await;
    assert!(history.contains("vendor_change_quantity") && history.contains("vendor_cancel"));
}

/// Seed 002: the vendor may block downgrades; Microsoft's change is refused and reverted.
#[tokio::test]
async fn a_marketplace_downgrade_is_refused_by_policy() {
    let stack = marketlink_e2e::start_full(
        |_| {},
        |_| {},
        |config| {
            config.changes.refuse_downgrades = true;
        },
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &client, "pro", Some(5)).await;
    stack
        .azure
        .marketplace_action(
            id.parse().unwrap(),
            MarketplaceAction::ChangePlan("basic".into()),
        )
        .await
        .unwrap();
    let sub_id = subscription(&stack, &id).await.unwrap().id;
    eventually("the refusal is recorded", || async {
        stack
            .store
            .timeline(sub_id, 50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "change_requested" && e.outcome.starts_with("refused"))
    })
    .await;
    eventually("the marketplace kept the plan", || async {
        stack.azure.subscription(id.parse().unwrap()).await.unwrap()["planId"] == "pro"
    })
    .await;
    assert_eq!(
        subscription(&stack, &id).await.unwrap().plan_id,
        Some(PlanId::new("pro"))
    );
}

#[tokio::test]
async fn another_tenant_cannot_see_or_change_a_subscription() {
    let stack = start(|_| {}).await;
    let alice = browser_trusting(&stack.azure.ca_pem);
    let id = active_subscription(&stack, &alice, "pro", Some(5)).await;

    // Mallory has her own account (an AWS purchase) and guesses the subscription's URL.
    let mallory = marketlink_e2e::browser();
    let purchase = stack
        .aws
        .purchase(
            "mlsandboxclassic0000000001",
            marketlink_sandbox::aws::OfferKind::Subscription,
            "444455556666",
        )
        .unwrap();
    mallory
        .post(format!("{}/aws/landing", stack.app_url))
        .form(&[(
            "x-amzn-marketplace-token",
            purchase.registration_token.as_str(),
        )])
        .send()
        .await
        .unwrap();
    sign_up(&stack, &mallory, "mallory@example.com").await;
    let sub_id = subscription(&stack, &id).await.unwrap().id;
    let peek = mallory
        .get(format!("{}/account/subscriptions/{sub_id}", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), StatusCode::NOT_FOUND);
    let own = mallory
        .get(format!("{}/account", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cancel = mallory
        .post(format!(
            "{}/account/subscriptions/{sub_id}/cancel",
            stack.app_url
        ))
        .form(&[("csrf", csrf(&own).as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        subscription(&stack, &id).await.unwrap().status,
        SubscriptionStatus::Active
    );
}
