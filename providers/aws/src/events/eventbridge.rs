//! EventBridge `aws.agreement-marketplace` events: License Updated/Deprovisioned and Purchase
//! Agreement Created/Amended/Ended, each tied to the subscription it is about (the LicenseArn
//! and agreement ids we know, else the Agreement API and GetEntitlements).

use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use marketlink_core::{EventKind, ExternalRef, Lifecycle, MarketplaceEvent, ProviderError, Term};
use serde_json::Value;
use time::OffsetDateTime;

use super::{entitlements_changed, lifecycle, malformed, parse_time, str_at};
use crate::{
    AwsProvider,
    config::{IdentityMode, NotificationMode, ProductConfig},
    refs::{classic_ref, concurrent_ref},
};

/// The detail-type without its ` - Manufacturer` / ` - Proposer` suffix.
fn base_detail_type(detail_type: &str) -> &str {
    detail_type
        .strip_suffix(" - Manufacturer")
        .or_else(|| detail_type.strip_suffix(" - Proposer"))
        .unwrap_or(detail_type)
}

/// What every agreement event carries.
struct AgreementEvent<'a> {
    detail_type: &'a str,
    occurred_at: OffsetDateTime,
    detail: &'a Value,
    agreement_id: &'a str,
}

impl AgreementEvent<'_> {
    fn lifecycle(&self, subscription: ExternalRef, event: Lifecycle) -> MarketplaceEvent {
        lifecycle(
            subscription,
            self.occurred_at,
            event,
            self.detail_type,
            None,
        )
    }

    /// No events: we cannot tell which subscription the event is about.
    fn unresolved(&self) -> Vec<MarketplaceEvent> {
        tracing::warn!(
            detail_type = self.detail_type,
            agreement_id = self.agreement_id,
            "cannot tell which subscription this agreement event is about (no LicenseArn known for the agreement); ignored"
        );
        Vec::new()
    }
}

impl AwsProvider {
    pub(super) async fn interpret_event(
        &self,
        event: &Value,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let detail_type = str_at(event, "/detail-type").unwrap_or("");
        let occurred_at = str_at(event, "/time")
            .and_then(parse_time)
            .ok_or_else(|| malformed("event without time"))?;
        let detail = event
            .get("detail")
            .ok_or_else(|| malformed("event without detail"))?;
        let agreement_id = str_at(detail, "/agreement/id")
            .ok_or_else(|| malformed("event without detail.agreement.id"))?;
        let event = AgreementEvent {
            detail_type,
            occurred_at,
            detail,
            agreement_id,
        };
        match base_detail_type(detail_type) {
            "License Updated" => self.license_updated(&event).await,
            "License Deprovisioned" => self.license_deprovisioned(&event).await,
            "Purchase Agreement Ended" => self.agreement_ended(&event).await,
            "Purchase Agreement Amended" => self.agreement_amended(&event).await,
            "Purchase Agreement Created" => self.agreement_created(&event).await,
            _ => {
                tracing::debug!(detail_type, "EventBridge event without subscription effect");
                Ok(Vec::new())
            }
        }
    }

    /// Activate (with the free trial from the agreement terms) and the current entitlements.
    async fn license_updated(
        &self,
        event: &AgreementEvent<'_>,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let agreement_id = event.agreement_id;
        let Some(subscription) = self.event_subscription(event.detail, agreement_id).await? else {
            return Ok(event.unresolved());
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
                event.occurred_at,
                Lifecycle::Activate,
                event.detail_type,
                free_trial,
            ),
            entitlements_changed(subscription, event.occurred_at, entitlements),
        ])
    }

    async fn license_deprovisioned(
        &self,
        event: &AgreementEvent<'_>,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let Some(subscription) = self
            .event_subscription(event.detail, event.agreement_id)
            .await?
        else {
            return Ok(event.unresolved());
        };
        Ok(vec![event.lifecycle(subscription, Lifecycle::Cancel)])
    }

    /// An agreement that ends for good starts the final metering window; one superseded by a
    /// successor ends nothing.
    async fn agreement_ended(
        &self,
        event: &AgreementEvent<'_>,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let agreement_id = event.agreement_id;
        let status = str_at(event.detail, "/agreement/status").unwrap_or("");
        if matches!(
            status,
            "RENEWED" | "REPLACED" | "SUPERSEDED" | "ROLLED_BACK" | "ARCHIVED"
        ) {
            tracing::info!(agreement_id, status, "agreement superseded; nothing ends");
            return Ok(Vec::new());
        }
        let Some(subscription) = self.event_subscription(event.detail, agreement_id).await? else {
            return Ok(event.unresolved());
        };
        Ok(vec![lifecycle(
            subscription,
            event.occurred_at,
            Lifecycle::BeginCancel,
            &format!("{} ({status})", event.detail_type),
            None,
        )])
    }

    async fn agreement_amended(
        &self,
        event: &AgreementEvent<'_>,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let Some(subscription) = self
            .event_subscription(event.detail, event.agreement_id)
            .await?
        else {
            // License Updated follows an amendment and carries the LicenseArn.
            return Ok(event.unresolved());
        };
        let entitlements = self.get_entitlements(&subscription).await?;
        Ok(vec![entitlements_changed(
            subscription,
            event.occurred_at,
            entitlements,
        )])
    }

    /// A renewal continues the previous agreement's subscription with a new term; a new or
    /// replacing agreement grants nothing before License Updated.
    async fn agreement_created(
        &self,
        event: &AgreementEvent<'_>,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let (detail, agreement_id) = (event.detail, event.agreement_id);
        let intent = str_at(detail, "/agreement/intent").unwrap_or("NEW");
        if intent != "RENEW" {
            return Ok(Vec::new());
        }
        let previous = str_at(detail, "/agreement/previousAgreementId");
        let subscription = match previous.and_then(|p| self.known.by_agreement(p)) {
            Some(s) => Some(s),
            None => self.event_subscription(detail, agreement_id).await?,
        };
        let Some(subscription) = subscription else {
            return Ok(event.unresolved());
        };
        self.known.remember(Some(agreement_id), &subscription);
        let term = Term {
            start: str_at(detail, "/agreement/startTime").and_then(parse_time),
            end: str_at(detail, "/agreement/endTime").and_then(parse_time),
            unit: None,
        };
        Ok(vec![MarketplaceEvent {
            subscription,
            occurred_at: event.occurred_at,
            kind: EventKind::Renewed { term: Some(term) },
            free_trial: None,
            aliases: Vec::new(),
        }])
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
            (Some(l), Some(code)) => (l.to_owned(), self.config.require_product(code)?.clone()),
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
