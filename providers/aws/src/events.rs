//! Inbound messages: authentication (SNS envelopes, EventBridge events) and interpretation into
//! domain events.
//!
//! Mapping (aws.md, aws-eventbridge.md §4):
//! | message | events |
//! |---|---|
//! | SNS `subscribe-success` | Lifecycle Activate (+ `free_trial` from `isFreeTrialTermPresent`) |
//! | SNS `subscribe-fail` | Lifecycle Fail |
//! | SNS `unsubscribe-pending` | Lifecycle BeginCancel (final metering window) |
//! | SNS `unsubscribe-success` | Lifecycle Cancel |
//! | SNS `entitlement-updated` | EntitlementsChanged (GetEntitlements, full set) |
//! | SNS SubscriptionConfirmation | none; the SubscribeURL is fetched (confirmed) |
//! | EB Purchase Agreement Created, intent NEW/REPLACE | none (do not grant before License Updated) |
//! | EB Purchase Agreement Created, intent RENEW | Renewed { term } |
//! | EB License Updated | Lifecycle Activate (+ free trial from GetAgreementTerms) + EntitlementsChanged |
//! | EB Purchase Agreement Amended | EntitlementsChanged (re-read) |
//! | EB Purchase Agreement Ended (CANCELLED/EXPIRED/TERMINATED) | Lifecycle BeginCancel (final metering window) |
//! | EB Purchase Agreement Ended (RENEWED/REPLACED/…) | none (a successor agreement continues) |
//! | EB License Deprovisioned | Lifecycle Cancel |
//!
//! Ended → BeginCancel and Deprovisioned → Cancel follow the current AWS text (aws-eventbridge.md
//! §4: Ended starts the one-hour final-metering window, Deprovisioned closes it) and the sandbox
//! (unsubscribe-pending ≙ Ended, unsubscribe-success ≙ Deprovisioned). The reverse mapping
//! would cancel first and then meet an illegal Cancelled → BeginCancel transition.

use marketlink_core::{
    AuthenticatedMessage, EventKind, ExternalRef, InboundMessage, Lifecycle, Marketplace,
    MarketplaceEvent, ProviderError, Term,
};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    AwsProvider, CHANNEL_EVENTBRIDGE_HTTP, CHANNEL_SNS_HTTP, CHANNEL_SQS,
    config::{IdentityMode, NotificationMode, ProductConfig, TopicKind},
    metering::{classic_ref, concurrent_ref},
};

const EVENT_SOURCE: &str = "aws.agreement-marketplace";

fn unauthenticated(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unauthenticated(reason.into())
}

