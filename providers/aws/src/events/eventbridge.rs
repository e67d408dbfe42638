//! EventBridge `aws.agreement-marketplace` events: License Updated/Deprovisioned and Purchase
//! Agreement Created/Amended/Ended, each tied to the subscription it is about ([`identify`]).
//!
//! Renewals and replacements continue the same subscription: the successor's agreement id and
//! licence become more of its names, a new LicenseArn moves it ([`EventKind::Relicensed`]),
//! and the end of the superseded agreement or licence ends nothing. AWS delivers these events
//! at least once and in any order, so "superseded" is read from the agreement's own status
//! (DescribeAgreement), not from which event came first.
//!
//! [`identify`]: super::identify

use marketlink_core::{
    Alias, EventKind, ExternalRef, Lifecycle, MarketplaceEvent, ProviderError,
    SubscriptionDirectory, Term,
};
use serde_json::Value;

use super::{
    AgreementEvent, entitlements_changed,
    identify::{Identified, IfUnknown},
    lifecycle, parse_time, str_at,
};
use crate::{AwsProvider, agreement::superseded_status, identity::same_license};

/// The detail-type without its ` - Manufacturer` / ` - Proposer` suffix.
pub(crate) fn base_detail_type(detail_type: &str) -> &str {
    detail_type
        .strip_suffix(" - Manufacturer")
        .or_else(|| detail_type.strip_suffix(" - Proposer"))
        .unwrap_or(detail_type)
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

    /// No events: the event is about nothing we serve.
    fn nothing(&self, why: &str) -> Vec<MarketplaceEvent> {
        tracing::info!(
            detail_type = self.detail_type,
            agreement_id = self.agreement_id,
            why,
            "agreement event changes nothing here"
        );
        Vec::new()
    }
}

/// Every event learned the same names.
fn named(mut events: Vec<MarketplaceEvent>, aliases: &[Alias]) -> Vec<MarketplaceEvent> {
    for event in &mut events {
        event.aliases = aliases.to_vec();
    }
    events
}

/// Does this licence belong to the subscription's past (a renewal moved it on)?
fn former_license(subscription: &ExternalRef, license: Option<&str>) -> bool {
    match (subscription.license_arn.as_deref(), license) {
        (Some(current), Some(named)) => !same_license(current, named),
        _ => false,
    }
}

impl AwsProvider {
    pub(super) async fn interpret_event(
        &self,
        event: &Value,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let event = AgreementEvent::read(event)?;
        let detail_type = event.detail_type;
        match base_detail_type(detail_type) {
            "License Updated" => self.license_updated(&event, directory).await,
            "License Deprovisioned" => self.license_deprovisioned(&event, directory).await,
            "Purchase Agreement Ended" => self.agreement_ended(&event, directory).await,
            "Purchase Agreement Amended" => self.agreement_amended(&event, directory).await,
            "Purchase Agreement Created" => self.agreement_created(&event, directory).await,
            _ => {
                tracing::debug!(detail_type, "EventBridge event without subscription effect");
                Ok(Vec::new())
            }
        }
    }

