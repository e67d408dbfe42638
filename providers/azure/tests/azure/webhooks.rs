//! Webhooks from both sides through authenticate + interpret, change responses, JWT refusals
//! and JWKS rotation.

use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{
    ChangeAnswer, ChangeOutcome, EventKind, InboundMessage, Lifecycle, MarketplaceProvider,
    ProviderError,
};
use marketlink_sandbox::azure::{MarketplaceAction, WebhookTokenVersion};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{H, plan};

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

#[tokio::test]
async fn marketplace_side_actions_become_events() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    let id = uuid(&sub.external_id);

    // ChangePlan, accepted.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("pro".into()))
        .await
        .unwrap();
    let (message, events) = h.webhook_events(op).await;
    assert_eq!(message.dedup_key, format!("{op}:InProgress"));
    assert_eq!(message.kind, "ChangePlan");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subscription, sub, "same ExternalRef as resolve");
    assert_eq!(
        events[0].kind,
        EventKind::ChangeRequested {
            operation_id: op.to_string(),
            plan_id: Some(plan("pro")),
            quantity: Some(1),
            // Microsoft's 10 s count from the arrival (`change_ack_timeout_secs`, 8 s).
            answer_by: Some(message.received_at + time::Duration::seconds(8)),
        }
    );
    let op_json = h.sandbox.operation(op).await.unwrap();
    assert_eq!(
        events[0].occurred_at,
        time::OffsetDateTime::parse(
            op_json["timeStamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
    );
    let op_id = op.to_string();
    let answer = |accept: bool| h.provider.respond_to_change(&sub, &op_id, accept, None);
    assert_eq!(answer(true).await.unwrap(), ChangeAnswer::Taken);
    assert_eq!(h.op_status(&op.to_string()).await, "Succeeded");
    assert_eq!(h.sandbox_sub(&sub.external_id).await["planId"], "pro");
    // Answering again the same way is fine (a retried worker); the other way finds the
    // operation settled without our answer (409, then Get Operation).
    assert_eq!(answer(true).await.unwrap(), ChangeAnswer::Taken);
    assert!(matches!(
        answer(false).await.unwrap(),
        ChangeAnswer::SettledWithout { .. }
    ));
    // Re-interpreting the stored message now sees the settled operation.
    let events = h
        .provider
        .interpret(&message, &marketlink_core::EmptyDirectory)
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::PlanChanged {
                plan_id: plan("pro")
            },
            EventKind::QuantityChanged { quantity: 1 }
        ]
    );

    // ChangeQuantity, refused: the sandbox reverts it and a re-read gives nothing to apply.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(3))
        .await
        .unwrap();
    let (message, events) = h.webhook_events(op).await;
    assert_eq!(
        events[0].kind,
        EventKind::ChangeRequested {
            operation_id: op.to_string(),
            plan_id: None,
            quantity: Some(3),
            answer_by: Some(message.received_at + time::Duration::seconds(8)),
        }
    );
    let answer_by = message.received_at + time::Duration::seconds(8);
    let taken = h
        .provider
        .respond_to_change(&sub, &op.to_string(), false, Some(answer_by))
        .await
        .unwrap();
    assert_eq!(taken, ChangeAnswer::Taken);
    assert_eq!(h.op_status(&op.to_string()).await, "Failed");
    assert_eq!(h.sandbox_sub(&sub.external_id).await["quantity"], 1);
    assert!(
        h.provider
            .interpret(&message, &marketlink_core::EmptyDirectory)
            .await
            .unwrap()
            .is_empty()
    );

    // Suspend.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    let (message, events) = h.webhook_events(op).await;
    assert_eq!(message.dedup_key, format!("{op}:Succeeded"));
    assert!(matches!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Suspend,
            ..
        }
    ));

    // Reinstate: in progress at the marketplace, reported as a reinstatement. Notify-only; a
    // PATCH is still taken, as older revisions of the docs describe.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::Reinstate)
        .await
        .unwrap();
    let (_, events) = h.webhook_events(op).await;
    assert!(matches!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Reinstate,
            ..
        }
    ));
    h.provider
        .respond_to_change(&sub, &op.to_string(), true, None)
        .await
        .unwrap();
    assert_eq!(
        h.sandbox_sub(&sub.external_id).await["saasSubscriptionStatus"],
        "Subscribed"
    );

    // Renew: the new term is read from the subscription.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::Renew)
        .await
        .unwrap();
    let (_, events) = h.webhook_events(op).await;
    let s = h.provider.subscription(&sub.external_id).await.unwrap();
    assert_eq!(events[0].kind, EventKind::Renewed { term: s.term() });
    assert!(s.term().unwrap().end.is_some());

    // Unsubscribe.
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    let (message, events) = h.webhook_events(op).await;
    assert_eq!(message.kind, "Unsubscribe");
    assert!(matches!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Cancel,
            ..
        }
    ));
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn vendor_side_changes_come_back_as_webhooks() {
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    let ChangeOutcome::InProgress { operation_id } =
        h.provider.change_plan(&sub, &plan("pro")).await.unwrap()
    else {
        panic!()
    };
    let (message, events) = h.webhook_events(uuid(&operation_id)).await;
    assert_eq!(message.payload["operationRequestSource"], "Partner");
    assert_eq!(
        events[0].kind,
        EventKind::PlanChanged {
            plan_id: plan("pro")
        }
    );

    let ChangeOutcome::InProgress { operation_id } =
        h.provider.change_quantity(&sub, 12).await.unwrap()
    else {
        panic!()
    };
    let (_, events) = h.webhook_events(uuid(&operation_id)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::QuantityChanged { quantity: 12 });

    let ChangeOutcome::InProgress { operation_id } =
        h.provider.refuse_reinstate(&sub).await.unwrap()
    else {
        panic!()
    };
    let (_, events) = h.webhook_events(uuid(&operation_id)).await;
    assert!(matches!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Cancel,
            ..
        }
    ));
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn v1_webhook_tokens_are_accepted() {
    let h = H::start_with(
        |c| c.webhook_token_version = WebhookTokenVersion::V1,
        |_| {},
    )
    .await;
    let sub = h.subscribed("basic", None).await;
    let op = h
        .sandbox
        .marketplace_action(uuid(&sub.external_id), MarketplaceAction::Suspend)
        .await
        .unwrap();
    let (_, events) = h.webhook_events(op).await;
    assert_eq!(events.len(), 1);
    h.sandbox.shutdown().await;
}

