//! The durable names a marketplace gives a subscription besides its external id, and the
//! directory a provider asks to find a subscription by one of them.
//!
//! AWS names one subscription by several ids over its life: the agreement the buyer accepted,
//! the agreements that renew or replace it, the LicenseArn of each, and (on classic listings)
//! the CustomerIdentifier behind an account and licence. Notifications carry only some of
//! them. Providers stay database-free: they learn names ([`ResolvedPurchase::aliases`],
//! [`MarketplaceEvent::aliases`]), the engine keeps them in the store, and providers look them
//! up through [`SubscriptionDirectory`] while interpreting a message.
//!
//! [`ResolvedPurchase::aliases`]: crate::ResolvedPurchase::aliases
//! [`MarketplaceEvent::aliases`]: crate::MarketplaceEvent::aliases

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ExternalRef, Marketplace, ProviderError};

/// Another name of a subscription at its marketplace. `kind` is the provider's own vocabulary
/// (AWS: `agreement`, `license`, `account-license`); `(marketplace, kind, value)` names at
/// most one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Alias {
    pub kind: String,
    pub value: String,
}

impl Alias {
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

/// Where a provider finds the subscriptions the service already knows. Implemented by the
/// engine over the store; a failure is ours (database down) and reads as
/// [`ProviderError::Retryable`], so the message is tried again rather than dropped.
#[async_trait]
pub trait SubscriptionDirectory: Send + Sync {
    /// The subscription `alias` names, as stored now (its current licence, account, ...).
    async fn find(
        &self,
        marketplace: &Marketplace,
        alias: &Alias,
    ) -> Result<Option<ExternalRef>, ProviderError>;

    /// The subscription stored under `external_id`.
    async fn get(
        &self,
        marketplace: &Marketplace,
        external_id: &str,
    ) -> Result<Option<ExternalRef>, ProviderError>;
}

/// A directory that knows nothing: for providers and tests that keep no names.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyDirectory;

#[async_trait]
impl SubscriptionDirectory for EmptyDirectory {
    async fn find(
        &self,
        _marketplace: &Marketplace,
        _alias: &Alias,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        Ok(None)
    }

    async fn get(
        &self,
        _marketplace: &Marketplace,
        _external_id: &str,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        Ok(None)
    }
}

/// A directory in memory, for tests and tools: what [`MemoryDirectory::record`] was told.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: std::sync::Mutex<MemoryEntries>,
}

#[derive(Debug, Default)]
struct MemoryEntries {
    by_external_id: std::collections::HashMap<(String, String), ExternalRef>,
    by_alias: std::collections::HashMap<(String, Alias), String>,
}

impl MemoryDirectory {
    /// Stores `subscription` (replacing what was stored under its external id) and its aliases.
    pub fn record(&self, subscription: &ExternalRef, aliases: &[Alias]) {
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let marketplace = subscription.marketplace.to_string();
        for alias in aliases {
            entries.by_alias.insert(
                (marketplace.clone(), alias.clone()),
                subscription.external_id.clone(),
            );
        }
        entries.by_external_id.insert(
            (marketplace, subscription.external_id.clone()),
            subscription.clone(),
        );
    }
}

#[async_trait]
impl SubscriptionDirectory for MemoryDirectory {
    async fn find(
        &self,
        marketplace: &Marketplace,
        alias: &Alias,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        let entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (marketplace.to_string(), alias.clone());
        Ok(entries.by_alias.get(&key).and_then(|external_id| {
            entries
                .by_external_id
                .get(&(marketplace.to_string(), external_id.clone()))
                .cloned()
        }))
    }

    async fn get(
        &self,
        marketplace: &Marketplace,
        external_id: &str,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        let entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries
            .by_external_id
            .get(&(marketplace.to_string(), external_id.to_owned()))
            .cloned())
    }
}
