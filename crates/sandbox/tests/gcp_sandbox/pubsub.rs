//! Pub/Sub: pull with ack deadlines and redelivery, push with an OIDC token and retries, and the
//! chaos switches.

use std::collections::HashSet;

use base64::{Engine, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marketlink_sandbox::gcp::{PubSubChaos, PurchaseRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

use super::harness::*;

const SUBSCRIPTION: &str = "/v1/projects/marketlink-demo/subscriptions/marketlink-procurement";

async fn pull(t: &T, max: u32) -> Vec<Value> {
    let (status, body) = t
        .call(
            "POST",
            &format!("{SUBSCRIPTION}:pull"),
            Some(json!({"maxMessages": max})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.get("receivedMessages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn data(received: &Value) -> Value {
    let raw = STANDARD
        .decode(received["message"]["data"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

async fn ack(t: &T, received: &[Value]) {
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r["ackId"].as_str().unwrap())
        .collect();
    let (status, _) = t
        .call(
            "POST",
            &format!("{SUBSCRIPTION}:acknowledge"),
            Some(json!({"ackIds": ids})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn pulled_messages_come_back_until_acknowledged() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let first = pull(&t, 10).await;
    assert_eq!(first.len(), 2);
    assert_eq!(
        data(&first[1])["entitlement"]["id"],
        p.entitlement_id.as_str()
    );
    assert!(
        pull(&t, 10).await.is_empty(),
        "hidden until the ack deadline passes"
    );
    ack(&t, &first[..1]).await;
    t.clock.advance(Duration::seconds(11));
    let again = pull(&t, 10).await;
    assert_eq!(again.len(), 1, "the unacknowledged one is redelivered");
    assert_eq!(
        again[0]["message"]["messageId"],
        first[1]["message"]["messageId"]
    );
    assert_ne!(again[0]["ackId"], first[1]["ackId"]);
    // modifyAckDeadline 0 hands it back at once (a nack).
    let ids = json!({"ackIds": [again[0]["ackId"]], "ackDeadlineSeconds": 0});
    let (status, _) = t
        .call(
            "POST",
            &format!("{SUBSCRIPTION}:modifyAckDeadline"),
            Some(ids),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let nacked = pull(&t, 10).await;
    assert_eq!(nacked.len(), 1);
    ack(&t, &nacked).await;
    t.clock.advance(Duration::seconds(60));
    assert!(pull(&t, 10).await.is_empty());
}

#[tokio::test]
async fn pull_errors() {
    let t = T::start().await;
    let cases = [
        (
            "/v1/projects/marketlink-demo/subscriptions/other:pull",
            json!({"maxMessages": 1}),
            404,
            "NOT_FOUND",
        ),
        (
            &format!("{SUBSCRIPTION}:pull") as &str,
            json!({}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            &format!("{SUBSCRIPTION}:acknowledge"),
            json!({"ackIds": []}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            &format!("{SUBSCRIPTION}:modifyAckDeadline"),
            json!({"ackIds": ["a"], "ackDeadlineSeconds": 601}),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (path, body, code, status) in cases {
        let (got, body) = t.call("POST", path, Some(body)).await;
        assert_eq!(got.as_u16(), code, "{path}: {body}");
        assert_eq!(google_status(&body, code), status);
    }
}

#[tokio::test]
async fn chaos_duplicates_reorders_drops_and_delays() {
    let t = T::start().await;
    t.sandbox.set_pubsub_chaos(PubSubChaos {
        duplicate: true,
        ..PubSubChaos::default()
    });
    t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let received = pull(&t, 10).await;
    assert_eq!(received.len(), 4);
    let ids: HashSet<_> = received
        .iter()
        .map(|r| r["message"]["messageId"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "duplicates share the message id");
    ack(&t, &received).await;

    t.sandbox.set_pubsub_chaos(PubSubChaos {
        reorder: true,
        ..PubSubChaos::default()
    });
    t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let received = pull(&t, 10).await;
    let types: Vec<_> = received
        .iter()
        .map(|r| data(r)["eventType"].clone())
        .collect();
    assert_eq!(types, ["ENTITLEMENT_CREATION_REQUESTED", "ACCOUNT_ACTIVE"]);
    ack(&t, &received).await;

    t.sandbox.set_pubsub_chaos(PubSubChaos {
        drop_next: 1,
        delay_next_ms: 0,
        ..PubSubChaos::default()
    });
    t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let received = pull(&t, 10).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        data(&received[0])["eventType"],
        "ENTITLEMENT_CREATION_REQUESTED"
    );
    assert!(t.sandbox.published().iter().rev().nth(1).unwrap().dropped);
    ack(&t, &received).await;

    t.sandbox.set_pubsub_chaos(PubSubChaos {
        delay_next_ms: 5_000,
        ..PubSubChaos::default()
    });
    t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let received = pull(&t, 10).await;
    assert_eq!(
        data(&received[0])["eventType"],
        "ENTITLEMENT_CREATION_REQUESTED",
        "the account message is held back"
    );
    t.clock.advance(Duration::seconds(6));
    let late = pull(&t, 10).await;
    assert!(
        late.iter()
            .any(|r| data(r)["eventType"] == "ACCOUNT_ACTIVE")
    );
}

#[tokio::test]
async fn push_carries_an_oidc_token_and_retries_until_acknowledged() {
    let (receiver, endpoint) = Receiver::start(vec![500, 503]).await;
    let t = T::start_with(|c| c.push_endpoint = Some(endpoint.clone())).await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    receiver.wait_for(4).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let requests = receiver.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 4, "two failures, then each message once");
    let attempts = t.sandbox.push_attempts();
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(204), Some(204)]);
    // The failed first message does not hold up the second; each is retried once.
    let numbers: Vec<_> = attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 1, 2, 2]);
    assert_eq!(attempts[0].message_id, attempts[2].message_id);

    let (headers, body) = &requests[3];
    assert_eq!(
        body["subscription"],
        "projects/marketlink-demo/subscriptions/marketlink-procurement"
    );
    let message: Value = serde_json::from_slice(
        &STANDARD
            .decode(body["message"]["data"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(message["entitlement"]["id"], p.entitlement_id.as_str());
    assert_eq!(body["message"]["messageId"], body["message"]["message_id"]);

    // The bearer token verifies against the issuer's discovery document and JWKS.
    let token = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let discovery: Value = t
        .get_json(&format!("{}/.well-known/openid-configuration", t.base))
        .await;
    let jwks: Value = t.get_json(discovery["jwks_uri"].as_str().unwrap()).await;
    let jwk = &jwks["keys"][0];
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[endpoint.as_str()]);
    validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        claims["email"],
        t.sandbox.config().push_service_account_email.as_str()
    );
    assert_eq!(claims["email_verified"], true);

    let (status, body) = t
        .call(
            "POST",
            &format!("{SUBSCRIPTION}:pull"),
            Some(json!({"maxMessages": 1})),
        )
        .await;
    assert_eq!(
        (status, google_status(&body, 400).as_str()),
        (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION")
    );
}

#[tokio::test]
async fn push_gives_up_after_the_configured_attempts() {
    let (receiver, endpoint) = Receiver::start(vec![500; 10]).await;
    let t = T::start_with(|c| {
        c.push_endpoint = Some(endpoint.clone());
        c.push_max_attempts = 3;
    })
    .await;
    t.sandbox.set_pubsub_chaos(PubSubChaos {
        drop_next: 1,
        ..PubSubChaos::default()
    });
    t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    receiver.wait_for(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.count(),
        3,
        "only the entitlement message, three times"
    );
}

/// `projects.subscriptions.get`, as a vendor's health check reads it: Procurement's topic, no
/// push config on a pull subscription; another subscription is NOT_FOUND.
#[tokio::test]
async fn the_subscription_resource_is_readable() {
    let t = T::start().await;
    let name = t.sandbox.config().subscription_name();
    let (status, body) = t.call("GET", &format!("/v1/{name}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], name.as_str());
    assert_eq!(
        body["topic"],
        format!(
            "projects/cloudcommerceproc-prod/topics/{}",
            t.sandbox.config().provider_id
        )
    );
    assert_eq!(body["pushConfig"], json!({}));
    let (status, body) = t
        .call("GET", "/v1/projects/other/subscriptions/nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