/// A webhook message carrying `token` and a body for operation `op` of `sub`.
fn message(token: &str, body: &Value) -> InboundMessage {
    InboundMessage {
        channel: "webhook".into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(body).unwrap(),
    }
}

fn body() -> Value {
    json!({"id": Uuid::new_v4(), "subscriptionId": Uuid::new_v4(), "action": "Suspend",
        "status": "Succeeded", "someFutureField": [1, 2, 3]})
}

fn expect_unauthenticated(
    result: Result<marketlink_core::AuthenticatedMessage, ProviderError>,
    needle: &str,
) {
    match result {
        Err(ProviderError::Unauthenticated(reason)) => {
            assert!(
                reason.contains(needle),
                "reason `{reason}` lacks `{needle}`"
            )
        }
        other => panic!("expected Unauthenticated({needle}), got {other:?}"),
    }
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let h = H::start().await;
    let token = h.sandbox.mint_webhook_token().unwrap();
    let ok = h
        .provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap();
    assert_eq!(ok.kind, "Suspend");
    assert_eq!(
        ok.payload["someFutureField"],
        json!([1, 2, 3]),
        "unknown fields kept"
    );

    // No or malformed header.
    let mut m = message(&token, &body());
    m.headers.retain(|(k, _)| k != "authorization");
    expect_unauthenticated(h.provider.authenticate(&m).await, "Authorization");
    let mut m = message(&token, &body());
    m.headers[0].1 = format!("Basic {token}");
    expect_unauthenticated(h.provider.authenticate(&m).await, "Bearer");
    expect_unauthenticated(
        h.provider
            .authenticate(&message("not-a-jwt", &body()))
            .await,
        "not a JWT",
    );

    // Forged: claims changed (aud/tid untouched) under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    expect_unauthenticated(
        h.provider.authenticate(&message(&forged, &body())).await,
        "signature",
    );
    // Forged with a shared secret (alg confusion).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("whatever".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    expect_unauthenticated(
        h.provider.authenticate(&message(&hs, &body())).await,
        "RS256",
    );

    // Expired: 2 h later (tokens live 1 h, leeway 60 s).
    h.clock.advance(time::Duration::hours(2));
    expect_unauthenticated(
        h.provider.authenticate(&message(&token, &body())).await,
        "expired",
    );
    // Not yet valid: minted "in the future" relative to the provider's view.
    let future = h.sandbox.mint_webhook_token().unwrap();
    h.clock.advance(time::Duration::hours(-1));
    expect_unauthenticated(
        h.provider.authenticate(&message(&future, &body())).await,
        "not valid",
    );
    h.sandbox.shutdown().await;

    // Wrong audience, issuer, tenant, app: the same sandbox token against other expectations.
    for (tweak, needle) in [
        (
            Box::new(|c: &mut marketlink_azure::AzureConfig| {
                c.webhook_audience = Some("11111111-2222-3333-4444-555555555555".into())
            }) as Box<dyn FnOnce(&mut marketlink_azure::AzureConfig)>,
            "audience",
        ),
        (
            Box::new(|c: &mut marketlink_azure::AzureConfig| {
                c.webhook_issuers = vec!["https://login.microsoftonline.com/{tid}/v2.0".into()]
            }),
            "issuer",
        ),
        (
            Box::new(|c: &mut marketlink_azure::AzureConfig| {
                c.webhook_issuers = vec![format!("{}/{}/v2.0", c.authority_host, c.tenant_id)];
                c.tenant_id = "99999999-9999-4999-8999-999999999999".into();
                // Keys of the real tenant still.
                c.jwks_url = Some(format!("{}/common/discovery/v2.0/keys", c.authority_host));
            }),
            "tenant",
        ),
        (
            Box::new(|c: &mut marketlink_azure::AzureConfig| {
                c.marketplace_app_id = "00000000-0000-0000-0000-000000000001".into()
            }),
            "app",
        ),
    ] {
        let h = H::start_with(|_| {}, tweak).await;
        let token = h.sandbox.mint_webhook_token().unwrap();
        expect_unauthenticated(
            h.provider.authenticate(&message(&token, &body())).await,
            needle,
        );
        h.sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn authenticated_but_malformed_bodies_and_wrong_channel() {
    let h = H::start().await;
    let token = h.sandbox.mint_webhook_token().unwrap();
    let mut m = message(&token, &json!({"no": "id"}));
    assert!(matches!(
        h.provider.authenticate(&m).await,
        Err(ProviderError::Rejected { .. })
    ));
    m.body = b"not json".to_vec();
    assert!(matches!(
        h.provider.authenticate(&m).await,
        Err(ProviderError::Rejected { .. })
    ));
    let mut m = message(&token, &body());
    m.channel = "sns-http".into();
    assert!(matches!(
        h.provider.authenticate(&m).await,
        Err(ProviderError::Unauthenticated(_))
    ));
    // A payload naming an operation the marketplace does not know: never acted upon.
    let ok = h
        .provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap();
    assert!(matches!(
        h.provider
            .interpret(&ok, &marketlink_core::EmptyDirectory)
            .await,
        Err(ProviderError::NotFound(_))
    ));
    // A payload lying about the action of a real operation.
    let sub = h.subscribed("basic", None).await;
    let op = h
        .sandbox
        .marketplace_action(uuid(&sub.external_id), MarketplaceAction::Suspend)
        .await
        .unwrap();
    let lie = json!({"id": op, "subscriptionId": sub.external_id, "action": "Unsubscribe", "status": "Succeeded"});
    let ok = h
        .provider
        .authenticate(&message(&token, &lie))
        .await
        .unwrap();
    assert!(matches!(
        h.provider.interpret(&ok, &marketlink_core::EmptyDirectory).await,
        Err(ProviderError::Rejected { code, .. }) if code == "operation_mismatch"
    ));
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn jwks_rotation_refetches_on_unknown_kid_at_most_once_a_minute() {
    // A JWKS endpoint we control, first publishing only an "old" key.
    let jwks: Arc<Mutex<Value>> = Arc::new(Mutex::new(json!({"keys": []})));
    let app = Router::new()
        .route(
            "/keys",
            get(|State(j): State<Arc<Mutex<Value>>>| async move {
                axum::Json(j.lock().unwrap().clone())
            }),
        )
        .with_state(jwks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let h = H::start_with(|_| {}, |c| c.jwks_url = Some(url.clone())).await;
    let real = h.sandbox.jwks();
    let mut old = real.clone();
    old["keys"][0]["kid"] = json!("old-key");
    *jwks.lock().unwrap() = old;

    let token = h.sandbox.mint_webhook_token().unwrap();
    expect_unauthenticated(
        h.provider.authenticate(&message(&token, &body())).await,
        "unknown key",
    );
    assert_eq!(h.provider.jwks_fetch_count(), 1);
    // Microsoft rotates: the new key is published.
    *jwks.lock().unwrap() = real;
    // Within the minute, unknown kids do not trigger downloads (forged kids cannot hammer it),
    // and the answer is "later" (503, Microsoft retries), not "forged" (a 4xx refuses changes).
    let err = h
        .provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("next download"), "{err}");
    assert_eq!(h.provider.jwks_fetch_count(), 1);
    h.clock.advance(time::Duration::seconds(61));
    h.provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap();
    assert_eq!(h.provider.jwks_fetch_count(), 2);
    h.provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap();
    assert_eq!(h.provider.jwks_fetch_count(), 2, "cached");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn jwks_found_by_discovery_and_unreachable_keys_are_retryable() {
    let h = H::start().await;
    let token = h.sandbox.mint_webhook_token().unwrap();
    h.provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap();
    assert_eq!(
        h.calls_to("/v2.0/.well-known/openid-configuration").await,
        1
    );
    h.sandbox.shutdown().await;

    let h = H::start_with(
        |_| {},
        |c| c.jwks_url = Some("http://127.0.0.1:1/keys".into()),
    )
    .await;
    let token = h.sandbox.mint_webhook_token().unwrap();
    let err = h
        .provider
        .authenticate(&message(&token, &body()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    h.sandbox.shutdown().await;
}
