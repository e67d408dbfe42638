//! SNS envelopes from the sandbox, over SQS (pull) and over HTTP (captured deliveries).

use std::sync::{Arc, Mutex};

use marketlink_core::{
    EntitlementValue, EventKind, InboundMessage, Lifecycle, MarketplaceEvent, MarketplaceProvider,
    ProviderError,
};
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use serde_json::Value;
use time::Duration;

use crate::common::*;

fn lifecycle_of(events: &[MarketplaceEvent]) -> Vec<Lifecycle> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Lifecycle { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_sns_action_over_sqs() {
    let h = start().await;
    let p = h.sb.purchase(CLASSIC, OfferKind::FreeTrial, BUYER).unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;

    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let msgs = h.authenticated().await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].kind, "subscribe-success");
    let envelope = &msgs[0].payload["envelope"];
    assert_eq!(msgs[0].dedup_key, envelope["MessageId"].as_str().unwrap());
    assert_eq!(envelope["SignatureVersion"], "2");
    assert_eq!(msgs[0].payload["message"]["action"], "subscribe-success");
    let events = h.interpret(&msgs[0]).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].subscription, resolved,
        "same reference as resolve"
    );
    assert_eq!(lifecycle_of(&events), [Lifecycle::Activate]);
    assert_eq!(events[0].free_trial, Some(true));
    let sent = time::OffsetDateTime::parse(
        envelope["Timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(events[0].occurred_at, sent);
    // Interpreting again is harmless.
    assert_eq!(h.interpret(&msgs[0]).await.unwrap(), events);

    h.sb.update_entitlements(&p.agreement_id, &[("seats", 25)])
        .await
        .unwrap();
    let msgs = h.authenticated().await;
    assert_eq!(msgs[0].kind, "entitlement-updated");
    let events = h.interpret(&msgs[0]).await.unwrap();
    let EventKind::EntitlementsChanged { entitlements } = &events[0].kind else {
        panic!("{events:?}")
    };
    assert_eq!(entitlements[0].dimension, "seats");
    assert_eq!(entitlements[0].value, EntitlementValue::Integer(25));
    assert_eq!(events[0].subscription.external_id, resolved.external_id);

    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    let all = h.interpret_all().await;
    let kinds: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["unsubscribe-pending", "unsubscribe-success"]);
    assert_eq!(lifecycle_of(&all[0].1), [Lifecycle::BeginCancel]);
    assert_eq!(lifecycle_of(&all[1].1), [Lifecycle::Cancel]);

    let f =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, OTHER_BUYER)
            .unwrap();
    h.sb.send_subscription_event(&f.agreement_id, SubscriptionAction::SubscribeFail)
        .await
        .unwrap();
    let all = h.interpret_all().await;
    assert_eq!(all[0].0, "subscribe-fail");
    assert_eq!(lifecycle_of(&all[0].1), [Lifecycle::Fail]);
    // Not resolved by this process: the reference is still the classic key.
    assert_eq!(
        all[0].1[0].subscription.external_id,
        format!("{}/{CLASSIC}", f.customer_identifier)
    );
}

type Captured = Arc<Mutex<Vec<InboundMessage>>>;

