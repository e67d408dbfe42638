//! The configured marketplace providers, by marketplace name.
//!
//! Each provider is held behind [`Metered`], which counts and times every call to the
//! marketplace (provider, operation, outcome) for `/metrics`, whoever makes it: workers,
//! landing pages or the buyer's account page.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, AvailablePlan, BuyerIdentity, BuyerSignIn, Capabilities, ChangeAnswer,
    ChangeOutcome, ChangeProgress, Entitlement, ExternalRef, InboundEndpoint, InboundMessage,
    LandingToken, Marketplace, MarketplaceEvent, MarketplaceProvider, MarketplaceRules, PlanId,
    ProviderError, PulledMessage, ResolvedPurchase, SubscriptionDirectory, UsageOutcome,
    UsageRecord,
};

#[derive(Clone, Default)]
pub struct Providers(BTreeMap<Marketplace, Arc<dyn MarketplaceProvider>>);

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider under the marketplace it names; a second one for the same marketplace
    /// replaces the first.
    pub fn with(mut self, provider: Arc<dyn MarketplaceProvider>) -> Self {
        let marketplace = provider.marketplace();
        let metered = Metered {
            name: marketplace.as_str().to_owned(),
            inner: provider,
        };
        self.0.insert(marketplace, Arc::new(metered));
        self
    }

    pub fn get(&self, marketplace: &Marketplace) -> Option<&Arc<dyn MarketplaceProvider>> {
        self.0.get(marketplace)
    }

    /// Looks a provider up by the name used in URLs and stored rows.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn MarketplaceProvider>> {
        Marketplace::parse(name).ok().and_then(|m| self.0.get(&m))
    }

    /// What differs on `marketplace`, as its provider declares it; the conservative generic
    /// rules when no provider is configured for it.
    pub fn rules(&self, marketplace: &Marketplace) -> MarketplaceRules {
        match self.0.get(marketplace) {
            Some(provider) => provider.rules(),
            None => MarketplaceRules::generic(marketplace.to_string()),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn MarketplaceProvider>> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `outcome` label of a call: `ok` or the kind of error (a fixed, small set).
fn outcome<T>(result: &Result<T, ProviderError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProviderError::InvalidToken(_)) => "invalid_token",
        Err(ProviderError::ExpiredToken(_)) => "expired_token",
        Err(ProviderError::Unauthenticated(_)) => "unauthenticated",
        Err(ProviderError::Rejected { .. }) => "rejected",
        Err(ProviderError::NotFound(_)) => "not_found",
        Err(ProviderError::Unsupported { .. }) => "unsupported",
        Err(ProviderError::Retryable { .. }) => "retryable",
        Err(ProviderError::Configuration(_)) => "configuration",
    }
}

async fn timed<T>(
    provider: &str,
    operation: &'static str,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let start = Instant::now();
    let result = call.await;
    let labels = [
        ("provider", provider.to_owned()),
        ("operation", operation.to_owned()),
        ("outcome", outcome(&result).to_owned()),
    ];
    metrics::counter!("marketlink_marketplace_calls_total", &labels).increment(1);
    metrics::histogram!("marketlink_marketplace_call_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    result
}

/// A provider whose marketplace calls are counted and timed.
struct Metered {
    name: String,
    inner: Arc<dyn MarketplaceProvider>,
}

#[async_trait]
impl MarketplaceProvider for Metered {
    fn marketplace(&self) -> Marketplace {
        self.inner.marketplace()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rules(&self) -> MarketplaceRules {
        self.inner.rules()
    }

    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        timed(&self.name, "resolve", self.inner.resolve(token)).await
    }

    async fn activate(
        &self,
        subscription: &ExternalRef,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        timed(
            &self.name,
            "activate",
            self.inner.activate(subscription, plan, quantity),
        )
        .await
    }

    async fn change_plan(
        &self,
        subscription: &ExternalRef,
        plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        timed(
            &self.name,
            "change_plan",
            self.inner.change_plan(subscription, plan),
        )
        .await
    }

    async fn change_quantity(
        &self,
        subscription: &ExternalRef,
        quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        timed(
            &self.name,
            "change_quantity",
            self.inner.change_quantity(subscription, quantity),
        )
        .await
    }

    async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<AvailablePlan>, ProviderError> {
        timed(
            &self.name,
            "available_plans",
            self.inner.available_plans(subscription),
        )
        .await
    }

    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        timed(&self.name, "cancel", self.inner.cancel(subscription)).await
    }

    async fn follow_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        let call = self.inner.follow_change(subscription, operation_id);
        timed(&self.name, "follow_change", call).await
    }

    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        timed(&self.name, "report_usage", self.inner.report_usage(records)).await
    }

    async fn entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        timed(
            &self.name,
            "entitlements",
            self.inner.entitlements(subscription),
        )
        .await
    }

    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        timed(&self.name, "authenticate", self.inner.authenticate(message)).await
    }

    async fn respond_to_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
        answer_by: Option<time::OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        timed(
            &self.name,
            "respond_to_change",
            self.inner
                .respond_to_change(subscription, operation_id, accept, answer_by),
        )
        .await
    }

    fn landing_token(&self, fields: &[(String, String)]) -> Option<LandingToken> {
        self.inner.landing_token(fields)
    }

    fn buyer_sign_in(&self) -> Option<Arc<dyn BuyerSignIn>> {
        self.inner.buyer_sign_in().map(|inner| {
            Arc::new(MeteredSignIn {
                name: self.name.clone(),
                inner,
            }) as Arc<dyn BuyerSignIn>
        })
    }

    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        self.inner.inbound_endpoints()
    }

    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        timed(&self.name, "pull", self.inner.pull(max)).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        timed(&self.name, "ack", self.inner.ack(receipt)).await
    }

    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        timed(
            &self.name,
            "interpret",
            self.inner.interpret(message, directory),
        )
        .await
    }

    // Every defaulted method must be forwarded here, or the wrapper silently answers with the
    // default (tests/journeys/doctor.rs and reconcile.rs go through this wrapper).
    async fn diagnose(&self) -> Vec<marketlink_core::Diagnosis> {
        self.inner.diagnose().await
    }

    async fn survey(
        &self,
        known: &[ExternalRef],
    ) -> Result<Vec<marketlink_core::MarketplaceView>, ProviderError> {
        timed(&self.name, "survey", self.inner.survey(known)).await
    }
}

struct MeteredSignIn {
    name: String,
    inner: Arc<dyn BuyerSignIn>,
}

#[async_trait]
impl BuyerSignIn for MeteredSignIn {
    fn begin(&self) -> marketlink_core::SignInStart {
        self.inner.begin()
    }

    fn on_mismatch(&self) -> marketlink_core::SignInMismatch {
        self.inner.on_mismatch()
    }

    async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<BuyerIdentity, ProviderError> {
        timed(
            &self.name,
            "sign_in",
            self.inner.complete(code, pkce_verifier, nonce),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marketplace_without_a_provider_gets_the_generic_rules() {
        let marketplace = Marketplace::AZURE;
        assert_eq!(
            Providers::new().rules(&marketplace),
            MarketplaceRules::generic(marketplace.to_string())
        );
    }
}