fn malformed(reason: impl Into<String>) -> ProviderError {
    ProviderError::Rejected {
        code: "MalformedMessage".into(),
        message: reason.into(),
    }
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The detail-type without its ` - Manufacturer` / ` - Proposer` suffix.
fn base_detail_type(detail_type: &str) -> &str {
    detail_type
        .strip_suffix(" - Manufacturer")
        .or_else(|| detail_type.strip_suffix(" - Proposer"))
        .unwrap_or(detail_type)
}

fn lifecycle(
    subscription: ExternalRef,
    occurred_at: OffsetDateTime,
    event: Lifecycle,
    reason: &str,
    free_trial: Option<bool>,
) -> MarketplaceEvent {
    MarketplaceEvent {
        subscription,
        occurred_at,
        kind: EventKind::Lifecycle {
            event,
            reason: Some(reason.to_owned()),
        },
        free_trial,
    }
}

impl AwsProvider {
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

    pub(crate) async fn authenticate_message(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let body: Value = serde_json::from_slice(&message.body)
            .map_err(|e| unauthenticated(format!("body is not JSON: {e}")))?;
        let Value::Object(object) = body else {
            return Err(unauthenticated("body is not a JSON object"));
        };
        match message.channel.as_str() {
            CHANNEL_SNS_HTTP => {
                let kind = object.get("Type").and_then(Value::as_str).unwrap_or("");
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
                        && object.get(key).and_then(Value::as_str) != Some(h)
                    {
                        return Err(unauthenticated(format!("{header} does not match {key}")));
                    }
                }
                self.authenticate_sns(object, CHANNEL_SNS_HTTP, self.config.max_message_age_secs)
                    .await
            }
            CHANNEL_SQS => {
                if object.contains_key("Signature") && object.contains_key("Type") {
                    self.authenticate_sns(
                        object,
                        CHANNEL_SQS,
                        self.config.max_queued_message_age_secs,
                    )
                    .await
                } else if object.contains_key("detail-type") {
                    // The queue's access policy (only EventBridge may send) is the authentication.
                    self.authenticate_event(
                        object,
                        CHANNEL_SQS,
                        self.config.max_queued_message_age_secs,
                    )
                } else {
                    Err(unauthenticated(
                        "SQS message is neither a signed SNS envelope nor an EventBridge event (raw message delivery must be off)",
                    ))
                }
            }
            CHANNEL_EVENTBRIDGE_HTTP | "eventbridge" => {
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
                self.authenticate_event(
                    object,
                    CHANNEL_EVENTBRIDGE_HTTP,
                    self.config.max_message_age_secs,
                )
            }
            other => Err(unauthenticated(format!(
                "unknown AWS channel {other:?} (expected sns-http, sqs or eventbridge-http)"
            ))),
        }
    }

    async fn authenticate_sns(
        &self,
        envelope: Map<String, Value>,
        channel: &str,
        max_age_secs: u64,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        let field = |k: &str| {
            envelope
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| unauthenticated(format!("SNS message without {k}")))
        };
        let kind = field("Type")?.to_owned();
        let message_id = field("MessageId")?.to_owned();
        let topic = field("TopicArn")?;
        let Some((product, _)) = self.config.product_for_topic(topic) else {
            return Err(unauthenticated(format!(
                "SNS topic {topic} is not a topic of a configured product"
            )));
        };
        let product_code = product.product_code.clone();
        let timestamp = parse_time(field("Timestamp")?)
            .ok_or_else(|| unauthenticated("SNS Timestamp is not RFC 3339"))?;
        self.check_fresh(timestamp, max_age_secs, "SNS message")?;
        if kind != "Notification" {
            self.sns.check_url(field("SubscribeURL")?, "SubscribeURL")?;
        }
        self.sns.verify(&envelope).await?;

        let (label, parsed) = if kind == "Notification" {
            let parsed: Value = serde_json::from_str(field("Message")?)
                .map_err(|e| malformed(format!("SNS Message is not JSON: {e}")))?;
            let action = str_at(&parsed, "/action")
                .ok_or_else(|| malformed("SNS Message without action"))?
                .to_owned();
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
        let source = str_at(&event, "/source").unwrap_or("");
        if source != EVENT_SOURCE {
            return Err(unauthenticated(format!(
                "EventBridge source {source:?} is not {EVENT_SOURCE}"
            )));
        }
        let id = str_at(&event, "/id").ok_or_else(|| unauthenticated("event without id"))?;
        let detail_type = str_at(&event, "/detail-type")
            .ok_or_else(|| unauthenticated("event without detail-type"))?;
        if let Some(expected) = &self.config.seller_account_id
            && str_at(&event, "/account") != Some(expected.as_str())
        {
            return Err(unauthenticated(format!(
                "event for account {:?}, not the seller account {expected}",
                str_at(&event, "/account")
            )));
        }
        let at = str_at(&event, "/time")
            .and_then(parse_time)
            .ok_or_else(|| unauthenticated("event without an RFC 3339 time"))?;
        self.check_fresh(at, max_age_secs, "EventBridge event")?;
        if let Some(code) = str_at(&event, "/detail/product/code")
            && self.config.product(code).is_none()
        {
            return Err(unauthenticated(format!(
                "event for product {code}, which is not configured"
            )));
        }
        Ok(AuthenticatedMessage {
            marketplace: Marketplace::AWS,
            dedup_key: id.to_owned(),
            kind: detail_type.to_owned(),
            received_at: self.clock.now(),
            payload: json!({"source": "eventbridge", "channel": channel, "event": event}),
        })
    }

    // ------------------------------------------------------------------ interpret

    pub(crate) async fn interpret_message(
        &self,
        message: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        match str_at(&message.payload, "/source") {
            Some("sns") => self.interpret_sns(&message.payload).await,
            Some("eventbridge") => match message.payload.get("event") {
                Some(event) => self.interpret_event(event).await,
                None => Err(malformed("stored EventBridge payload without event")),
            },
            other => Err(malformed(format!(
                "stored AWS payload of unknown source {other:?}"
            ))),
        }
    }

    async fn interpret_sns(&self, payload: &Value) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let envelope = payload
            .get("envelope")
            .ok_or_else(|| malformed("stored SNS payload without envelope"))?;
        let kind = str_at(envelope, "/Type").unwrap_or("");
        match kind {
            "SubscriptionConfirmation" => {
                let url = str_at(envelope, "/SubscribeURL")
                    .ok_or_else(|| malformed("SubscriptionConfirmation without SubscribeURL"))?;
                self.sns.confirm(url).await?;
                tracing::info!(
                    topic = str_at(envelope, "/TopicArn"),
                    "SNS subscription confirmed"
                );
                return Ok(Vec::new());
            }
            "Notification" => {}
            other => {
                tracing::warn!(kind = other, "SNS message ignored");
                return Ok(Vec::new());
            }
        }
        let topic = str_at(envelope, "/TopicArn").unwrap_or("");
        let (product, topic_kind) = self.config.product_for_topic(topic).ok_or_else(|| {
            ProviderError::Configuration(format!("topic {topic} is no longer configured"))
        })?;
        let occurred_at = str_at(envelope, "/Timestamp")
            .and_then(parse_time)
            .ok_or_else(|| malformed("SNS envelope without Timestamp"))?;
        let message = payload
            .get("message")
            .ok_or_else(|| malformed("stored SNS payload without message"))?;
        let action = str_at(message, "/action").unwrap_or("");
        let customer = str_at(message, "/customer-identifier")
            .ok_or_else(|| malformed("SNS message without customer-identifier"))?;
        let classic_id = ExternalRef::aws_classic_id(customer, &product.product_code);
        let subscription = self
            .known
            .by_external_id(&classic_id)
            .unwrap_or_else(|| classic_ref(customer, &product.product_code, None, None));
        let event = |l: Lifecycle, free_trial: Option<bool>| {
            vec![lifecycle(
                subscription.clone(),
                occurred_at,
                l,
                action,
                free_trial,
            )]
        };
        Ok(match (topic_kind, action) {
            (TopicKind::Subscription, "subscribe-success") => {
                let trial = str_at(message, "/isFreeTrialTermPresent") == Some("true");
                event(Lifecycle::Activate, Some(trial))
            }
            (TopicKind::Subscription, "subscribe-fail") => event(Lifecycle::Fail, None),
            (TopicKind::Subscription, "unsubscribe-pending") => event(Lifecycle::BeginCancel, None),
            (TopicKind::Subscription, "unsubscribe-success") => event(Lifecycle::Cancel, None),
            (_, "entitlement-updated") => {
                let entitlements = self.get_entitlements(&subscription).await?;
                vec![MarketplaceEvent {
                    subscription,
                    occurred_at,
                    kind: EventKind::EntitlementsChanged { entitlements },
                    free_trial: None,
                }]
            }
            (_, other) => {
                tracing::warn!(action = other, topic, "SNS action not understood; ignored");
                Vec::new()
            }
        })
    }

    async fn interpret_event(&self, event: &Value) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let detail_type = str_at(event, "/detail-type").unwrap_or("");
        let occurred_at = str_at(event, "/time")
            .and_then(parse_time)
            .ok_or_else(|| malformed("event without time"))?;
        let detail = event
            .get("detail")
            .ok_or_else(|| malformed("event without detail"))?;
        let agreement_id = str_at(detail, "/agreement/id")
            .ok_or_else(|| malformed("event without detail.agreement.id"))?;
        let base = base_detail_type(detail_type);
        let unresolved = || {
            tracing::warn!(
                detail_type,
                agreement_id,
                "cannot tell which subscription this agreement event is about (no LicenseArn known for the agreement); ignored"
            );
            Ok(Vec::new())
        };
        match base {
            "License Updated" => {
                let Some(subscription) = self.event_subscription(detail, agreement_id).await?
                else {
                    return unresolved();
                };
                let free_trial = match self.agreement_facts(agreement_id).await {
                    Ok(facts) => Some(facts.free_trial),
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(agreement_id, error = %e, "free trial unknown: agreement terms unreadable");
                        None
                    }
                };
                let entitlements = self.get_entitlements(&subscription).await?;
                Ok(vec![
                    lifecycle(
                        subscription.clone(),
                        occurred_at,
                        Lifecycle::Activate,
                        detail_type,
                        free_trial,
                    ),
                    MarketplaceEvent {
                        subscription,
                        occurred_at,
                        kind: EventKind::EntitlementsChanged { entitlements },
                        free_trial: None,
                    },
                ])
            }
            "License Deprovisioned" => {
                let Some(subscription) = self.event_subscription(detail, agreement_id).await?
                else {
                    return unresolved();
                };
                Ok(vec![lifecycle(
                    subscription,
                    occurred_at,
                    Lifecycle::Cancel,
                    detail_type,
                    None,
                )])
            }
            "Purchase Agreement Ended" => {
                let status = str_at(detail, "/agreement/status").unwrap_or("");
                if matches!(
                    status,
                    "RENEWED" | "REPLACED" | "SUPERSEDED" | "ROLLED_BACK" | "ARCHIVED"
                ) {
                    tracing::info!(agreement_id, status, "agreement superseded; nothing ends");
                    return Ok(Vec::new());
                }
                let Some(subscription) = self.event_subscription(detail, agreement_id).await?
                else {
                    return unresolved();
                };
                Ok(vec![lifecycle(
                    subscription,
                    occurred_at,
                    Lifecycle::BeginCancel,
                    &format!("{detail_type} ({status})"),
                    None,
                )])
            }
            "Purchase Agreement Amended" => {
                let Some(subscription) = self.event_subscription(detail, agreement_id).await?
                else {
                    // License Updated follows an amendment and carries the LicenseArn.
                    return unresolved();
                };
                let entitlements = self.get_entitlements(&subscription).await?;
                Ok(vec![MarketplaceEvent {
                    subscription,
                    occurred_at,
                    kind: EventKind::EntitlementsChanged { entitlements },
                    free_trial: None,
                }])
            }
            "Purchase Agreement Created" => {
                let intent = str_at(detail, "/agreement/intent").unwrap_or("NEW");
                if intent != "RENEW" {
                    // Nothing is granted before License Updated.
                    return Ok(Vec::new());
                }
                let previous = str_at(detail, "/agreement/previousAgreementId");
                let subscription = match previous.and_then(|p| self.known.by_agreement(p)) {
                    Some(s) => Some(s),
                    None => self.event_subscription(detail, agreement_id).await?,
                };
                let Some(subscription) = subscription else {
                    return unresolved();
                };
                self.known.remember(Some(agreement_id), &subscription);
                let term = Term {
                    start: str_at(detail, "/agreement/startTime").and_then(parse_time),
                    end: str_at(detail, "/agreement/endTime").and_then(parse_time),
                    unit: None,
                };
                Ok(vec![MarketplaceEvent {
                    subscription,
                    occurred_at,
                    kind: EventKind::Renewed { term: Some(term) },
                    free_trial: None,
                }])
            }
            _ => {
                tracing::debug!(detail_type, "EventBridge event without subscription effect");
                Ok(Vec::new())
            }
        }
    }

    /// The subscription an EventBridge event is about, built exactly as `resolve` builds it.
    async fn event_subscription(
        &self,
        detail: &Value,
        agreement_id: &str,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        let license = str_at(detail, "/license/arn");
        if let Some(known) = license.and_then(|l| self.known.by_license(l)) {
            self.known.remember(Some(agreement_id), &known);
            return Ok(Some(known));
        }
        if let Some(known) = self.known.by_agreement(agreement_id) {
            return Ok(Some(known));
        }
        let (license, product) = match (license, str_at(detail, "/product/code")) {
            (Some(l), Some(code)) => (l.to_owned(), self.product_config(code)?.clone()),
            _ => {
                let license = match self.license_of_agreement(agreement_id).await {
                    Ok(Some(l)) => l,
                    Ok(None) => return Ok(None),
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(agreement_id, error = %e, "GetAgreementEntitlements failed");
                        return Ok(None);
                    }
                };
                if let Some(known) = self.known.by_license(&license) {
                    self.known.remember(Some(agreement_id), &known);
                    return Ok(Some(known));
                }
                match self.product_of_agreement(agreement_id).await? {
                    Some(p) => (license, p),
                    None => return Ok(None),
                }
            }
        };
        let Some(account) = str_at(detail, "/acceptor/accountId") else {
            return Ok(None);
        };
        let subscription = match product.identity_mode {
            IdentityMode::Concurrent => concurrent_ref(&license, &product.product_code, account),
            IdentityMode::Classic => {
                use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
                let found = self
                    .raw_entitlements(
                        &product.product_code,
                        GetEntitlementFilterName::CustomerAwsAccountId,
                        account.to_owned(),
                    )
                    .await?;
                match found.iter().find_map(|e| e.customer_identifier()) {
                    Some(ci) => {
                        classic_ref(ci, &product.product_code, Some(account), Some(&license))
                    }
                    None => return Ok(None),
                }
            }
        };
        self.known.remember(Some(agreement_id), &subscription);
        Ok(Some(subscription))
    }

    /// Which configured product an agreement is for: the only EventBridge product, or the one
    /// whose `product_id` DescribeAgreement names.
    async fn product_of_agreement(
        &self,
        agreement_id: &str,
    ) -> Result<Option<ProductConfig>, ProviderError> {
        let eventbridge: Vec<&ProductConfig> = self
            .config
            .products
            .iter()
            .filter(|p| p.notification_mode == NotificationMode::Eventbridge)
            .collect();
        if let [only] = eventbridge.as_slice() {
            return Ok(Some((*only).clone()));
        }
        let facts = match self.agreement_facts(agreement_id).await {
            Ok(f) => f,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(agreement_id, error = %e, "DescribeAgreement failed");
                return Ok(None);
            }
        };
        Ok(facts.product_id.and_then(|id| {
            self.config
                .products
                .iter()
                .find(|p| p.product_id.as_deref() == Some(id.as_str()))
                .cloned()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_type_suffixes() {
        assert_eq!(
            base_detail_type("License Updated - Manufacturer"),
            "License Updated"
        );
        assert_eq!(
            base_detail_type("Purchase Agreement Created - Proposer"),
            "Purchase Agreement Created"
        );
        assert_eq!(base_detail_type("Other"), "Other");
    }
}
