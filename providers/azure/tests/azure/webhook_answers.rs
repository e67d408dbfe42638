//! Which webhook answers make Microsoft come back: a token that cannot be checked now is
//! retryable, only a bad token is refused; and the unsigned mode for Microsoft's emulator.

use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use marketlink_azure::{AzureProvider, WebhookAuth};
use marketlink_core::{
    Clock, EventKind, InboundMessage, Lifecycle, ManualClock, MarketplaceProvider, ProviderError,
    SystemClock,
};
use marketlink_sandbox::azure::MarketplaceAction;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::H;

fn signed(token: &str, body: &Value) -> InboundMessage {
    InboundMessage {
        channel: "webhook".into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(body).unwrap(),
    }
}

/// A JWKS endpoint answering the set in `state`, or 500 while it is `None`.
async fn jwks_server(state: Arc<Mutex<Option<Value>>>) -> String {
    let app = Router::new()
        .route(
            "/keys",
            get(|State(j): State<Arc<Mutex<Option<Value>>>>| async move {
                match j.lock().unwrap().clone() {
                    Some(keys) => axum::Json(keys).into_response(),
                    None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn body() -> Value {
    json!({"id": Uuid::new_v4(), "subscriptionId": Uuid::new_v4(), "action": "Suspend",
        "status": "Succeeded"})
}

#[tokio::test]
async fn unknown_key_while_the_jwks_is_failing_is_retryable_and_a_known_one_still_works() {
    let state = Arc::new(Mutex::new(None));
    let url = jwks_server(state.clone()).await;
    let h = H::start_with(|_| {}, |c| c.jwks_url = Some(url.clone())).await;
    let token = h.sandbox.mint_webhook_token().unwrap();

    // Entra's key endpoint fails: nothing to check against, so Microsoft must come back.
    let err = h
        .provider
        .authenticate(&signed(&token, &body()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(h.provider.jwks_fetch_count(), 0);

    // It answers, with a set lacking our key: a download just now settles it, 401.
    let real = h.sandbox.jwks();
    let mut old = real.clone();
    old["keys"][0]["kid"] = json!("old-key");
    *state.lock().unwrap() = Some(old);
    assert!(matches!(
        h.provider.authenticate(&signed(&token, &body())).await,
        Err(ProviderError::Unauthenticated(reason)) if reason.contains("unknown key")
    ));
    assert_eq!(h.provider.jwks_fetch_count(), 1);

    // A minute on, the endpoint fails again while the token's key is still unknown: 503.
    *state.lock().unwrap() = None;
    h.clock.advance(time::Duration::seconds(61));
    let err = h
        .provider
        .authenticate(&signed(&token, &body()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // Back up with the rotated key: the retried webhook goes through.
    *state.lock().unwrap() = Some(real);
    h.provider
        .authenticate(&signed(&token, &body()))
        .await
        .unwrap();
    assert_eq!(h.provider.jwks_fetch_count(), 2);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn explicit_nulls_parse() {
    let h = H::start().await;
    let token = h.sandbox.mint_webhook_token().unwrap();
    let op = Uuid::new_v4();
    let sub = Uuid::new_v4();
    let nulls = json!({"id": op, "activityId": null, "subscriptionId": sub, "publisherId": null,
        "offerId": null, "planId": null, "quantity": null, "timeStamp": null, "action": null,
        "status": null, "operationRequestSource": null, "subscription": null, "purchaseToken": null});
    let ok = h
        .provider
        .authenticate(&signed(&token, &nulls))
        .await
        .unwrap();
    assert_eq!(ok.kind, "operation");
    assert_eq!(ok.dedup_key, format!("{op}:unknown"));
    // Only the subscription id in the nested subscription, next to a null at the top.
    let nested = json!({"id": op, "subscriptionId": null, "subscription": {"id": sub.to_string().to_uppercase()}});
    let ok = h
        .provider
        .authenticate(&signed(&token, &nested))
        .await
        .unwrap();
    assert_eq!(
        ok.payload["subscription"]["id"],
        json!(sub.to_string().to_uppercase())
    );
    // Still refused: no ids at all, or not an object.
    for bad in [json!({"id": null, "subscriptionId": null}), json!([1, 2])] {
        assert!(matches!(
            h.provider.authenticate(&signed(&token, &bad)).await,
            Err(ProviderError::Rejected { .. })
        ));
    }
    h.sandbox.shutdown().await;
}

/// The webhook of `op` as the sandbox sent it, minus its token (as Microsoft's emulator sends
/// webhooks when it has no Entra app configured).
async fn unsigned_copy(h: &H, op: Uuid) -> InboundMessage {
    let mut message = h.receiver.wait_for(op).await;
    message.headers.retain(|(name, _)| name != "authorization");
    message
}

#[tokio::test]
async fn unsigned_webhooks_are_taken_only_with_webhook_auth_none() {
    let h = H::start_with(|_| {}, |c| c.webhook_auth = WebhookAuth::None).await;
    let sub = h.subscribed("basic", None).await;
    let op = h
        .sandbox
        .marketplace_action(
            Uuid::parse_str(&sub.external_id).unwrap(),
            MarketplaceAction::Suspend,
        )
        .await
        .unwrap();
    let message = unsigned_copy(&h, op).await;
    let taken = h.provider.authenticate(&message).await.unwrap();
    assert_eq!(taken.kind, "Suspend");
    // Still confirmed with Get Operation before anything is applied.
    let events = h
        .provider
        .interpret(&taken, &marketlink_core::EmptyDirectory)
        .await
        .unwrap();
    assert!(matches!(
        &events[..],
        [e] if matches!(e.kind, EventKind::Lifecycle { event: Lifecycle::Suspend, .. })
    ));
    // A body naming an operation the marketplace does not know is not acted upon.
    let made_up = h
        .provider
        .authenticate(&InboundMessage {
            body: serde_json::to_vec(&body()).unwrap(),
            ..message.clone()
        })
        .await
        .unwrap();
    assert!(matches!(
        h.provider
            .interpret(&made_up, &marketlink_core::EmptyDirectory)
            .await,
        Err(ProviderError::NotFound(_))
    ));
    h.sandbox.shutdown().await;

    // The default (Entra) refuses the same unsigned call.
    let h = H::start().await;
    let sub = h.subscribed("basic", None).await;
    let op = h
        .sandbox
        .marketplace_action(
            Uuid::parse_str(&sub.external_id).unwrap(),
            MarketplaceAction::Suspend,
        )
        .await
        .unwrap();
    let message = unsigned_copy(&h, op).await;
    assert!(matches!(
        h.provider.authenticate(&message).await,
        Err(ProviderError::Unauthenticated(reason)) if reason.contains("Authorization")
    ));
    h.sandbox.shutdown().await;
}

#[test]
fn webhook_auth_none_is_refused_for_a_non_loopback_api() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(SystemClock.now()));
    let mut config = marketlink_azure::AzureConfig::new("t", "c", "s");
    config.webhook_auth = WebhookAuth::None;
    match AzureProvider::new(config.clone(), clock.clone()) {
        Err(ProviderError::Configuration(why)) => assert!(why.contains("loopback"), "{why}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    config.marketplace_api_base = "http://127.0.0.1:3978/api".into();
    AzureProvider::new(config, clock).unwrap();
}

#[tokio::test]
async fn keys_past_their_age_still_verify_while_entra_cannot_be_reached() {
    let state = Arc::new(Mutex::new(None));
    let url = jwks_server(state.clone()).await;
    let h = H::start_with(|_| {}, |c| c.jwks_url = Some(url.clone())).await;
    *state.lock().unwrap() = Some(h.sandbox.jwks());
    let token = h.sandbox.mint_webhook_token().unwrap();
    h.provider
        .authenticate(&signed(&token, &body()))
        .await
        .unwrap();

    // A day later the key set is due for a refresh, and the endpoint fails.
    *state.lock().unwrap() = None;
    h.clock.advance(time::Duration::hours(25));
    let fresh = h.sandbox.mint_webhook_token().unwrap();
    h.provider
        .authenticate(&signed(&fresh, &body()))
        .await
        .unwrap();
    // A key it never had is still "later", not "forged".
    let err = h
        .provider
        .authenticate(&signed(&forge_kid(&fresh, "rotated-in"), &body()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(h.provider.jwks_fetch_count(), 1);
    h.sandbox.shutdown().await;
}

/// `token` with another `kid` in its header (the signature no longer matters: the key lookup
/// comes first).
fn forge_kid(token: &str, kid: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["kid"] = json!(kid);
    parts[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    parts.join(".")
}
