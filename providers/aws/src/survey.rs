//! Reconciliation: what AWS says about the customers we know. AWS has no "list my SaaS
//! subscriptions" call that names our customers; for each known subscription GetEntitlements
//! gives the contract's current quantities (a metered-only listing has none) and the Agreement
//! API its status (`agreement_status`: SearchAgreements per product, GetAgreementEntitlements
//! for an ended agreement).

use marketlink_core::{
    ExternalRef, Marketplace, MarketplaceView, ProviderError, SubscriptionStatus,
};

use crate::AwsProvider;

impl AwsProvider {
    pub(crate) async fn survey_known(
        &self,
        known: &[ExternalRef],
    ) -> Result<Vec<MarketplaceView>, ProviderError> {
        // A product no longer configured cannot be asked about: leave it out.
        let known: Vec<&ExternalRef> = known
            .iter()
            .filter(|s| s.marketplace == Marketplace::AWS)
            .filter(|s| self.config.product(&s.product_code).is_some())
            .collect();
        let mut statuses = self.agreement_statuses(&known).await;
        let mut out = Vec::new();
        for subscription in known {
            let mut view = MarketplaceView::of(subscription.clone());
            match statuses.remove(&subscription.external_id) {
                Some(Ok(status)) => view.status = status,
                Some(Err(reason)) => view.status_unknown = Some(reason),
                None => {}
            }
            match view.status {
                // An ended licence has no entitlements left to compare.
                Some(SubscriptionStatus::Cancelled | SubscriptionStatus::Failed) => {}
                _ => match self.get_entitlements(subscription).await {
                    Ok(entitlements) => view.entitlements = Some(entitlements),
                    Err(ProviderError::NotFound(_)) if view.status.is_none() => continue,
                    Err(ProviderError::NotFound(_)) => {}
                    Err(other) => return Err(other),
                },
            }
            // An agreement is ACTIVE from its acceptance, before AWS has provisioned the
            // licence (subscribe-success / License Updated, spec §4) and while a payment may
            // still fail: only provisioned entitlements make it active for us, so reconcile
            // never activates a purchase AWS is still setting up.
            if view.status == Some(SubscriptionStatus::Active)
                && view.entitlements.as_ref().is_none_or(Vec::is_empty)
            {
                view.status = None;
            }
            out.push(view);
        }
        Ok(out)
    }
}
