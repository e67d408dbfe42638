//! Reconciliation: what AWS says about the customers we know. AWS has no "list my
//! subscriptions" call for SaaS; GetEntitlements per known customer gives each contract's
//! current quantities (a metered-only listing has none).

use marketlink_core::{ExternalRef, Marketplace, MarketplaceView, ProviderError};

use crate::AwsProvider;

impl AwsProvider {
    pub(crate) async fn survey_known(
        &self,
        known: &[ExternalRef],
    ) -> Result<Vec<MarketplaceView>, ProviderError> {
        let mut out = Vec::new();
        for subscription in known.iter().filter(|s| s.marketplace == Marketplace::AWS) {
            // A product no longer configured cannot be asked about: leave it out.
            if self.config.product(&subscription.product_code).is_none() {
                continue;
            }
            match self.get_entitlements(subscription).await {
                Ok(entitlements) => {
                    let mut view = MarketplaceView::of(subscription.clone());
                    view.entitlements = Some(entitlements);
                    out.push(view);
                }
                Err(ProviderError::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(out)
    }
}
