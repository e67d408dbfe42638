//! The buyer pages, the scenario TOML and oversized or malformed bodies.

use marketlink_sandbox::azure::AzureSandboxConfig;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::harness::*;

#[tokio::test]
async fn buyer_page_purchases_and_acts() {
    let t = T::start().await;
    let c = t.sandbox.config().clone();
    let page = t.http.get(t.url("/sandbox/buyer")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("contoso-analytics|pro"));
    let r = t
        .http
        .post(t.url("/sandbox/buyer/purchase"))
        .form(&[
            ("plan", "contoso-analytics|pro"),
            ("quantity", "4"),
            ("buyer", c.users[0].object_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}?token=", c.landing_url)));
    let token = landing_token_from(&location);
    let api_token = t.token().await;
    let (status, _, body) = t
        .call(
            Method::POST,
            "/saas/subscriptions/resolve",
            "/saas/subscriptions/resolve",
            Some(&api_token),
            None,
            &[("x-ms-marketplace-token", &token)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["quantity"], 4);
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();

    // Marketplace-side actions from the page.
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/suspend")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "cannot suspend before activation");
    let (status, _, _) = t
        .call(
            Method::POST,
            &format!("/saas/subscriptions/{id}/activate"),
            "/saas/subscriptions/{subscriptionId}/activate",
            Some(&api_token),
            Some(json!({"planId": "pro", "quantity": 4})),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let r = t
        .http
        .post(t.url(&format!(
            "/sandbox/buyer/subscriptions/{id}/change_quantity"
        )))
        .form(&[("quantity", "6")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["quantity"], 6);
    let ops = t.sandbox.operations(id).await;
    let op: Uuid = ops.last().unwrap()["id"].as_str().unwrap().parse().unwrap();
    t.receiver.wait_for(op).await;
    t.wait_op(op, "Succeeded").await;
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/suspend")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Suspended"
    );
    let r = t
        .http
        .post(t.url(&format!("/sandbox/buyer/subscriptions/{id}/open")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let again = landing_token_from(r.headers()["location"].to_str().unwrap());
    assert_ne!(again, token);

    let log = t.http.get(t.url("/sandbox/log")).send().await.unwrap();
    assert_eq!(log.status(), 200);
    assert!(
        log.text()
            .await
            .unwrap()
            .contains("/api/saas/subscriptions/resolve")
    );
    let ca = t
        .http
        .get(t.url("/sandbox/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ca, t.sandbox.ca_pem);
    assert!(t.sandbox.call_log().await.len() > 5);
    t.sandbox.shutdown().await;
}

#[test]
fn scenario_toml_matches_defaults_and_is_validated() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/azure-default.toml"
    ))
    .unwrap();
    let parsed = AzureSandboxConfig::from_toml_str(&text).unwrap();
    let default = AzureSandboxConfig::default();
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::to_value(&default).unwrap()
    );
    let partial =
        AzureSandboxConfig::from_toml_str("webhook_url = \"http://localhost:9000/hook\"").unwrap();
    assert_eq!(partial.webhook_url, "http://localhost:9000/hook");
    assert_eq!(partial.offers.len(), 1);
    assert!(AzureSandboxConfig::from_toml_str("offers = []").is_err());
    assert!(AzureSandboxConfig::from_toml_str("no_such_key = 1").is_err());
    assert!(!format!("{default:?}").contains("sandbox-publisher-secret"));
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let t = T::start().await;
    let token = t.token().await;
    let big = "x".repeat(300 * 1024);
    let r = t
        .http
        .post(t.url(&format!("/api/usageEvent?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = t
        .http
        .post(t.url(&format!("/api/batchUsageEvent?{API}")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(t.url(&format!("/api/usageEvent?{API}")))
        .bearer_auth(&token)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let c = t.sandbox.config();
    let r = t
        .http
        .post(t.url(&format!("/{}/oauth2/v2.0/token", c.publisher_tenant_id)))
        .body(vec![0xff, b'=', 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(t.url("/common/oauth2/v2.0/authorize"))
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    t.sandbox.shutdown().await;
}
