//! Marketplace-side actions: signed webhooks, settling, retries and v1 tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marketlink_sandbox::azure::{MarketplaceAction, WebhookTokenVersion};
use reqwest::Method;
use serde_json::{Value, json};

use super::harness::*;

#[tokio::test]
async fn marketplace_actions_send_signed_webhooks_and_settle() {
    let t = T::start_with(|c| c.change_ack_timeout_ms = 3_000).await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let c = t.sandbox.config().clone();
    let id = t.subscribed(&token, "pro", Some(3)).await;

    // ChangePlan accepted by PATCH Success.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("basic".into()))
        .await
        .unwrap();
    let (auth, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["action"], "ChangePlan");
    assert_eq!(hook["status"], "InProgress");
    assert_eq!(hook["operationRequestSource"], "Azure");
    assert_eq!(hook["subscriptionId"], json!(id));
    assert_eq!(hook["subscription"]["planId"], "basic");
    // The webhook JWT validates against the JWKS found through discovery.
    let jwt = auth.unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let claims = t
        .verify_via_discovery(&c.publisher_tenant_id, &jwt, &c.publisher_app_id)
        .await;
    assert_eq!(claims["tid"], json!(c.publisher_tenant_id));
    assert_eq!(claims["azp"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert_eq!(claims["ver"], "2.0");
    // The vendor confirms with GET operation, then PATCHes Success.
    let op_path = format!("/saas/subscriptions/{id}/operations/{op}");
    let spec_op = "/saas/subscriptions/{subscriptionId}/operations/{operationId}";
    let (status, _, body) = t.call(Method::GET, &op_path, spec_op, tok, None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "InProgress");
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
    assert_eq!(body["operations"][0]["id"], json!(op));
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
    assert_eq!(t.op_status(op).await, "Succeeded");
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // ChangePlan refused by PATCH Failure: reverted.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("pro".into()))
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    let op_path = format!("/saas/subscriptions/{id}/operations/{op}");
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
        200
    );
    assert_eq!(t.op_status(op).await, "Failed");
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["planId"], "basic");

    // ChangePlan with no answer: auto-accepted after the timeout.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("pro".into()))
        .await
        .unwrap();
    t.wait_op(op, "Succeeded").await;
    let sub = t.sandbox.subscription(id).await.unwrap();
    assert_eq!(sub["planId"], "pro");
    assert_eq!(
        sub["quantity"], 1,
        "back on a per-seat plan with the minimum seats"
    );

    // ChangeQuantity refused with a 4xx webhook answer: reverted.
    t.receiver.script(&[400]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(10))
        .await
        .unwrap();
    t.wait_op(op, "Failed").await;
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["quantity"], 1);

    // Conflicting and invalid marketplace actions.
    assert!(
        t.sandbox
            .marketplace_action(id, MarketplaceAction::ChangeQuantity(1))
            .await
            .is_err()
    );
    assert!(
        t.sandbox
            .marketplace_action(id, MarketplaceAction::Reinstate)
            .await
            .is_err()
    );

    // Suspend → Reinstate (auto) → Renew → Unsubscribe.
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["status"], "Succeeded");
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Suspended"
    );
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    t.wait_op(op, "Succeeded").await;
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Subscribed"
    );
    let before = t.sandbox.subscription(id).await.unwrap()["term"]["endDate"].clone();
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Renew)
        .await
        .unwrap();
    t.receiver.wait_for(op).await;
    assert_ne!(
        t.sandbox.subscription(id).await.unwrap()["term"]["endDate"],
        before
    );
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    let (_, hook) = t.receiver.wait_for(op).await;
    assert_eq!(hook["action"], "Unsubscribe");
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Unsubscribed"
    );

    // Every webhook body carries the SaaSOperation fields the spec defines.
    for (_, hook) in t.receiver.calls() {
        let mut op = hook.clone();
        for extra in ["operationRequestSource", "subscription", "purchaseToken"] {
            op.as_object_mut().unwrap().remove(extra);
        }
        t.specs.check(
            "/saas/subscriptions/{subscriptionId}/operations/{operationId}",
            "get",
            200,
            &op,
        );
        t.specs.check(
            "/saas/subscriptions/{subscriptionId}",
            "get",
            200,
            &hook["subscription"],
        );
    }
    t.sandbox.shutdown().await;
}

