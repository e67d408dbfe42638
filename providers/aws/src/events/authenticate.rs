//! Authentication of inbound AWS messages: SNS envelopes (signature, topic, freshness) over
//! HTTP or SQS, and EventBridge events over SQS (the queue policy) or an API destination (the
//! shared-secret header).

use marketlink_core::{AuthenticatedMessage, InboundMessage, Marketplace, ProviderError};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::{malformed, parse_time, str_at, unauthenticated};
use crate::{AwsProvider, CHANNEL_EVENTBRIDGE_HTTP, CHANNEL_SNS_HTTP, CHANNEL_SQS};

const EVENT_SOURCE: &str = "aws.agreement-marketplace";

/// The SNS HTTP headers must agree with the envelope they carry.
fn check_sns_headers(
    message: &InboundMessage,
    envelope: &Map<String, Value>,
) -> Result<(), ProviderError> {
    let kind = envelope.get("Type").and_then(Value::as_str).unwrap_or("");
    match message.header("x-amz-sns-message-type") {
        Some(h) if h == kind => {}
        Some(h) => {
            return Err(unauthenticated(format!(
                "x-amz-sns-message-type {h:?} does not match Type {kind:?}"
            )));
        }
        None => return Err(unauthenticated("missing x-amz-sns-message-type header")),
    }
    for (header, key) in [
        ("x-amz-sns-topic-arn", "TopicArn"),
        ("x-amz-sns-message-id", "MessageId"),
    ] {
        if let Some(h) = message.header(header)
            && envelope.get(key).and_then(Value::as_str) != Some(h)
        {
            return Err(unauthenticated(format!("{header} does not match {key}")));
        }
    }
    Ok(())
}

/// The body of every AWS message: a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ProviderError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| unauthenticated(format!("body is not JSON: {e}")))?;
    match body {
        Value::Object(object) => Ok(object),
        _ => Err(unauthenticated("body is not a JSON object")),
    }
}

/// What an SQS message body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// An SNS envelope (its signature is checked next).
    Sns,
    /// An EventBridge event.
    Event,
}

pub(crate) fn queued_kind(object: &Map<String, Value>) -> Result<Queued, ProviderError> {
    if object.contains_key("Signature") && object.contains_key("Type") {
        Ok(Queued::Sns)
    } else if object.contains_key("detail-type") {
        Ok(Queued::Event)
    } else {
        Err(unauthenticated(
            "SQS message is neither a signed SNS envelope nor an EventBridge event (raw message delivery must be off)",
        ))
    }
}

/// A non-empty string member of an SNS envelope.
pub(crate) fn sns_field<'a>(
    envelope: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, ProviderError> {
    envelope
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthenticated(format!("SNS message without {key}")))
}

/// The members of an SNS envelope read before its signature is checked.
#[derive(Debug)]
pub(crate) struct SnsHead {
    pub kind: String,
    pub message_id: String,
    pub timestamp: OffsetDateTime,
}

pub(crate) fn sns_head(envelope: &Map<String, Value>) -> Result<SnsHead, ProviderError> {
    let kind = sns_field(envelope, "Type")?.to_owned();
    let message_id = sns_field(envelope, "MessageId")?.to_owned();
    sns_field(envelope, "TopicArn")?;
    let timestamp = parse_time(sns_field(envelope, "Timestamp")?)
        .ok_or_else(|| unauthenticated("SNS Timestamp is not RFC 3339"))?;
    Ok(SnsHead {
        kind,
        message_id,
        timestamp,
    })
}

/// The JSON a Notification's `Message` carries, and its `action`.
pub(crate) fn notification_message(text: &str) -> Result<(String, Value), ProviderError> {
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("SNS Message is not JSON: {e}")))?;
    let action = str_at(&parsed, "/action")
        .ok_or_else(|| malformed("SNS Message without action"))?
        .to_owned();
    Ok((action, parsed))
}

/// The members of an EventBridge event read when it arrives.
#[derive(Debug)]
pub(crate) struct EventHead<'a> {
    pub id: &'a str,
    pub detail_type: &'a str,
    pub at: OffsetDateTime,
}

/// Source, id, detail-type, account (when the seller's is configured) and time of an event.
pub(crate) fn event_head<'a>(
    event: &'a Value,
    seller_account_id: Option<&str>,
) -> Result<EventHead<'a>, ProviderError> {
    let source = str_at(event, "/source").unwrap_or("");
    if source != EVENT_SOURCE {
        return Err(unauthenticated(format!(
            "EventBridge source {source:?} is not {EVENT_SOURCE}"
        )));
    }
    let id = str_at(event, "/id").ok_or_else(|| unauthenticated("event without id"))?;
    let detail_type = str_at(event, "/detail-type")
        .ok_or_else(|| unauthenticated("event without detail-type"))?;
    if let Some(expected) = seller_account_id
        && str_at(event, "/account") != Some(expected)
    {
        return Err(unauthenticated(format!(
            "event for account {:?}, not the seller account {expected}",
            str_at(event, "/account")
        )));
    }
    let at = str_at(event, "/time")
        .and_then(parse_time)
        .ok_or_else(|| unauthenticated("event without an RFC 3339 time"))?;
    Ok(EventHead {
        id,
        detail_type,
        at,
    })
}

