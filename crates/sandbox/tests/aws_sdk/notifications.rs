//! SQS queues carrying SNS envelopes and EventBridge events, and SNS HTTP delivery.

use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use time::Duration;

use super::common::*;

#[tokio::test]
async fn sqs_carries_signed_sns_envelopes() {
    use aws_sdk_sqs::{
        operation::{
            change_message_visibility::ChangeMessageVisibilityError,
            delete_message::DeleteMessageError, get_queue_url::GetQueueUrlError,
        },
        types::MessageSystemAttributeName,
    };
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = sqs
        .get_queue_url()
        .queue_name("aws-mp-sns-notifications")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    assert_eq!(url, h.sb.sns_queue_url());
    let err = sqs
        .get_queue_url()
        .queue_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetQueueUrlError::QueueDoesNotExist(_)),
        "{err:?}"
    );

    let p = h.sb.purchase(CLASSIC, OfferKind::FreeTrial, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let msgs = out.messages();
    assert_eq!(msgs.len(), 1);
    let env: serde_json::Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(env["Type"], "Notification");
    assert_eq!(
        env["TopicArn"],
        format!("arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{CLASSIC}")
    );
    let message: serde_json::Value =
        serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["action"], "subscribe-success");
    assert_eq!(
        message["customer-identifier"],
        p.customer_identifier.as_str()
    );
    assert_eq!(message["isFreeTrialTermPresent"], "true");
    verify_sns_with_openssl(&h, &env).await;
    assert!(
        msgs[0]
            .attributes()
            .unwrap()
            .contains_key(&MessageSystemAttributeName::ApproximateReceiveCount)
    );

    // In flight: invisible; visibility change and delete.
    let handle = msgs[0].receipt_handle().unwrap().to_owned();
    let again = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert!(again.messages().is_empty());
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let again = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(again.messages().len(), 1);
    let stale = handle;
    let handle = again.messages()[0].receipt_handle().unwrap().to_owned();
    let err = sqs
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&stale)
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ChangeMessageVisibilityError::MessageNotInflight(_)),
        "{err:?}"
    );
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(&handle)
        .send()
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(5));
    let empty = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert!(empty.messages().is_empty());
    let err = sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle("garbage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DeleteMessageError::ReceiptHandleIsInvalid(_)),
        "{err:?}"
    );

    // SendMessage round trip (the SDK checks MD5OfMessageBody).
    sqs.send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .unwrap();
    let got = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(got.messages()[0].body(), Some("hello"));
}

#[tokio::test]
async fn sqs_get_queue_attributes_counts_messages() {
    use aws_sdk_sqs::{
        operation::get_queue_attributes::GetQueueAttributesError, types::QueueAttributeName,
    };
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = h.sb.sns_queue_url();
    for body in ["one", "two"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // One in flight, one waiting.
    sqs.receive_message().queue_url(&url).send().await.unwrap();
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .map(String::as_str),
        Some("1")
    );
    assert!(!attrs.contains_key(&QueueAttributeName::QueueArn));
    let all = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(
        all.attributes()
            .unwrap()
            .get(&QueueAttributeName::QueueArn)
            .map(String::as_str),
        Some("arn:aws:sqs:us-east-1:111122223333:aws-mp-sns-notifications")
    );
    let err = sqs
        .get_queue_attributes()
        .queue_url(format!("{}/111122223333/nope", h.url))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetQueueAttributesError::QueueDoesNotExist(_)),
        "{err:?}"
    );
}

