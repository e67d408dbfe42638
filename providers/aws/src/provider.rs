//! `impl MarketplaceProvider for AwsProvider`: each call handed to the module of the AWS API
//! that serves it, plus the marketplace's rules.

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, ChangeOutcome, Diagnosis, Entitlement, ExternalRef,
    InboundEndpoint, InboundMessage, LandingToken, Marketplace, MarketplaceEvent,
    MarketplaceProvider, MarketplaceRules, MarketplaceView, PlanId, ProviderError, PulledMessage,
    ResolvedPurchase, SubscriptionDirectory, UsageOutcome, UsageRecord, UsageRules,
};
use time::{Duration, macros::time};

use crate::{AwsProvider, INBOUND_ENDPOINTS, metering::MAX_BATCH, resolve::landing_token};

fn unsupported(operation: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        marketplace: Marketplace::AWS,
        operation,
    }
}

/// AWS Marketplace's rules (`../shared/specs/aws.md`, BatchMeterUsage): 1 to 25 records a call;
/// one record per customer, dimension and hour, every hour, zero included (seed 001);
/// `UsageAllocations` taken; records refused 24 hours or more after the hour, and a past month
/// only until 06:00 UTC on the 1st. The set-up token arrives by POST only (seed 000: the
/// buyer's browser posts `x-amzn-marketplace-token` to the registration URL).
fn aws_rules() -> MarketplaceRules {
    MarketplaceRules {
        display_name: "AWS Marketplace".into(),
        return_step: "Return to AWS Marketplace, open Your Marketplace Software, and choose \
                      \"Set up your account\" again."
            .into(),
        landing_post_only: true,
        usage: UsageRules {
            max_batch: MAX_BATCH,
            zero_hours: true,
            allocations: true,
            whole_units: true,
            window: Duration::hours(24),
            month_close: Some(time!(06:00)),
            // A record's Quantity is at most i32::MAX (UsageQuantity, meteringmarketplace
            // service model), and one record carries a whole hour.
            max_hourly_quantity: Some(i32::MAX as u64),
        },
    }
}

#[async_trait]
impl MarketplaceProvider for AwsProvider {
    fn marketplace(&self) -> Marketplace {
        Marketplace::AWS
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: false,
            vendor_changes_plan: false,
            vendor_cancels: false,
        }
    }

    fn rules(&self) -> MarketplaceRules {
        aws_rules()
    }

    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        self.resolve_token(token).await
    }

    /// AWS activates by notification (subscribe-success / License Updated): nothing to call.
    async fn activate(
        &self,
        _subscription: &ExternalRef,
        _plan: Option<&PlanId>,
        _quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn change_plan(
        &self,
        _subscription: &ExternalRef,
        _plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported(
            "plan changes from the vendor (buyers change offers on AWS Marketplace)",
        ))
    }

    async fn change_quantity(
        &self,
        _subscription: &ExternalRef,
        _quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported(
            "quantity changes from the vendor (buyers amend contracts on AWS Marketplace)",
        ))
    }

    async fn cancel(&self, _subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported(
            "cancellation from the vendor (buyers cancel on AWS Marketplace)",
        ))
    }

    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        self.meter(records).await
    }

    async fn entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        self.get_entitlements(subscription).await
    }

    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        self.authenticate_message(message).await
    }

    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        INBOUND_ENDPOINTS
    }

    fn landing_token(&self, fields: &[(String, String)]) -> Option<LandingToken> {
        landing_token(fields)
    }

    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        self.pull_messages(max).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        self.delete_message(receipt).await
    }

    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        self.interpret_message(message, directory).await
    }

    async fn diagnose(&self) -> Vec<Diagnosis> {
        self.run_diagnosis().await
    }

    async fn survey(&self, known: &[ExternalRef]) -> Result<Vec<MarketplaceView>, ProviderError> {
        self.survey_known(known).await
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn usage_of_a_past_month_closes_at_six_on_the_first() {
        let usage = aws_rules().usage;
        assert_eq!(usage.max_batch, 25);
        assert!(usage.zero_hours && usage.allocations);
        let last_hour = datetime!(2026-03-31 23:00 UTC);
        assert_eq!(usage.deadline(last_hour), datetime!(2026-04-01 06:00 UTC));
    }
}
