//! The configured marketplace providers, by marketplace name.

use std::{collections::BTreeMap, sync::Arc};

use marketlink_core::{Marketplace, MarketplaceProvider};

#[derive(Clone, Default)]
pub struct Providers(BTreeMap<Marketplace, Arc<dyn MarketplaceProvider>>);

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider under the marketplace it names; a second one for the same marketplace
    /// replaces the first.
    pub fn with(mut self, provider: Arc<dyn MarketplaceProvider>) -> Self {
        self.0.insert(provider.marketplace(), provider);
        self
    }

    pub fn get(&self, marketplace: &Marketplace) -> Option<&Arc<dyn MarketplaceProvider>> {
        self.0.get(marketplace)
    }

    /// Looks a provider up by the name used in URLs and stored rows.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn MarketplaceProvider>> {
        Marketplace::parse(name).ok().and_then(|m| self.0.get(&m))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn MarketplaceProvider>> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