#[tokio::test]
async fn webhook_deliveries_are_retried_and_v1_tokens_offered() {
    let t = T::start_with(|c| c.webhook_token_version = WebhookTokenVersion::V1).await;
    let token = t.token().await;
    let id = t.subscribed(&token, "basic", None).await;
    t.receiver.script(&[500, 503]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    // The sandbox records an attempt once its answer is back, a moment after the receiver saw
    // it: wait for the records (on a loaded machine that moment can be long).
    let mut attempts = Vec::new();
    for _ in 0..500 {
        attempts = t
            .sandbox
            .webhook_attempts()
            .await
            .into_iter()
            .filter(|a| a.operation_id == op)
            .collect();
        if attempts.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(500), Some(503), Some(200)]
    );
    let (auth, _) = t.receiver.calls().pop().unwrap();
    let jwt = auth.unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let jwks = t.sandbox.jwks();
    let key = &jwks["keys"][0];
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let c = t.sandbox.config();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[&c.publisher_app_id]);
    v.set_issuer(&[format!(
        "https://sts.windows.net/{}/",
        c.publisher_tenant_id
    )]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["appid"], "20e940b3-4c77-4b0b-9a53-9e16a1b010a7");
    assert_eq!(claims["ver"], "1.0");

    // A vendor that never answers: the change is failed and reverted after the retries.
    let t2 = T::start_with(|c| {
        c.webhook_url = "http://127.0.0.1:9/azure/webhook".into();
        c.webhook_max_attempts = 2;
    })
    .await;
    let token = t2.token().await;
    let id = t2.subscribed(&token, "pro", Some(2)).await;
    let op = t2
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(4))
        .await
        .unwrap();
    t2.wait_op(op, "Failed").await;
    assert_eq!(t2.sandbox.subscription(id).await.unwrap()["quantity"], 2);
    assert_eq!(t2.sandbox.webhook_attempts().await.len(), 2);
    t2.sandbox.shutdown().await;
    t.sandbox.shutdown().await;
}

/// Microsoft's current webhook page: a Reinstate is notify-only (a 4xx is a failed delivery,
/// retried, not a refusal) and completes on its own, unless the subscription was deleted
/// meanwhile. `apply_refused_changes`: a refused change stays applied while the operation says
/// Failed.
#[tokio::test]
async fn reinstate_is_notify_only_and_a_refused_change_can_stick() {
    let t = T::start_with(|c| {
        c.change_ack_timeout_ms = 300;
        c.apply_refused_changes = true;
        c.webhook_retry_delays_ms = vec![20];
    })
    .await;
    let token = t.token().await;
    let id = t.subscribed(&token, "pro", Some(3)).await;

    t.receiver.script(&[400]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(10))
        .await
        .unwrap();
    t.wait_op(op, "Failed").await;
    assert_eq!(t.sandbox.subscription(id).await.unwrap()["quantity"], 10);

    let suspend = || async {
        let op = t
            .sandbox
            .marketplace_action(id, MarketplaceAction::Suspend)
            .await
            .unwrap();
        t.receiver.wait_for(op).await;
    };
    suspend().await;
    t.receiver.script(&[400]);
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    t.wait_op(op, "Succeeded").await;
    let deliveries = t
        .receiver
        .calls()
        .iter()
        .filter(|(_, hook)| hook["id"] == json!(op))
        .count();
    assert_eq!(deliveries, 2, "the 400 was retried, not taken as a refusal");
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Subscribed"
    );

    // Declined by deleting the subscription: the Reinstate then fails, and it stays deleted.
    suspend().await;
    let op = t
        .sandbox
        .marketplace_action(id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    let (status, _, _) = t
        .call(
            Method::DELETE,
            &format!("/saas/subscriptions/{id}"),
            "/saas/subscriptions/{subscriptionId}",
            Some(token.as_str()),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202);
    t.wait_op(op, "Failed").await;
    assert_eq!(
        t.sandbox.subscription(id).await.unwrap()["saasSubscriptionStatus"],
        "Unsubscribed"
    );
    t.sandbox.shutdown().await;
}