async fn verify_sns_with_openssl(h: &Harness, env: &serde_json::Value) {
    use base64::Engine;
    let map = env.as_object().unwrap();
    let (status, pem) = raw_get(env["SigningCertURL"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(pem, h.sb.signing_cert_pem().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let pubkey = dir.path().join("pub.pem");
    let data = dir.path().join("data.txt");
    let sig = dir.path().join("sig.bin");
    std::fs::write(&cert, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&pubkey, out.stdout).unwrap();
    std::fs::write(&data, marketlink_sandbox::aws::sns::string_to_sign(map)).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(env["Signature"].as_str().unwrap())
        .unwrap();
    std::fs::write(&sig, signature).unwrap();
    let digest = match env["SignatureVersion"].as_str().unwrap() {
        "1" => "-sha1",
        "2" => "-sha256",
        v => panic!("SignatureVersion {v}"),
    };
    let out = std::process::Command::new("openssl")
        .args(["dgst", digest, "-verify"])
        .arg(&pubkey)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sns_http_delivery_confirmation_first_then_notifications_v1() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let rx = received.clone();
    let app = axum::Router::new().route(
        "/sns",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let rx = rx.clone();
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    headers["x-amz-sns-message-type"].to_str().unwrap(),
                    v["Type"].as_str().unwrap()
                );
                rx.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/sns", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = AwsSandboxConfig {
        sns_http_endpoint: Some(endpoint),
        sns_signature_version: 1,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let first = received.lock().unwrap().clone();
    assert_eq!(
        first.len(),
        1,
        "only the confirmation until confirmed: {first:?}"
    );
    assert_eq!(first[0]["Type"], "SubscriptionConfirmation");
    verify_sns_with_openssl(&h, &first[0]).await;

    let (status, xml) = raw_get(first[0]["SubscribeURL"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("ConfirmSubscriptionResult"));
    let all = received.lock().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["Type"], "Notification");
    assert_eq!(all[1]["SignatureVersion"], "1");
    verify_sns_with_openssl(&h, &all[1]).await;

    h.sb.update_entitlements(&p.agreement_id, &[("seats", 25)])
        .await
        .unwrap();
    let all = received.lock().unwrap().clone();
    // The entitlement topic has its own subscription: confirmation first again.
    assert_eq!(all[2]["Type"], "SubscriptionConfirmation");
    assert!(
        all[2]["TopicArn"]
            .as_str()
            .unwrap()
            .contains("aws-mp-entitlement-notification-")
    );
    let (status, _) = raw_get(all[2]["SubscribeURL"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let all = received.lock().unwrap().clone();
    let msg: serde_json::Value = serde_json::from_str(all[3]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(msg["action"], "entitlement-updated");
}

#[tokio::test]
async fn eventbridge_events_reach_the_queue() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = h.sb.eventbridge_queue_url();
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.sb.update_entitlements(&p.agreement_id, &[("seats", 20)])
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = out
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        // A direct offer: the seller is proposer and manufacturer, so AWS sends only the
        // Proposer variant of Purchase Agreement events; License events are Manufacturer.
        [
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Amended - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Proposer",
            "License Deprovisioned - Manufacturer",
        ]
    );
    assert!(events[0]["detail"]["resaleAuthorization"].is_null());
    assert_eq!(events[0]["detail"]["proposer"]["accountId"], "111122223333");
    let created = &events[0];
    assert_eq!(created["source"], "aws.agreement-marketplace");
    assert_eq!(created["version"], "0");
    assert_eq!(created["region"], "us-east-1");
    assert_eq!(created["account"], "111122223333");
    assert_eq!(
        created["detail"]["agreement"]["id"],
        p.agreement_id.as_str()
    );
    assert_eq!(created["detail"]["agreement"]["intent"], "NEW");
    assert_eq!(created["detail"]["acceptor"]["accountId"], BUYER);
    assert_eq!(
        created["resources"][0],
        format!("arn:aws:aws-marketplace::aws:agreement:{}", p.agreement_id)
    );
    assert_eq!(
        events[1]["detail"]["license"]["arn"],
        p.license_arn.as_str()
    );
    assert_eq!(events[1]["detail"]["product"]["code"], CONCURRENT);
    assert_eq!(events[4]["detail"]["agreement"]["status"], "CANCELLED");
    // No SNS traffic for EventBridge listings.
    let sns = sqs
        .receive_message()
        .queue_url(h.sb.sns_queue_url())
        .send()
        .await
        .unwrap();
    assert!(sns.messages().is_empty());
}
