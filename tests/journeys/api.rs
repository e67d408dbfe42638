//! The vendor's API: keys, scopes, revocation, tenant isolation, and the entitlement check.

use marketlink_core::{ApiKey, Scope, TenantId};
use marketlink_e2e::{Stack, aws_buyer_signs_up, browser, eventually, start};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use reqwest::StatusCode;
use serde_json::Value;

async fn key(stack: &Stack, scopes: Vec<Scope>, tenant: Option<TenantId>) -> (ApiKey, String) {
    let (key, plaintext, hash) =
        marketlink_web::api_auth::new_key("test", scopes, tenant, time::OffsetDateTime::UNIX_EPOCH);
    stack.store.create_api_key(&key, &hash).await.unwrap();
    (key, plaintext)
}

/// Buys `offer` of the classic AWS product as `email`; returns the tenant id and agreement.
async fn customer(stack: &Stack, email: &str, offer: OfferKind) -> (TenantId, String) {
    // One AWS account per customer: the same account would be the same AWS customer.
    let account = format!("{:012}", email.bytes().map(u64::from).sum::<u64>() * 7919);
    let purchase = aws_buyer_signs_up(stack, &browser(), offer, &account, email).await;
    let (user, _) = stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    (user.tenant_id, purchase.agreement_id)
}

