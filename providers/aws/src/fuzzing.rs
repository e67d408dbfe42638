//! Entry points for the fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): the parsers of
//! outside input (SNS envelopes, EventBridge events, SQS bodies), reached without network,
//! clock or configuration. Not an API: hidden from the docs and free to change with the targets.

use marketlink_core::ProviderError;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{
    agreement::superseded_status,
    events::{
        AgreementEvent,
        authenticate::{
            Queued, event_head, json_object, notification_message, queued_kind, sns_field, sns_head,
        },
        eventbridge::base_detail_type,
        str_at,
    },
    identity::license_key,
    sns::SnsVerifier,
};

/// What authentication reads from an SNS envelope, each step's answer kept.
#[derive(Debug)]
pub struct SnsEnvelope {
    pub envelope: Map<String, Value>,
    pub kind: String,
    pub message_id: String,
    pub topic: String,
    pub timestamp: OffsetDateTime,
    /// A confirmation's checked SubscribeURL; `None` for a Notification.
    pub subscribe_url: Option<Result<url::Url, ProviderError>>,
    /// The string to sign and signature version, before the certificate is fetched.
    pub signed: Result<(String, String), ProviderError>,
    /// The checked SigningCertURL, when the signed parts were read.
    pub cert_url: Option<Result<url::Url, ProviderError>>,
    /// A Notification's `action` and Message JSON; `None` for a confirmation.
    pub message: Option<Result<(String, Value), ProviderError>>,
}

/// An SNS envelope as the `/aws/sns` endpoint reads it, up to the certificate download.
pub fn sns_envelope(verifier: &SnsVerifier, body: &[u8]) -> Result<SnsEnvelope, ProviderError> {
    sns_object(verifier, json_object(body)?)
}

fn sns_object(
    verifier: &SnsVerifier,
    envelope: Map<String, Value>,
) -> Result<SnsEnvelope, ProviderError> {
    let head = sns_head(&envelope)?;
    let topic = sns_field(&envelope, "TopicArn")?.to_owned();
    let notification = head.kind == "Notification";
    let subscribe_url = (!notification).then(|| {
        sns_field(&envelope, "SubscribeURL").and_then(|u| verifier.check_url(u, "SubscribeURL"))
    });
    let parts = verifier.signed_parts(&envelope);
    let cert_url = parts
        .as_ref()
        .ok()
        .map(|p| verifier.check_cert_url(p.cert_url));
    let signed = parts.map(|p| (p.data, p.version.to_owned()));
    let message =
        notification.then(|| sns_field(&envelope, "Message").and_then(notification_message));
    Ok(SnsEnvelope {
        kind: head.kind,
        message_id: head.message_id,
        timestamp: head.timestamp,
        topic,
        subscribe_url,
        signed,
        cert_url,
        message,
        envelope,
    })
}

/// What an EventBridge event says, as authentication and interpretation read it.
#[derive(Debug)]
pub struct EventBridgeEvent {
    pub id: String,
    pub detail_type: String,
    pub at: OffsetDateTime,
    /// The agreement members interpretation reads, or why it cannot.
    pub agreement: Result<AgreementFacts, ProviderError>,
}

/// The members of an agreement event that decide what it does.
#[derive(Debug)]
pub struct AgreementFacts {
    pub base_detail_type: String,
    pub occurred_at: OffsetDateTime,
    pub agreement_id: String,
    /// `license.arn` in its canonical spelling, and the licence id compared across spellings.
    pub license: Option<(String, String)>,
    pub superseded: bool,
    pub previous_agreement_id: Option<String>,
    pub product_code: Option<String>,
    pub product_id: Option<String>,
    pub acceptor_account_id: Option<String>,
}

/// An event as the `/aws/events` endpoint (or SQS) reads it.
pub fn eventbridge_event(
    body: &[u8],
    seller_account_id: Option<&str>,
) -> Result<EventBridgeEvent, ProviderError> {
    event_object(Value::Object(json_object(body)?), seller_account_id)
}

fn event_object(
    event: Value,
    seller_account_id: Option<&str>,
) -> Result<EventBridgeEvent, ProviderError> {
    let head = event_head(&event, seller_account_id)?;
    let agreement = AgreementEvent::read(&event).map(|a| {
        let text = |pointer: &str| str_at(a.detail, pointer).map(str::to_owned);
        AgreementFacts {
            base_detail_type: base_detail_type(a.detail_type).to_owned(),
            occurred_at: a.occurred_at,
            agreement_id: a.agreement_id.to_owned(),
            license: a.license_arn().map(|arn| {
                let key = license_key(&arn).to_owned();
                (arn, key)
            }),
            superseded: superseded_status(str_at(a.detail, "/agreement/status").unwrap_or("")),
            previous_agreement_id: text("/agreement/previousAgreementId"),
            product_code: text("/product/code"),
            product_id: text("/product/id"),
            acceptor_account_id: text("/acceptor/accountId"),
        }
    });
    Ok(EventBridgeEvent {
        id: head.id.to_owned(),
        detail_type: head.detail_type.to_owned(),
        at: head.at,
        agreement,
    })
}

/// What an SQS message body turned out to be.
#[derive(Debug)]
pub enum SqsBody {
    Sns(Box<SnsEnvelope>),
    Event(Box<EventBridgeEvent>),
}

/// A message pulled from SQS, as the `sqs` channel reads it.
pub fn sqs_body(
    verifier: &SnsVerifier,
    body: &[u8],
    seller_account_id: Option<&str>,
) -> Result<SqsBody, ProviderError> {
    let object = json_object(body)?;
    Ok(match queued_kind(&object)? {
        Queued::Sns => SqsBody::Sns(Box::new(sns_object(verifier, object)?)),
        Queued::Event => SqsBody::Event(Box::new(event_object(
            Value::Object(object),
            seller_account_id,
        )?)),
    })
}

/// The landing token among a landing request's fields.
pub fn landing_token(fields: &[(String, String)]) -> Option<String> {
    crate::resolve::landing_token(fields).map(|t| t.token)
}