/// A small HTTP server standing in for our /aws/sns endpoint: records what SNS posts.
async fn capture_server() -> (String, Captured) {
    let captured: Captured = Arc::default();
    let c = captured.clone();
    let app = axum::Router::new().route(
        "/aws/sns",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let c = c.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                c.lock().unwrap().push(InboundMessage {
                    channel: "sns-http".into(),
                    headers,
                    body: body.into_bytes(),
                });
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/aws/sns", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, captured)
}

async fn http_harness(version: u8) -> (Harness, Captured) {
    let (endpoint, captured) = capture_server().await;
    let h = start_with(
        AwsSandboxConfig {
            sns_http_endpoint: Some(endpoint),
            sns_signature_version: version,
            ..AwsSandboxConfig::default()
        },
        |_| {},
    )
    .await;
    (h, captured)
}

fn body_json(m: &InboundMessage) -> Value {
    serde_json::from_slice(&m.body).unwrap()
}

fn with_body(m: &InboundMessage, body: &Value) -> InboundMessage {
    InboundMessage {
        body: body.to_string().into_bytes(),
        ..m.clone()
    }
}

async fn unauthenticated(h: &Harness, m: &InboundMessage) -> String {
    match h.provider.authenticate(m).await {
        Err(ProviderError::Unauthenticated(reason)) => reason,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn sns_over_http_signature_v1_confirmation_then_notification() {
    let (h, captured) = http_harness(1).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let confirmation = captured.lock().unwrap()[0].clone();
    assert_eq!(body_json(&confirmation)["SignatureVersion"], "1");
    let auth = h.provider.authenticate(&confirmation).await.unwrap();
    assert_eq!(auth.kind, "SubscriptionConfirmation");
    // Confirming (GET SubscribeURL) happens in interpret; the sandbox then delivers the backlog.
    assert!(h.interpret(&auth).await.unwrap().is_empty());
    let notification = captured.lock().unwrap()[1].clone();
    assert_eq!(
        notification.header("x-amz-sns-message-type"),
        Some("Notification")
    );
    let auth = h.provider.authenticate(&notification).await.unwrap();
    assert_eq!(auth.kind, "subscribe-success");
    let events = h.interpret(&auth).await.unwrap();
    assert_eq!(events[0].subscription, resolved);
    assert_eq!(lifecycle_of(&events), [Lifecycle::Activate]);
    assert_eq!(events[0].free_trial, Some(false));
}

#[tokio::test]
async fn sns_over_http_signature_v2_every_action() {
    let (h, captured) = http_harness(2).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let conf = captured.lock().unwrap()[0].clone();
    let auth = h.provider.authenticate(&conf).await.unwrap();
    h.interpret(&auth).await.unwrap();
    h.sb.update_entitlements(&p.agreement_id, &[("seats", 3)])
        .await
        .unwrap();
    // The entitlement topic has its own confirmation.
    let conf = captured.lock().unwrap()[2].clone();
    let auth = h.provider.authenticate(&conf).await.unwrap();
    assert_eq!(auth.kind, "SubscriptionConfirmation");
    h.interpret(&auth).await.unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    let all = captured.lock().unwrap().clone();
    let mut kinds = Vec::new();
    for m in &all {
        let auth = h.provider.authenticate(m).await.unwrap();
        assert_eq!(body_json(m)["SignatureVersion"], "2");
        kinds.push(auth.kind);
    }
    assert_eq!(
        kinds,
        [
            "SubscriptionConfirmation",
            "subscribe-success",
            "SubscriptionConfirmation",
            "entitlement-updated",
            "unsubscribe-pending",
            "unsubscribe-success"
        ]
    );
}

#[tokio::test]
async fn forged_tampered_and_misdirected_messages_are_refused() {
    let (h, captured) = http_harness(2).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let conf = captured.lock().unwrap()[0].clone();
    let auth = h.provider.authenticate(&conf).await.unwrap();
    h.interpret(&auth).await.unwrap();
    let good = captured.lock().unwrap()[1].clone();
    h.provider.authenticate(&good).await.unwrap();
    let env = body_json(&good);

    // Tampered: the buyer changes the action.
    let mut t = env.clone();
    t["Message"] = Value::String(
        t["Message"]
            .as_str()
            .unwrap()
            .replace("subscribe-success", "unsubscribe-success"),
    );
    let reason = unauthenticated(&h, &with_body(&good, &t)).await;
    assert!(reason.contains("signature"), "{reason}");

    // Forged: another message's valid signature.
    let mut f = env.clone();
    f["Signature"] = body_json(&conf)["Signature"].clone();
    assert!(
        unauthenticated(&h, &with_body(&good, &f))
            .await
            .contains("signature")
    );
    let mut f = env.clone();
    f["Signature"] = Value::String("bm90IGEgc2lnbmF0dXJl".into());
    unauthenticated(&h, &with_body(&good, &f)).await;

    // Another topic swapped in (headers adjusted to match): the signature no longer holds.
    let mut w = env.clone();
    w["TopicArn"] = Value::String("arn:aws:sns:us-east-1:999999999999:other-topic".into());
    let mut m = with_body(&good, &w);
    m.headers.retain(|(k, _)| k != "x-amz-sns-topic-arn");
    assert!(unauthenticated(&h, &m).await.contains("signature"));

    // Certificate on a host that is not SNS, or not https.
    let mut c = env.clone();
    c["SigningCertURL"] = Value::String("https://evil.example.com/cert.pem".into());
    assert!(
        unauthenticated(&h, &with_body(&good, &c))
            .await
            .contains("host")
    );
    let strict = start_with(Default::default(), |c| c.sns_allow_http = false).await;
    let reason = unauthenticated(&strict, &good).await;
    assert!(reason.contains("https"), "{reason}");

    // Header inconsistent with the body.
    let mut hdr = good.clone();
    for (k, v) in hdr.headers.iter_mut() {
        if k == "x-amz-sns-message-type" {
            *v = "SubscriptionConfirmation".into();
        }
    }
    assert!(
        unauthenticated(&h, &hdr)
            .await
            .contains("x-amz-sns-message-type")
    );
    let mut hdr = good.clone();
    hdr.headers.retain(|(k, _)| k != "x-amz-sns-message-type");
    unauthenticated(&h, &hdr).await;

    // Stale: replayed two hours later.
    h.clock.advance(Duration::hours(2));
    assert!(unauthenticated(&h, &good).await.contains("stale"));
    // Dated in the future.
    h.clock.advance(Duration::hours(-3));
    assert!(unauthenticated(&h, &good).await.contains("future"));
    h.clock.advance(Duration::hours(1));

    // Unknown channel, not JSON.
    let mut other = good.clone();
    other.channel = "smtp".into();
    unauthenticated(&h, &other).await;
    let mut garbage = good.clone();
    garbage.body = b"<xml/>".to_vec();
    unauthenticated(&h, &garbage).await;
}

/// Signs `envelope` again as the sandbox's SNS does (SignatureVersion 2).
fn resigned(envelope: &Value) -> Value {
    let mut envelope = envelope.clone();
    let map = envelope.as_object().unwrap();
    let data = marketlink_sandbox::aws::sns::string_to_sign(map);
    let signature = marketlink_sandbox::aws::sns::signer()
        .unwrap()
        .sign(2, data.as_bytes());
    envelope["SignatureVersion"] = Value::String("2".into());
    envelope["Signature"] = Value::String(signature);
    envelope
}

/// SNS over HTTP retries only 5xx. A genuine message we cannot take for our own reasons must
/// be answered so that SNS retries: a topic not configured (yet) is a Configuration error, a
/// certificate that cannot be fetched is Retryable; forged ones stay Unauthenticated.
#[tokio::test]
async fn genuine_messages_we_cannot_take_yet_are_not_refused_for_good() {
    let (h, captured) = http_harness(2).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let conf = captured.lock().unwrap()[0].clone();
    let auth = h.provider.authenticate(&conf).await.unwrap();
    h.interpret(&auth).await.unwrap();
    let good = captured.lock().unwrap()[1].clone();
    let env = body_json(&good);

    // Signed by SNS for a topic of no configured product.
    let other = topic("subscription", "productnotyetconfigured");
    let mut unknown = env.clone();
    unknown["TopicArn"] = Value::String(other.clone());
    let mut m = with_body(&good, &resigned(&unknown));
    m.headers.retain(|(k, _)| k != "x-amz-sns-topic-arn");
    let err = h.provider.authenticate(&m).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Configuration(why) if why.contains(&other)),
        "{err:?}"
    );
    // Once configured, the same delivery is taken.
    let configured = start_with(Default::default(), |c| {
        c.products[0].subscription_topic_arn = Some(other.clone());
        c.sns_cert_hosts = vec![h.url.trim_start_matches("http://").to_owned()];
    })
    .await;
    assert_eq!(
        configured.provider.authenticate(&m).await.unwrap().kind,
        "subscribe-success"
    );

    // The certificate cannot be fetched (the host answers 404): retryable.
    let mut cert = env.clone();
    cert["SigningCertURL"] = Value::String(format!("{}/SimpleNotificationService-gone.pem", h.url));
    let err = h
        .provider
        .authenticate(&with_body(&good, &resigned(&cert)))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // Signed but unreadable: refused as malformed, not retried.
    let mut garbled = env.clone();
    garbled["Message"] = Value::String("not json".into());
    let err = h
        .provider
        .authenticate(&with_body(&good, &resigned(&garbled)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "MalformedMessage"),
        "{err:?}"
    );
}

#[tokio::test]
async fn sqs_messages_may_wait_longer_than_http_ones() {
    let h = start().await;
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.clock.advance(Duration::hours(5));
    let msgs = h.drain().await;
    // Five hours in the queue: still accepted from SQS (limit: 14 days).
    h.provider.authenticate(&msgs[0].message).await.unwrap();
    h.clock.advance(Duration::days(15));
    let err = h.provider.authenticate(&msgs[0].message).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthenticated(_)), "{err:?}");
}