async fn check(stack: &Stack, key: &str, query: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/check?{query}", stack.app_url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn checks_follow_the_subscription_and_keys_are_enforced() {
    let stack = start(|_| {}).await;
    let (read_key, read) = key(&stack, vec![Scope::EntitlementsRead], None).await;
    let (_, usage_only) = key(&stack, vec![Scope::UsageWrite], None).await;
    let (tenant, agreement) = customer(&stack, "a@example.com", OfferKind::Contract).await;
    let q = |feature: &str| format!("tenant={tenant}&product=analytics&feature={feature}");

    // Bought, not yet confirmed by AWS.
    eventually("pending in the index", || async {
        check(&stack, &read, &q("dashboards")).await.1["reason"] == "pending"
    })
    .await;
    stack
        .aws
        .send_subscription_event(&agreement, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("allowed once active", || async {
        check(&stack, &read, &q("dashboards")).await.1["allowed"] == true
    })
    .await;
    let (_, exports) = check(&stack, &read, &q("exports")).await;
    assert_eq!(exports["reason"], "feature_not_in_plan");
    assert!(
        exports["subscribe_url"]
            .as_str()
            .unwrap()
            .contains("/aws/buyer")
    );
    // The contract bought 10 seats.
    let (_, eleven) = check(&stack, &read, &format!("{}&quantity=11", q("seats"))).await;
    assert_eq!(
        (eleven["reason"].as_str(), eleven["limit"].as_i64()),
        (Some("quantity_exceeded"), Some(10))
    );
    assert_eq!(
        check(&stack, &read, &format!("{}&quantity=10", q("seats")))
            .await
            .1["allowed"],
        true
    );
    let other_product = format!("tenant={tenant}&product=analytics-teams&feature=dashboards");
    assert_eq!(
        check(&stack, &read, &other_product).await.1["reason"],
        "not_subscribed"
    );

    // Bad requests and bad keys.
    assert_eq!(
        check(&stack, &read, "product=analytics").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        check(&stack, &read, &format!("tenant={tenant}&product=nope"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        check(
            &stack,
            &read,
            &format!("tenant={tenant}&product=analytics&quantity=-1")
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        check(&stack, &usage_only, &q("dashboards")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        check(&stack, "mlk_nope", &q("dashboards")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let forged = format!(
        "{}{}",
        &read[..read.len() - 1],
        if read.ends_with('a') { 'b' } else { 'a' }
    );
    assert_eq!(
        check(&stack, &forged, &q("dashboards")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let anonymous = reqwest::get(format!("{}/api/v1/check?{}", stack.app_url, q("x")))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    // unsubscribe-pending ends access.
    stack
        .aws
        .send_subscription_event(&agreement, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    eventually("denied after cancellation", || async {
        check(&stack, &read, &q("dashboards")).await.1["reason"] == "cancelled"
    })
    .await;

    // Use is counted per key, then revocation takes effect within seconds.
    eventually("key use recorded", || async {
        stack
            .store
            .key_use(read_key.id)
            .await
            .unwrap()
            .iter()
            .any(|(action, calls)| action == "check" && *calls > 0)
    })
    .await;
    stack
        .store
        .revoke_api_key(&read_key.prefix, time::OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    eventually("revoked key refused", || async {
        check(&stack, &read, &q("dashboards")).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn a_tenant_key_sees_nothing_of_another_tenant() {
    let stack = start(|_| {}).await;
    let (a, _) = customer(&stack, "a@example.com", OfferKind::Subscription).await;
    let (b, _) = customer(&stack, "b@example.com", OfferKind::Subscription).await;
    let (_, key_of_b) = key(&stack, vec![Scope::EntitlementsRead], Some(b)).await;
    let get = |tenant: TenantId| {
        let key = key_of_b.clone();
        let url = format!("{}/api/v1/tenants/{tenant}/entitlements", stack.app_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    eventually("own tenant listed", || async {
        let response = get(b).await;
        response.status() == StatusCode::OK
            && response.json::<Value>().await.unwrap()["subscriptions"]
                .as_array()
                .unwrap()
                .len()
                == 1
    })
    .await;
    let theirs = get(a).await;
    assert_eq!(
        theirs.status(),
        StatusCode::NOT_FOUND,
        "another tenant looks like no tenant"
    );
    let (status, _) = check(&stack, &key_of_b, &format!("tenant={a}&product=analytics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = get(TenantId::new()).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// Seed 003: one tenant holds products from both marketplaces, and the check API sees both.
#[tokio::test]
async fn one_tenant_two_products_both_marketplaces() {
    use marketlink_sandbox::azure::PurchaseRequest;

    let stack = start(|_| {}).await;
    let (_, read) = key(&stack, vec![Scope::EntitlementsRead], None).await;
    // AWS first: the classic product, which the catalog calls `analytics`.
    let (tenant, agreement) = customer(&stack, "both@example.com", OfferKind::Subscription).await;
    stack
        .aws
        .send_subscription_event(&agreement, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    // Then Microsoft: the same person buys the Azure listing and links it to the same account.
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(3),
            buyer_object_id: "11111111-aaaa-4bbb-8ccc-000000000001".into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .unwrap();
    let client = marketlink_e2e::browser_trusting(&stack.azure.ca_pem);
    marketlink_e2e::azure_land_and_sign_in(
        &client,
        &purchase.landing_url,
        "11111111-aaaa-4bbb-8ccc-000000000001",
    )
    .await;
    let signup = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let linked = client
        .post(format!("{}/signin", stack.app_url))
        .form(&[
            ("csrf", marketlink_e2e::csrf(&signup).as_str()),
            ("email", "both@example.com"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    let azure_sub = stack
        .store
        .find_subscription(
            &marketlink_core::Marketplace::AZURE,
            &purchase.subscription_id.to_string(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        azure_sub.tenant_id,
        Some(tenant),
        "one tenant, both marketplaces"
    );

    // The check API answers from both: the Azure `pro` plan grants exports.
    eventually("both subscriptions active in the index", || async {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/tenants/{tenant}/entitlements",
                stack.app_url
            ))
            .bearer_auth(&read)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let subs = body["subscriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        subs.len() == 2 && subs.iter().all(|s| s["status"] == "active")
    })
    .await;
    let (_, exports) = check(
        &stack,
        &read,
        &format!("tenant={tenant}&product=analytics&feature=exports"),
    )
    .await;
    assert_eq!(exports["allowed"], true, "{exports}");
    assert_eq!(exports["plan_id"], "pro");
}
