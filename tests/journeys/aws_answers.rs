//! What marketlink answers AWS's notification deliveries, over HTTP. SNS over HTTP(S) retries
//! a 5xx (and a timeout) but never a 4xx, and has no dead-letter queue; EventBridge API
//! destinations retry for 24 hours. So 4xx is for forged or malformed messages only, and a
//! genuine message we cannot take yet is answered 503.

use marketlink_e2e::{Stack, browser, start_full};
use marketlink_sandbox::aws::sns::{signer, string_to_sign};
use marketlink_store::QueueState;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CONCURRENT: &str = "mlsandboxconcurrent0000002";
const SECRET: &str = "eventbridge-api-destination-secret";

async fn stack() -> Stack {
    start_full(
        |_| {},
        |_| {},
        |config| {
            if let Some(aws) = config.aws.as_mut() {
                aws.eventbridge_secret = Some(marketlink_aws::Secret::new(SECRET));
            }
        },
    )
    .await
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// A subscribe-success notification for `topic`, signed as the sandbox's SNS signs.
fn sns_notification(stack: &Stack, id: &str, topic: &str, cert_url: &str) -> Value {
    let mut envelope = json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": topic,
        "Message": json!({
            "action": "subscribe-success",
            "customer-identifier": "answers-customer",
            "product-code": CLASSIC,
            "isFreeTrialTermPresent": "false"
        }).to_string(),
        "Timestamp": rfc3339(marketlink_core::Clock::now(&marketlink_core::SystemClock)),
        "SignatureVersion": "2",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": format!("{}/unsubscribe", stack.aws_url),
    });
    let data = string_to_sign(envelope.as_object().unwrap());
    envelope["Signature"] = Value::String(signer().unwrap().sign(2, data.as_bytes()));
    envelope
}

async fn post_sns(stack: &Stack, envelope: &Value) -> (StatusCode, Value) {
    let response = browser()
        .post(format!("{}/aws/sns", stack.app_url))
        .header("x-amz-sns-message-type", "Notification")
        .header("content-type", "text/plain; charset=UTF-8")
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn stored(stack: &Stack) -> usize {
    let mut n = 0;
    for state in [QueueState::Pending, QueueState::Done, QueueState::Dead] {
        n += stack.store.inbox_list(state, 100).await.unwrap().len();
    }
    n
}

#[tokio::test]
async fn sns_messages_we_cannot_take_yet_are_answered_503_and_bad_ones_4xx() {
    let stack = stack().await;
    let cert = stack.aws.signing_cert_url();
    let topic = |code: &str| {
        format!("arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{code}")
    };

    // Genuine, but for a topic no configured product has (yet): SNS must try again.
    let unknown = sns_notification(&stack, "answers-1", &topic("notconfiguredyet"), &cert);
    let (status, body) = post_sns(&stack, &unknown).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_configured", "{body}");
    // Why is logged, not told: the answer names nothing of our configuration.
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("notconfiguredyet"),
        "{body}"
    );

    // The certificate cannot be fetched: try again.
    let gone = format!("{}/SimpleNotificationService-gone.pem", stack.aws_url);
    let (status, body) = post_sns(
        &stack,
        &sns_notification(&stack, "answers-2", &topic(CLASSIC), &gone),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    // Forged (the signature of another message): refused for good.
    let mut forged = sns_notification(&stack, "answers-3", &topic(CLASSIC), &cert);
    forged["Signature"] = unknown["Signature"].clone();
    let (status, _) = post_sns(&stack, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Signed but unreadable: malformed.
    let mut garbled = sns_notification(&stack, "answers-4", &topic(CLASSIC), &cert);
    garbled["Message"] = Value::String("not json".into());
    let data = string_to_sign(garbled.as_object().unwrap());
    garbled["Signature"] = Value::String(signer().unwrap().sign(2, data.as_bytes()));
    let (status, body) = post_sns(&stack, &garbled).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed");

    assert_eq!(stored(&stack).await, 0, "nothing refused is stored");
    // The same delivery for a configured topic is taken.
    let good = sns_notification(&stack, "answers-5", &topic(CLASSIC), &cert);
    let (status, body) = post_sns(&stack, &good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stored(&stack).await, 1);
}

fn agreement_event(id: &str, at: OffsetDateTime) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Purchase Agreement Amended - Manufacturer",
        "source": "aws.agreement-marketplace",
        "account": "111122223333",
        "time": rfc3339(at),
        "region": "us-east-1",
        "resources": ["arn:aws:aws-marketplace::111122223333:AWSMarketplace/Agreement/agmt-answers"],
        "detail": {
            "requestId": "answers",
            "agreement": {"id": "agmt-answers", "status": "ACTIVE"},
            "product": {"code": CONCURRENT}
        }
    })
}

async fn post_event(stack: &Stack, event: &Value) -> (StatusCode, Value) {
    let response = browser()
        .post(format!("{}/aws/events", stack.app_url))
        .header("x-marketlink-eventbridge-secret", SECRET)
        .json(event)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// EventBridge retries an API destination for up to 24 hours (its default maximum event age):
/// a retry of an event up to a day old is taken, once.
#[tokio::test]
async fn eventbridge_retries_within_a_day_are_taken_once() {
    let stack = stack().await;
    let now = marketlink_core::Clock::now(&marketlink_core::SystemClock);
    let late = agreement_event("answers-late", now - Duration::hours(23));
    let (status, body) = post_event(&stack, &late).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "stored");
    let (status, body) = post_event(&stack, &late).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "duplicate");

    let (status, _) = post_event(
        &stack,
        &agreement_event("answers-stale", now - Duration::hours(25)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored(&stack).await, 1);
}
