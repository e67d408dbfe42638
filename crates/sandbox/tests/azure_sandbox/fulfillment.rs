//! SaaS Fulfillment API v2: the life cycle over HTTP and paging.

use marketlink_sandbox::azure::PurchaseRequest;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::*;

#[tokio::test]
async fn fulfillment_life_cycle_over_http() {
    let t = T::start().await;
    let token = t.token().await;
    let tok = Some(token.as_str());

    // Buy through the handle; the landing URL carries the URL-encoded token.
    let purchase = t
        .sandbox
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(5),
            buyer_object_id: t.sandbox.config().users[1].object_id.clone(),
            subscription_name: Some("Tailspin analytics".into()),
            is_test: false,
        })
        .await
        .unwrap();
    let decoded = landing_token_from(&purchase.landing_url);
    assert_eq!(decoded, purchase.token);
    let id = purchase.subscription_id;

    let (status, headers, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            tok,
            None,
            &[
                ("x-ms-marketplace-token", &decoded),
                ("x-ms-requestid", "11111111-2222-4333-8444-555555555555"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-ms-requestid"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert!(headers.contains_key("x-ms-correlationid"));
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["planId"], "pro");
    assert_eq!(body["quantity"], 5);
    assert_eq!(
        body["subscription"]["saasSubscriptionStatus"],
        "PendingFulfillmentStart"
    );
    assert_eq!(
        body["subscription"]["purchaser"]["emailId"],
        "bob@tailspin.onmicrosoft.com"
    );

    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Tailspin analytics");

    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/listAvailablePlans"),
            "/saas/subscriptions/{subscriptionId}/listAvailablePlans",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let plans: Vec<&str> = body["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["planId"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["basic", "pro"]);

    // Activate: wrong plan / quantity 400, then 200, then again 400.
    let activate_path = format!("/saas/subscriptions/{id}/activate");
    let activate = |body: Value| {
        t.call(
            Method::POST,
            &activate_path,
            "/saas/subscriptions/{subscriptionId}/activate",
            tok,
            Some(body),
            &[],
        )
    };
    assert_eq!(activate(json!({"planId": "basic"})).await.0, 400);
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 6})).await.0,
        400
    );
    assert_eq!(activate(json!({"quantity": 5})).await.0, 400);
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 5})).await.0,
        200
    );
    assert_eq!(
        activate(json!({"planId": "pro", "quantity": 5})).await.0,
        400
    );
    let sub = t.sandbox.subscription(id).await.unwrap();
    assert_eq!(sub["saasSubscriptionStatus"], "Subscribed");
    assert!(sub["term"]["startDate"].is_string() && sub["term"]["endDate"].is_string());

    // List (with a second subscription).
    let _ = t.buy("basic", None, 0).await;
    let (status, _, body) = t
        .call(
            Method::GET,
            "/saas/subscriptions",
            "/saas/subscriptions/",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 2);
    assert!(body.get("@nextLink").is_none());

    // PATCH quantity → 202 + Operation-Location → Succeeded, Partner webhook.
    let (status, headers, _) = t
        .call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"quantity": 8})),
            &[],
        )
        .await;
    assert_eq!(status, 202);
    let location = headers["operation-location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "{}/api/saas/subscriptions/{id}/operations/",
        t.sandbox.base_url
    )));
    assert!(location.ends_with("?api-version=2018-08-31"));
    let op: Uuid = location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations/{op}"),
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "Succeeded");
    assert_eq!(body["action"], "ChangeQuantity");
    assert_eq!(body["quantity"], 8);
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["operationRequestSource"], "Partner");
    assert_eq!(hook["subscription"]["quantity"], 8);

    // PATCH plan.
    let (status, _, _) = t
        .call(
            Method::PATCH,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            Some(json!({"planId": "basic"})),
            &[],
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // Pending operations: none left.
    let (status, _, body) = t
        .call(
            Method::GET,
            &format!("/saas/subscriptions/{id}/operations"),
            "/saas/subscriptions/{subscriptionId}/operations",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["operations"], json!([]));

    // DELETE → 202, Unsubscribed; activate is then 404 and resolve still works.
    let (status, headers, _) = t
        .call(
            Method::DELETE,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202);
    assert!(headers.contains_key("operation-location"));
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    assert_eq!(activate(json!({"planId": "basic"})).await.0, 404);
    let (status, _, _) = t
        .call(
            Method::DELETE,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            tok,
            None,
            &[("x-ms-marketplace-token", &decoded)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["subscription"]["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn list_pages_with_next_link() {
    let t = T::start().await;
    let token = t.token().await;
    for _ in 0..105 {
        t.buy("basic", None, 0).await;
    }
    let (status, _, body) = t
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
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 100);
    let next = body["@nextLink"].as_str().unwrap();
    assert!(next.starts_with(&t.sandbox.base_url));
    let r = t.http.get(next).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    t.specs.check("/saas/subscriptions/", "get", 200, &body);
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 5);
    assert!(body.get("@nextLink").is_none());
    t.sandbox.shutdown().await;
}
