//! Pub/Sub push from the Google sandbox to a receiver standing in for marketlink's
//! `POST /gcp/pubsub`: the sandbox's OIDC token verified against its JWK set.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use marketlink_core::{AuthenticatedMessage, InboundMessage, ManualClock, MarketplaceProvider};
use marketlink_gcp::{GcpConfig, GcpProvider, PUSH_CHANNEL, PushConfig};
use marketlink_sandbox::gcp::{GcpSandbox, GcpSandboxConfig, PurchaseRequest};
use time::macros::datetime;

type Received = Arc<Mutex<Vec<AuthenticatedMessage>>>;

async fn receive(
    State((provider, received)): State<(Arc<GcpProvider>, Received)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let message = InboundMessage {
        channel: PUSH_CHANNEL.into(),
        headers,
        body: body.to_vec(),
    };
    match provider.authenticate(&message).await {
        Ok(message) => {
            received.lock().unwrap().push(message);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

#[tokio::test]
async fn pushed_messages_are_authenticated_by_the_sandbox_oidc_token() {
    let google = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", google.local_addr().unwrap());
    let endpoint = format!("http://{}/gcp/pubsub", receiver.local_addr().unwrap());
    let clock = ManualClock::new(datetime!(2026-03-02 10:20 UTC));
    let sandbox_config = GcpSandboxConfig {
        public_base_url: base.clone(),
        push_endpoint: Some(endpoint.clone()),
        ..GcpSandboxConfig::default()
    };
    let sandbox = GcpSandbox::new(sandbox_config, Arc::new(clock.clone())).unwrap();
    let app = sandbox.router();
    tokio::spawn(async move { axum::serve(google, app).await.unwrap() });
    let config = GcpConfig {
        provider_id: sandbox.config().provider_id.clone(),
        service_name: sandbox.config().product_domain.clone(),
        oidc_keys_url: format!("{base}/oauth2/v3/certs"),
        push: Some(PushConfig {
            audience: endpoint,
            service_account_email: sandbox.config().push_service_account_email.clone(),
            issuer: Some(base),
        }),
        ..GcpConfig::default()
    };
    let provider = Arc::new(GcpProvider::new(config, Arc::new(clock)).unwrap());
    let received: Received = Arc::default();
    let app = Router::new()
        .route("/gcp/pubsub", post(receive))
        .with_state((provider, received.clone()));
    tokio::spawn(async move { axum::serve(receiver, app).await.unwrap() });

    let purchase = sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = received.lock().unwrap().clone();
    let entitlement = received
        .iter()
        .find(|m| m.payload["entitlement"]["id"] == purchase.entitlement_id.as_str())
        .unwrap_or_else(|| panic!("no entitlement message among {received:?}"));
    assert_eq!(entitlement.kind, "ENTITLEMENT_CREATION_REQUESTED");
    let attempts = sandbox.push_attempts();
    assert!(
        attempts.iter().all(|a| a.status == Some(204)),
        "{attempts:?}"
    );
}
