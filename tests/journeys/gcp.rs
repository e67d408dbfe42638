//! Google Cloud Marketplace end to end: the real server with the Google sandbox, as
//! `marketlink demo` runs them. Sign-up tokens that are forged, expired, for another product or
//! from another issuer are refused; the buyer's sign-up approves the account and the entitlement
//! whichever of the sign-up and Procurement's messages comes first; Pub/Sub push is taken only
//! with the subscription's own OIDC token.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use marketlink_core::{Clock, Marketplace, Subscription, SubscriptionStatus, SystemClock};
use marketlink_e2e::{Stack, browser, eventually, sign_up, start_gcp};
use marketlink_sandbox::{
    gcp::{ApprovalState, EntitlementState, PubSubChaos, Purchase, PurchaseRequest},
    switch::{FaultConfig, FaultKind},
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

pub(crate) fn google() -> Marketplace {
    Marketplace::parse("gcp").unwrap()
}

pub(crate) async fn subscription(stack: &Stack, entitlement: &str) -> Option<Subscription> {
    stack
        .store
        .find_subscription(&google(), entitlement)
        .await
        .unwrap()
}

pub(crate) async fn wait_for(
    stack: &Stack,
    entitlement: &str,
    what: &str,
    check: impl Fn(&Subscription) -> bool,
) {
    eventually(what, || async {
        subscription(stack, entitlement)
            .await
            .is_some_and(|s| check(&s))
    })
    .await;
}

/// The buyer's browser POSTs the sign-up token to our sign-up URL, as Google's
/// "Sign up with provider" does (form field `x-gcp-marketplace-token`).
pub(crate) async fn land(stack: &Stack, client: &Client, token: &str) -> reqwest::Response {
    client
        .post(format!("{}/gcp/landing", stack.app_url))
        .form(&[("x-gcp-marketplace-token", token)])
        .send()
        .await
        .unwrap()
}

/// Lands with the purchase's token and signs up as `email`.
pub(crate) async fn lands_and_signs_up(
    stack: &Stack,
    client: &Client,
    purchase: &Purchase,
    email: &str,
) {
    let landed = land(stack, client, &purchase.sign_up_token).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/signup");
    let signed_up = sign_up(client, &stack.app_url, email).await;
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
}

/// A purchase of `plan` signed up and active on both sides.
pub(crate) async fn active_purchase(stack: &Stack, request: PurchaseRequest) -> Purchase {
    let purchase = stack.google().purchase(request).unwrap();
    lands_and_signs_up(stack, &browser(), &purchase, "grace@example.com").await;
    wait_for(stack, &purchase.entitlement_id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    purchase
}

pub(crate) fn entitlement_state(stack: &Stack, entitlement: &str) -> EntitlementState {
    stack.google().entitlement(entitlement).unwrap().state
}

fn sign_up_approval(stack: &Stack, account: &str) -> ApprovalState {
    let account = stack.google().account(account).unwrap();
    account
        .approvals
        .iter()
        .find(|a| a.name == "signup")
        .unwrap()
        .state
}

#[tokio::test]
async fn sign_up_tokens_google_did_not_issue_for_us_are_refused() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let google = stack.google();
    let purchase = google.purchase(PurchaseRequest::plan("basic")).unwrap();
    let claims = google.sign_up_claims(&purchase.account_id);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut altered = claims.clone();
        change(&mut altered);
        google.sign_up_token_with_claims(&altered, false).unwrap()
    };
    let now = claims["iat"].as_i64().unwrap();
    let not_valid = "Google Cloud Marketplace did not recognise the token";
    let cases = [
        (
            "forged",
            google.sign_up_token_with_claims(&claims, true).unwrap(),
            StatusCode::BAD_REQUEST,
            not_valid,
        ),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(now - 900);
                c["exp"] = json!(now - 600);
            }),
            StatusCode::GONE,
            "This subscription link has expired",
        ),
        (
            "another product",
            with(&|c| c["aud"] = json!("other-product.example.com")),
            StatusCode::BAD_REQUEST,
            not_valid,
        ),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://accounts.google.com")),
            StatusCode::BAD_REQUEST,
            not_valid,
        ),
    ];
    for (what, token, status, words) in cases {
        let client = browser();
        let answer = land(&stack, &client, &token).await;
        assert_eq!(answer.status(), status, "{what}");
        let page = answer.text().await.unwrap();
        assert!(page.contains(words), "{what}: {page}");
        assert!(
            page.contains("Sign up with provider"),
            "{what}: Google's way back: {page}"
        );
    }
    assert_eq!(
        sign_up_approval(&stack, &purchase.account_id),
        ApprovalState::Pending
    );
    assert_eq!(
        entitlement_state(&stack, &purchase.entitlement_id),
        EntitlementState::EntitlementActivationRequested
    );
    // The genuine token still works.
    lands_and_signs_up(&stack, &browser(), &purchase, "ada@example.com").await;
    wait_for(&stack, &purchase.entitlement_id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
}