impl AwsProvider {
    pub(crate) async fn authenticate_message(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let object = json_object(&message.body)?;
        match message.channel.as_str() {
            CHANNEL_SNS_HTTP => {
                check_sns_headers(message, &object)?;
                self.authenticate_sns(object, CHANNEL_SNS_HTTP, self.config.max_message_age_secs)
                    .await
            }
            CHANNEL_SQS => self.authenticate_queued(object).await,
            CHANNEL_EVENTBRIDGE_HTTP | "eventbridge" => {
                self.check_eventbridge_secret(message)?;
                self.authenticate_event(
                    object,
                    CHANNEL_EVENTBRIDGE_HTTP,
                    self.config.max_event_age_secs,
                )
            }
            other => Err(unauthenticated(format!(
                "unknown AWS channel {other:?} (expected sns-http, sqs or eventbridge-http)"
            ))),
        }
    }

    /// A message from SQS: an SNS envelope (signed) or an EventBridge event.
    async fn authenticate_queued(
        &self,
        object: Map<String, Value>,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let max_age = self.config.max_queued_message_age_secs;
        match queued_kind(&object)? {
            Queued::Sns => self.authenticate_sns(object, CHANNEL_SQS, max_age).await,
            // The queue's access policy (only EventBridge may send) is the authentication.
            Queued::Event => self.authenticate_event(object, CHANNEL_SQS, max_age),
        }
    }

    /// The API destination's connection sends the shared secret in a header.
    fn check_eventbridge_secret(&self, message: &InboundMessage) -> Result<(), ProviderError> {
        let Some(secret) = &self.config.eventbridge_secret else {
            return Err(unauthenticated(
                "EventBridge over HTTPS is not configured (aws.eventbridge_secret)",
            ));
        };
        let given = message
            .header(&self.config.eventbridge_secret_header)
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(secret.expose().as_bytes())) {
            return Err(unauthenticated(format!(
                "missing or wrong {} header",
                self.config.eventbridge_secret_header
            )));
        }
        Ok(())
    }

    fn check_fresh(
        &self,
        at: OffsetDateTime,
        max_age_secs: u64,
        what: &str,
    ) -> Result<(), ProviderError> {
        let now = self.clock.now();
        let max_age = time::Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX));
        let skew = time::Duration::seconds(
            i64::try_from(self.config.max_future_skew_secs).unwrap_or(i64::MAX),
        );
        if now - at > max_age {
            return Err(unauthenticated(format!(
                "{what} is stale: sent at {at}, more than {max_age_secs} s ago"
            )));
        }
        if at - now > skew {
            return Err(unauthenticated(format!(
                "{what} is dated in the future ({at})"
            )));
        }
        Ok(())
    }

    async fn authenticate_sns(
        &self,
        envelope: Map<String, Value>,
        channel: &str,
        max_age_secs: u64,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let SnsHead {
            kind,
            message_id,
            timestamp,
        } = sns_head(&envelope)?;
        let topic = sns_field(&envelope, "TopicArn")?;
        self.check_fresh(timestamp, max_age_secs, "SNS message")?;
        if kind != "Notification" {
            self.sns
                .check_url(sns_field(&envelope, "SubscribeURL")?, "SubscribeURL")?;
        }
        self.sns.verify(&envelope).await?;
        // Signed by SNS, so genuine: a topic we do not know yet is our configuration's gap, and
        // a Configuration error is answered 5xx so that SNS delivers it again.
        let Some((product, _)) = self.config.product_for_topic(topic) else {
            return Err(ProviderError::Configuration(format!(
                "SNS topic {topic} is not a topic of a configured product (aws.products)"
            )));
        };
        let product_code = product.product_code.clone();

        let (label, parsed) = if kind == "Notification" {
            let (action, parsed) = notification_message(sns_field(&envelope, "Message")?)?;
            if let Some(code) = str_at(&parsed, "/product-code")
                && code != product_code
            {
                return Err(unauthenticated(format!(
                    "product-code {code} does not belong to topic {topic}"
                )));
            }
            (action, parsed)
        } else {
            (kind.clone(), Value::Null)
        };
        Ok(AuthenticatedMessage {
            marketplace: Marketplace::AWS,
            dedup_key: message_id,
            kind: label,
            received_at: self.clock.now(),
            payload: json!({
                "source": "sns",
                "channel": channel,
                "envelope": Value::Object(envelope),
                "message": parsed,
            }),
        })
    }

    fn authenticate_event(
        &self,
        event: Map<String, Value>,
        channel: &str,
        max_age_secs: u64,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let event = Value::Object(event);
        let EventHead {
            id,
            detail_type,
            at,
        } = event_head(&event, self.config.seller_account_id.as_deref())?;
        self.check_fresh(at, max_age_secs, "EventBridge event")?;
        // Events of the seller's other products are genuine too (the rule is per account):
        // taken, and left alone when interpreted.
        Ok(AuthenticatedMessage {
            marketplace: Marketplace::AWS,
            dedup_key: id.to_owned(),
            kind: detail_type.to_owned(),
            received_at: self.clock.now(),
            payload: json!({"source": "eventbridge", "channel": channel, "event": event}),
        })
    }
}
