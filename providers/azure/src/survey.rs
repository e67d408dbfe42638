//! Reconciliation: every subscription the publisher has, as Microsoft sees it.

use marketlink_core::{MarketplaceView, PlanId, ProviderError, SubscriptionStatus};

use crate::{
    AzureProvider,
    model::{SaasStatus, SaasSubscription},
};

/// Microsoft's `saasSubscriptionStatus` in our vocabulary. `NotStarted` (bought, landing page
/// not visited) and `PendingFulfillmentStart` (not activated yet) are both pending for us.
pub(crate) fn status_of(status: &SaasStatus) -> Option<SubscriptionStatus> {
    Some(match status {
        SaasStatus::NotStarted | SaasStatus::PendingFulfillmentStart => SubscriptionStatus::Pending,
        SaasStatus::Subscribed => SubscriptionStatus::Active,
        SaasStatus::Suspended => SubscriptionStatus::Suspended,
        SaasStatus::Unsubscribed => SubscriptionStatus::Cancelled,
        SaasStatus::Other(_) => return None,
    })
}

/// One subscription as Microsoft has it, in our vocabulary.
pub(crate) fn view_of(s: &SaasSubscription) -> MarketplaceView {
    let mut view = MarketplaceView::of(s.external_ref());
    view.status = status_of(&s.status());
    view.plan_id = s
        .plan_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(PlanId::from);
    view.quantity = s.quantity;
    view
}

impl AzureProvider {
    /// List Subscriptions (all pages), mapped to our vocabulary. `known` is not needed:
    /// Microsoft lists every subscription of the publisher.
    pub(crate) async fn survey_subscriptions(&self) -> Result<Vec<MarketplaceView>, ProviderError> {
        let listed = self.list_subscriptions().await?;
        Ok(listed.iter().map(view_of).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_ours() {
        assert_eq!(
            status_of(&SaasStatus::PendingFulfillmentStart),
            Some(SubscriptionStatus::Pending)
        );
        assert_eq!(
            status_of(&SaasStatus::Subscribed),
            Some(SubscriptionStatus::Active)
        );
        assert_eq!(
            status_of(&SaasStatus::Suspended),
            Some(SubscriptionStatus::Suspended)
        );
        assert_eq!(
            status_of(&SaasStatus::Unsubscribed),
            Some(SubscriptionStatus::Cancelled)
        );
        assert_eq!(status_of(&SaasStatus::Other("x".into())), None);
    }
}
