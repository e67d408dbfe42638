//! `impl MarketplaceProvider for AzureProvider`: each call handed to the module of the Microsoft
//! API that serves it, plus the marketplace's rules.

use std::sync::Arc;

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, AvailablePlan, BuyerSignIn, Capabilities, ChangeAnswer, ChangeOutcome,
    ChangeProgress, Diagnosis, Entitlement, ExternalRef, InboundEndpoint, InboundMessage,
    LandingToken, Marketplace, MarketplaceEvent, MarketplaceProvider, MarketplaceRules,
    MarketplaceView, PlanId, ProviderError, ResolvedPurchase, UsageOutcome, UsageRecord,
    UsageRules,
};
use time::Duration;

use crate::{AzureProvider, ENDPOINTS, metering, webhook};

/// Microsoft's rules (`../shared/specs/azure.md` and `azure-details.md`, Metering): up to 25
/// events per `batchUsageEvent`; a quantity must be above zero (`InvalidQuantity` otherwise),
/// so idle hours send nothing; no allocation tags; an event older than 24 hours is refused; no
/// month-end cut-off.
fn azure_rules() -> MarketplaceRules {
    MarketplaceRules {
        display_name: "Microsoft's marketplace".into(),
        return_step: "Return to the Azure portal, open your SaaS subscription, and choose \
                      \"Configure account now\" again."
            .into(),
        // The landing page URL carries `?token=` (Microsoft sends the buyer there by GET).
        landing_post_only: false,
        usage: UsageRules {
            max_batch: metering::MAX_BATCH,
            zero_hours: false,
            allocations: false,
            whole_units: false,
            window: Duration::hours(24),
            month_close: None,
            // `quantity` is a double with no stated maximum (meteringapi.v1.json).
            max_hourly_quantity: None,
        },
    }
}

#[async_trait]
impl MarketplaceProvider for AzureProvider {
    fn marketplace(&self) -> Marketplace {
        Marketplace::AZURE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: true,
            vendor_changes_plan: true,
            vendor_cancels: true,
        }
    }

    fn rules(&self) -> MarketplaceRules {
        azure_rules()
    }

    fn landing_token(&self, fields: &[(String, String)]) -> Option<LandingToken> {
        landing_token(fields)
    }

    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        self.resolve_token(token).await
    }

    async fn activate(
        &self,
        subscription: &ExternalRef,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.activate_subscription(subscription, plan, quantity)
            .await
    }

    async fn change_plan(
        &self,
        subscription: &ExternalRef,
        plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.request_plan_change(subscription, plan).await
    }

    async fn change_quantity(
        &self,
        subscription: &ExternalRef,
        quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.request_quantity_change(subscription, quantity).await
    }

    async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<AvailablePlan>, ProviderError> {
        self.offered_plans(subscription).await
    }

    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        self.delete_subscription(subscription).await
    }

    async fn follow_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        self.follow_operation(subscription, operation_id).await
    }

    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        metering::report(&self.api, records).await
    }

    async fn entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        self.read_entitlements(subscription).await
    }

    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        webhook::authenticate(self, message).await
    }

    /// PATCHes the operation with `Success` or `Failure` while Microsoft's 10 seconds last; an
    /// operation already settled the way we wanted counts as answered.
    async fn respond_to_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
        answer_by: Option<time::OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        self.answer_operation(subscription, operation_id, accept, answer_by)
            .await
    }

    fn buyer_sign_in(&self) -> Option<Arc<dyn BuyerSignIn>> {
        self.buyer_sign_in.clone()
    }

    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        &ENDPOINTS
    }

    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        // Microsoft names a subscription by its id alone: nothing to look up.
        _directory: &dyn marketlink_core::SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        webhook::interpret(self, message).await
    }

    async fn diagnose(&self) -> Vec<Diagnosis> {
        self.run_diagnosis().await
    }

    async fn survey(&self, _known: &[ExternalRef]) -> Result<Vec<MarketplaceView>, ProviderError> {
        self.survey_subscriptions().await
    }
}

/// `token`, as [`crate::normalize_landing_token`] repairs it: the trait's default would trim
/// the trailing space that was a `+`.
pub(crate) fn landing_token(fields: &[(String, String)]) -> Option<LandingToken> {
    fields
        .iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| crate::normalize_landing_token(value))
        .filter(|token| !token.is_empty())
        .map(|token| LandingToken { token })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn usage_has_a_plain_24_hour_window_and_no_zero_hours() {
        let usage = azure_rules().usage;
        assert_eq!(usage.max_batch, 25);
        assert!(!usage.zero_hours && !usage.allocations);
        let last_hour = datetime!(2026-03-31 23:00 UTC);
        assert_eq!(usage.deadline(last_hour), datetime!(2026-04-01 23:00 UTC));
    }
}
