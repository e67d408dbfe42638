//! The store as the [`SubscriptionDirectory`] providers consult while interpreting a message:
//! subscriptions by external id or by another name (alias) their marketplace gives them.

use async_trait::async_trait;
use marketlink_core::{Alias, ExternalRef, Marketplace, ProviderError, SubscriptionDirectory};
use marketlink_store::{Store, StoreError};

pub(crate) struct StoreDirectory<'a> {
    pub(crate) store: &'a Store,
}

/// Our database failing is our trouble: the message is tried again later, never dropped.
fn ours(error: StoreError) -> ProviderError {
    ProviderError::retryable(format!("cannot read known subscriptions: {error}"))
}

#[async_trait]
impl SubscriptionDirectory for StoreDirectory<'_> {
    async fn find(
        &self,
        marketplace: &Marketplace,
        alias: &Alias,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        Ok(self
            .store
            .find_subscription_by_alias(marketplace, alias)
            .await
            .map_err(ours)?
            .map(|s| s.external))
    }

    async fn get(
        &self,
        marketplace: &Marketplace,
        external_id: &str,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        Ok(self
            .store
            .find_subscription(marketplace, external_id)
            .await
            .map_err(ours)?
            .map(|s| s.external))
    }
}