    /// Activate (free trial from the agreement terms) and the current entitlements; a
    /// successor's new licence first moves the subscription to it.
    async fn license_updated(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let license = event.license_arn();
        let (mut subscription, aliases, relicense) =
            match self.identify(event, directory, IfUnknown::Create).await? {
                Identified::NotOurs(why) => return Ok(event.nothing(&why)),
                Identified::New {
                    subscription,
                    aliases,
                } => (subscription, aliases, None),
                Identified::Known {
                    subscription,
                    by_license,
                    aliases,
                } => {
                    let moved = former_license(&subscription, license.as_deref());
                    if moved && by_license {
                        return Ok(event.nothing("a licence this subscription no longer uses"));
                    }
                    (subscription, aliases, license.filter(|_| moved))
                }
            };
        let free_trial = match self.agreement_facts(event.agreement_id).await {
            Ok(facts) => Some(facts.free_trial),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(agreement_id = event.agreement_id, error = %e, "free trial unknown: agreement terms unreadable");
                None
            }
        };
        let mut events = Vec::new();
        if let Some(license_arn) = relicense {
            subscription.license_arn = Some(license_arn.clone());
            events.push(MarketplaceEvent {
                subscription: subscription.clone(),
                occurred_at: event.occurred_at,
                kind: EventKind::Relicensed { license_arn },
                free_trial: None,
                aliases: Vec::new(),
            });
        }
        let entitlements = self.get_entitlements(&subscription).await?;
        events.push(lifecycle(
            subscription.clone(),
            event.occurred_at,
            Lifecycle::Activate,
            event.detail_type,
            free_trial,
        ));
        events.push(entitlements_changed(
            subscription,
            event.occurred_at,
            entitlements,
        ));
        Ok(named(events, &aliases))
    }

    /// Entitlements fully revoked: the end, unless the licence is a former one or its
    /// agreement was superseded by a renewal or replacement.
    async fn license_deprovisioned(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let Identified::Known {
            subscription,
            aliases,
            ..
        } = self.identify(event, directory, IfUnknown::Ignore).await?
        else {
            return Ok(event.nothing("not a subscription stored here"));
        };
        if former_license(&subscription, event.license_arn().as_deref()) {
            return Ok(event.nothing("a licence this subscription no longer uses"));
        }
        if self
            .described(event.agreement_id)
            .await?
            .is_some_and(|d| d.superseded())
        {
            return Ok(event.nothing("its agreement continues in a successor"));
        }
        Ok(named(
            vec![event.lifecycle(subscription, Lifecycle::Cancel)],
            &aliases,
        ))
    }

    /// An agreement that ends for good starts the final metering window; one superseded by a
    /// successor ends nothing.
    async fn agreement_ended(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let status = str_at(event.detail, "/agreement/status").unwrap_or("");
        if superseded_status(status) {
            return Ok(event.nothing("its agreement continues in a successor"));
        }
        let Identified::Known {
            subscription,
            aliases,
            ..
        } = self.identify(event, directory, IfUnknown::Ignore).await?
        else {
            return Ok(event.nothing("not a subscription stored here"));
        };
        Ok(named(
            vec![lifecycle(
                subscription,
                event.occurred_at,
                Lifecycle::BeginCancel,
                &format!("{} ({status})", event.detail_type),
                None,
            )],
            &aliases,
        ))
    }

    async fn agreement_amended(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let Identified::Known {
            subscription,
            aliases,
            ..
        } = self.identify(event, directory, IfUnknown::Ignore).await?
        else {
            // License Updated follows an amendment and carries the licence.
            return Ok(event.nothing("not a subscription stored here"));
        };
        let entitlements = self.get_entitlements(&subscription).await?;
        Ok(named(
            vec![entitlements_changed(
                subscription,
                event.occurred_at,
                entitlements,
            )],
            &aliases,
        ))
    }

    /// A renewal or replacement continues its predecessor's subscription with a new term, and
    /// its agreement id becomes one more name of it; a new agreement grants nothing before
    /// License Updated.
    async fn agreement_created(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let intent = str_at(event.detail, "/agreement/intent").unwrap_or("NEW");
        if !matches!(intent, "RENEW" | "REPLACE") {
            return Ok(Vec::new());
        }
        let Identified::Known {
            subscription,
            aliases,
            ..
        } = self.identify(event, directory, IfUnknown::Ignore).await?
        else {
            return Ok(event.nothing("continues no subscription stored here"));
        };
        let term = Term {
            start: str_at(event.detail, "/agreement/startTime").and_then(parse_time),
            end: str_at(event.detail, "/agreement/endTime").and_then(parse_time),
            unit: None,
        };
        Ok(named(
            vec![MarketplaceEvent {
                subscription,
                occurred_at: event.occurred_at,
                kind: EventKind::Renewed { term: Some(term) },
                free_trial: None,
                aliases: Vec::new(),
            }],
            &aliases,
        ))
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

    #[test]
    fn former_licences() {
        let mut s = crate::refs::concurrent_ref(
            "arn:aws:license-manager::1:license/l-new",
            "code",
            "444455556666",
        );
        assert!(former_license(
            &s,
            Some("aws:license-manager:us-east-1:1:l-old")
        ));
        assert!(!former_license(
            &s,
            Some("aws:license-manager:us-east-1:1:l-new")
        ));
        assert!(!former_license(&s, None));
        s.license_arn = None;
        assert!(!former_license(&s, Some("l-old")));
    }
}