/// Procurement's messages first (the account's after the entitlement's: the sandbox's reorder
/// switch), then the buyer signs up: the entitlement waits, pending, for the sign-up.
#[tokio::test]
async fn messages_before_the_sign_up_account_message_last() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let google = stack.google();
    google.set_pubsub_chaos(PubSubChaos {
        reorder: true,
        duplicate: true,
        ..PubSubChaos::default()
    });
    let purchase = google.purchase(PurchaseRequest::plan("pro")).unwrap();
    let order: Vec<String> = google
        .published()
        .iter()
        .map(|m| m.data["eventType"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        order,
        ["ACCOUNT_ACTIVE", "ENTITLEMENT_CREATION_REQUESTED"],
        "published in this order, delivered in the other"
    );
    wait_for(
        &stack,
        &purchase.entitlement_id,
        "pending, from the message",
        |s| {
            s.status == SubscriptionStatus::Pending
                && s.plan_id.as_ref().map(|p| p.as_str()) == Some("pro")
        },
    )
    .await;
    assert_eq!(
        sign_up_approval(&stack, &purchase.account_id),
        ApprovalState::Pending,
        "approved only once our tenant exists"
    );
    lands_and_signs_up(&stack, &browser(), &purchase, "ada@example.com").await;
    wait_for(&stack, &purchase.entitlement_id, "active", |s| {
        s.status == SubscriptionStatus::Active && s.tenant_id.is_some()
    })
    .await;
    assert_eq!(
        sign_up_approval(&stack, &purchase.account_id),
        ApprovalState::Approved
    );
    assert_eq!(
        entitlement_state(&stack, &purchase.entitlement_id),
        EntitlementState::EntitlementActive
    );
}

/// The buyer signs up while Pub/Sub cannot be pulled (a fault on `:pull`): the account and
/// entitlement are approved from the sign-up, and the messages that come later change nothing.
#[tokio::test]
async fn sign_up_before_the_messages() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let google = stack.google();
    google
        .start_fault(FaultConfig {
            matching: ":pull".into(),
            kind: FaultKind::Unavailable,
            retry_after_secs: None,
            late_ms: None,
            calls: None,
            start_after_secs: None,
            duration_secs: Some(4),
        })
        .unwrap();
    let purchase = google.purchase(PurchaseRequest::plan("basic")).unwrap();
    lands_and_signs_up(&stack, &browser(), &purchase, "ada@example.com").await;
    eventually("Google approves the account and entitlement", || async {
        entitlement_state(&stack, &purchase.entitlement_id) == EntitlementState::EntitlementActive
    })
    .await;
    assert_eq!(
        sign_up_approval(&stack, &purchase.account_id),
        ApprovalState::Approved
    );
    wait_for(&stack, &purchase.entitlement_id, "active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    let mut ours = subscription(&stack, &purchase.entitlement_id)
        .await
        .unwrap();
    assert_eq!(ours.plan_id.take().unwrap().as_str(), "basic");
    assert!(ours.tenant_id.is_some());
}

/// Pub/Sub push: the sandbox's own OIDC token is accepted (the purchase arrives by push),
/// a token signed by another key or none at all is 401.
#[tokio::test]
async fn push_is_taken_only_with_the_subscriptions_oidc_token() {
    let stack = start_gcp(true, |_| {}, |_| {}).await;
    let google = stack.google();
    let purchase = google.purchase(PurchaseRequest::plan("basic")).unwrap();
    wait_for(&stack, &purchase.entitlement_id, "pending, pushed", |s| {
        s.status == SubscriptionStatus::Pending
    })
    .await;
    let config = google.config();
    let audience = format!("{}/gcp/pubsub", stack.app_url);
    let now = SystemClock.now().unix_timestamp();
    let claims = json!({
        "iss": stack.gcp.as_ref().unwrap().base_url, "aud": audience, "iat": now, "exp": now + 3600,
        "email": config.push_service_account_email, "email_verified": true,
        "sub": "100000000000000000002",
    });
    // Signed with a key that is not the push issuer's.
    let forged = google.sign_up_token_with_claims(&claims, true).unwrap();
    let data = json!({"eventId": "forged-1", "eventType": "ENTITLEMENT_CANCELLED",
                      "providerId": config.provider_id,
                      "entitlement": {"id": purchase.entitlement_id, "updateTime": "2026-03-02T10:00:00Z"}});
    let envelope = json!({
        "message": {"data": STANDARD.encode(data.to_string()), "messageId": "99", "publishTime": "2026-03-02T10:00:00Z"},
        "subscription": config.subscription_name(),
    });
    let client = Client::new();
    for bearer in [Some(forged.as_str()), Some("not-a-jwt"), None] {
        let mut request = client.post(&audience).json(&envelope);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{bearer:?}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rejected", "{body}");
    }
    lands_and_signs_up(&stack, &browser(), &purchase, "ada@example.com").await;
    wait_for(&stack, &purchase.entitlement_id, "active, pushed", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    let attempts = google.push_attempts();
    assert!(
        !attempts.is_empty() && attempts.iter().all(|a| a.status == Some(200)),
        "{attempts:?}"
    );
}