/// The certificate URL is AWS's own: no query (which would give one certificate endless cache
/// names), and SHA1 signatures can be refused for topics that sign with version 2.
#[tokio::test]
async fn certificate_urls_with_a_query_and_v1_signatures_where_v2_is_required_are_refused() {
    let (h, captured) = http_harness(1).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let conf = captured.lock().unwrap()[0].clone();
    h.provider.authenticate(&conf).await.unwrap();

    let mut queried = body_json(&conf);
    let url = queried["SigningCertURL"].as_str().unwrap().to_owned();
    for suffix in ["?copy=1", "#again"] {
        queried["SigningCertURL"] = Value::String(format!("{url}{suffix}"));
        let reason = unauthenticated(&h, &with_body(&conf, &queried)).await;
        assert!(reason.contains("query or fragment"), "{reason}");
    }

    let (endpoint, strict_captured) = capture_server().await;
    let strict = start_with(
        AwsSandboxConfig {
            sns_http_endpoint: Some(endpoint),
            sns_signature_version: 1,
            ..AwsSandboxConfig::default()
        },
        |c| c.sns_require_signature_v2 = true,
    )
    .await;
    let p = strict
        .sb
        .purchase(CLASSIC, OfferKind::Contract, BUYER)
        .unwrap();
    strict
        .sb
        .send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let signed_v1 = strict_captured.lock().unwrap()[0].clone();
    let reason = unauthenticated(&strict, &signed_v1).await;
    assert!(reason.contains("version 2"), "{reason}");
}
