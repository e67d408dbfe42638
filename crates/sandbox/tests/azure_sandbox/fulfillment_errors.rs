//! SaaS Fulfillment API v2: the error statuses of its operations.

use marketlink_sandbox::azure::MarketplaceAction;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::*;

#[tokio::test]
async fn fulfillment_error_statuses() {
    let t = T::start_with(|c| c.change_ack_timeout_ms = 5_000).await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let (id, landing) = t.buy("pro", Some(3), 0).await;
    let get = |token: Option<String>| {
        let t = &t;
        async move {
            t.call(
                Method::GET,
                &format!("/saas/subscriptions/{id}"),
                "/saas/subscriptions/{subscriptionId}",
                token.as_deref(),
                None,
                &[],
            )
            .await
        }
    };

    // 403, as Microsoft documents: none, garbage, tampered, wrong audience, expired, another app.
    let (status, headers, body) = get(None).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-ms-error-response"], "true");
    assert!(
        body.as_str()
            .is_some_and(|m| m.starts_with("The authorization token is invalid, expired, missing")),
        "{body}"
    );
    assert_eq!(get(Some("not-a-jwt".into())).await.0, 403);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(get(Some(tampered)).await.0, 403);
    assert_eq!(
        get(Some(t.sandbox.mint_webhook_token().unwrap())).await.0,
        403,
        "webhook token has the publisher app as aud"
    );
    // A valid token of another publisher's app: the same answer.
    let other = &t.sandbox.config().other_apps[0];
    let other_token = t
        .token_for(
            &other.client_id,
            other.client_secret.expose(),
            &other.tenant_id,
        )
        .await;
    assert_eq!(get(Some(other_token)).await.0, 403);
    // api-version.
    let r = t
        .http
        .get(t.url(&format!("/api/saas/subscriptions/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .get(t.url(&format!(
            "/api/saas/subscriptions/{id}?api-version=2099-01-01"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // 404s.
    let missing = Uuid::new_v4();
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            "/saas/subscriptions/not-a-guid",
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}/listAvailablePlans"),
            "/saas/subscriptions/{subscriptionId}/listAvailablePlans",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::POST,
            &format!("/saas/subscriptions/{missing}/activate"),
            "/saas/subscriptions/{subscriptionId}/activate",
            tok,
            Some(json!({"planId": "pro"})),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"planId": "pro"})),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("/saas/subscriptions/{missing}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{missing}/operations"),
            "/saas/subscriptions/{subscriptionId}/operations",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations/{missing}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}/operations/{missing}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            Some(json!({"status": "Success"})),
            &[]
        )
        .await
        .0,
        404
    );

    // Resolve 400s: missing header, unknown token, expired token (24 h).
    let resolve = |token: Option<String>| {
        let t = &t;
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|v| vec![("x-ms-marketplace-token", v)])
                .unwrap_or_default();
            t.call(
                Method::POST,
                "/saas/subscriptions/resolve",
                "/saas/subscriptions/resolve",
                Some(t.token().await.as_str()),
                None,
                &headers,
            )
            .await
        }
    };
    assert_eq!(resolve(None).await.0, 400);
    assert_eq!(resolve(Some("bm9wZQ==".into())).await.0, 400);
    assert_eq!(resolve(Some(landing.clone())).await.0, 200);

    // PATCH 400s before activation, bad bodies.
    let patch_path = format!("/saas/subscriptions/{id}");
    let patch = |body: Value| {
        t.call(
            Method::PATCH,
            &patch_path,
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(
        patch(json!({"quantity": 4})).await.0,
        400,
        "not Subscribed yet"
    );
    let active = t.subscribed(&token, "pro", Some(2)).await;
    let active_path = format!("/saas/subscriptions/{active}");
    let patch = |body: Value| {
        t.call(
            Method::PATCH,
            &active_path,
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(
        patch(json!({"planId": "basic", "quantity": 4})).await.0,
        400
    );
    assert_eq!(patch(json!({})).await.0, 400);
    assert_eq!(patch(json!({"planId": "pro"})).await.0, 400, "same plan");
    assert_eq!(
        patch(json!({"planId": "enterprise"})).await.0,
        400,
        "unknown plan"
    );
    assert_eq!(patch(json!({"quantity": 2})).await.0, 400, "same quantity");
    assert_eq!(patch(json!({"quantity": 501})).await.0, 400, "above max");
    let r = t
        .http
        .patch(t.url(&format!("/api/saas/subscriptions/{active}?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // 409: PATCH while a marketplace-side change is in progress; PATCH of a settled operation.
    let op = t
        .sandbox
        .marketplace_action(active, MarketplaceAction::ChangeQuantity(7))
        .await
        .unwrap();
    let (status, _, _) = patch(json!({"quantity": 9})).await;
    assert_eq!(status, 409);
    let op_path = format!("/saas/subscriptions/{active}/operations/{op}");
    let spec_op = "/saas/subscriptions/{subscriptionId}/operations/{operationId}";
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Maybe"})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Success"})),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        t.call(
            Method::PATCH,
            &op_path,
            spec_op,
            tok,
            Some(json!({"status": "Failure"})),
            &[]
        )
        .await
        .0,
        409
    );

    // Expiry by the sandbox clock: the bearer token (1 h) and the landing token (24 h).
    t.clock.advance(time::Duration::hours(2));
    assert_eq!(get(Some(token.clone())).await.0, 403);
    t.clock.advance(time::Duration::hours(23));
    assert_eq!(resolve(Some(landing)).await.0, 400);
    t.sandbox.shutdown().await;
}

/// Injected errors: a documented 500 in the API's shape, an opt-in 429 with `Retry-After`,
/// counted down per path; other paths untouched.
#[tokio::test]
async fn injected_errors_count_down() {
    use marketlink_sandbox::azure::InjectedError;
    let t = T::start_with(|_| {}).await;
    let token = t.token().await;
    let (_, landing) = t.buy("basic", None, 0).await;
    let resolve_path = "/saas/subscriptions/resolve";
    t.sandbox
        .inject_errors(resolve_path, InjectedError::Internal, 1);
    t.sandbox
        .inject_errors(resolve_path, InjectedError::Throttled(7), 1);
    let headers = [("x-ms-marketplace-token", landing.as_str())];
    let call = || {
        t.call(
            Method::POST,
            resolve_path,
            resolve_path,
            Some(&token),
            None,
            &headers,
        )
    };
    // Listing subscriptions is not a resolve: untouched.
    let (status, _, _) = t
        .call(
            Method::GET,
            "/saas/subscriptions",
            "/saas/subscriptions/",
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (status, headers_500, body) = call().await;
    assert_eq!(status, 500);
    assert_eq!(headers_500["x-ms-error-response"], "true");
    assert!(body["error"]["code"].is_string(), "{body}");
    // 429 is not in Microsoft's OpenAPI files: checked outside the harness's spec check.
    let r = t
        .http
        .post(t.url(&format!("/api{resolve_path}?api-version=2018-08-31")))
        .bearer_auth(&token)
        .header("x-ms-marketplace-token", &landing)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(call().await.0, 200);
    t.sandbox.shutdown().await;
}
