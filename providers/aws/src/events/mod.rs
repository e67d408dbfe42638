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
//! | EB Purchase Agreement Created, intent NEW | none (do not grant before License Updated) |
//! | EB Purchase Agreement Created, intent RENEW/REPLACE | Renewed { term } of the predecessor's subscription |
//! | EB License Updated | Lifecycle Activate (+ free trial from GetAgreementTerms) + EntitlementsChanged; first Relicensed when a successor brings a new licence |
//! | EB Purchase Agreement Amended | EntitlementsChanged (re-read) |
//! | EB Purchase Agreement Ended (CANCELLED/EXPIRED/TERMINATED) | Lifecycle BeginCancel (final metering window) |
//! | EB Purchase Agreement Ended (RENEWED/REPLACED/…) | none (a successor agreement continues) |
//! | EB License Deprovisioned | Lifecycle Cancel, unless the licence is a former one or its agreement was superseded |
//! | EB event of a product not configured here | none |
//!
//! Every EventBridge event names its agreement (and licence): those names go with the events as
//! aliases, and the subscription is found through them ([`identify`]).
//!
//! Ended → BeginCancel and Deprovisioned → Cancel follow the current AWS text (aws-eventbridge.md
//! §4: Ended starts the one-hour final-metering window, Deprovisioned closes it) and the sandbox
//! (unsubscribe-pending ≙ Ended, unsubscribe-success ≙ Deprovisioned). The reverse mapping
//! would cancel first and then meet an illegal Cancelled → BeginCancel transition.
//!
//! Authentication is in [`authenticate`]; SNS notifications are read in [`sns_notification`],
//! EventBridge agreement events in [`eventbridge`], tied to their subscription in [`identify`].

pub(crate) mod authenticate;
pub(crate) mod eventbridge;
mod identify;
mod sns_notification;

use marketlink_core::{
    AuthenticatedMessage, Entitlement, EventKind, ExternalRef, Lifecycle, MarketplaceEvent,
    ProviderError, SubscriptionDirectory,
};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::AwsProvider;

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

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What every EventBridge agreement event carries.
pub(crate) struct AgreementEvent<'a> {
    pub(crate) detail_type: &'a str,
    pub(crate) occurred_at: OffsetDateTime,
    pub(crate) detail: &'a Value,
    pub(crate) agreement_id: &'a str,
}

impl<'a> AgreementEvent<'a> {
    /// The members every agreement event must carry.
    pub(crate) fn read(event: &'a Value) -> Result<Self, ProviderError> {
        let detail_type = str_at(event, "/detail-type").unwrap_or("");
        let occurred_at = str_at(event, "/time")
            .and_then(parse_time)
            .ok_or_else(|| malformed("event without time"))?;
        let detail = event
            .get("detail")
            .ok_or_else(|| malformed("event without detail"))?;
        let agreement_id = str_at(detail, "/agreement/id")
            .ok_or_else(|| malformed("event without detail.agreement.id"))?;
        Ok(Self {
            detail_type,
            occurred_at,
            detail,
            agreement_id,
        })
    }

    /// The licence a License event names, in its canonical spelling.
    pub(crate) fn license_arn(&self) -> Option<String> {
        str_at(self.detail, "/license/arn").map(crate::identity::canonical_license_arn)
    }
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
        aliases: Vec::new(),
    }
}

fn entitlements_changed(
    subscription: ExternalRef,
    occurred_at: OffsetDateTime,
    entitlements: Vec<Entitlement>,
) -> MarketplaceEvent {
    MarketplaceEvent {
        subscription,
        occurred_at,
        kind: EventKind::EntitlementsChanged { entitlements },
        free_trial: None,
        aliases: Vec::new(),
    }
}

impl AwsProvider {
    /// Reads a stored message (as `authenticate` stored it) into domain events.
    pub(crate) async fn interpret_message(
        &self,
        message: &AuthenticatedMessage,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        match str_at(&message.payload, "/source") {
            Some("sns") => self.interpret_sns(&message.payload, directory).await,
            Some("eventbridge") => match message.payload.get("event") {
                Some(event) => self.interpret_event(event, directory).await,
                None => Err(malformed("stored EventBridge payload without event")),
            },
            other => Err(malformed(format!(
                "stored AWS payload of unknown source {other:?}"
            ))),
        }
    }
}
