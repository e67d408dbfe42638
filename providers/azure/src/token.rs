//! Marketplace API tokens: an `azure_identity` credential (chosen by `[azure.credential]`, see
//! `credential`) under our own cache (ADR 0016).
//!
//! The crate caches tokens too, but by the wall clock and with no way to drop one the API
//! refused; ours runs on the injected `Clock` (tests move time), refreshes
//! [`AzureConfig::token_refresh_margin_secs`] before expiry, forgets a refused token
//! (`invalidate`) and makes concurrent callers share one fetch (the mutex is held across it).
//! Each fetch builds a fresh credential, so the crate's cache never answers in ours' place.
//! The scope is `{resource}/.default` (v2 endpoint); Entra issues the token shape the resource
//! app accepts (v1 for the marketplace API), whatever endpoint is asked.

use std::sync::Arc;

use marketlink_core::{Clock, ProviderError, Secret, SystemClock};
use time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

use crate::{config::AzureConfig, credential::CredentialFactory};

#[derive(Clone)]
struct Cached {
    token: Secret,
    /// When to fetch a new one (expiry minus the refresh margin).
    refresh_at: OffsetDateTime,
}

/// Fetches and caches the publisher's API token. Concurrent callers share one fetch.
pub(crate) struct TokenSource {
    credentials: CredentialFactory,
    config: Arc<AzureConfig>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, config: Arc<AzureConfig>, clock: Arc<dyn Clock>) -> Self {
        Self {
            credentials: CredentialFactory::new(config.clone(), http, clock.clone()),
            config,
            clock,
            cache: Mutex::new(None),
        }
    }

    /// A valid token, from the cache when it is not close to expiry.
    pub async fn token(&self) -> Result<Secret, ProviderError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(cached) = cache.as_ref()
            && now < cached.refresh_at
        {
            metrics::counter!("marketlink_token_cache_total", "provider" => "azure", "result" => "hit")
                .increment(1);
            return Ok(cached.token.clone());
        }
        metrics::counter!("marketlink_token_cache_total", "provider" => "azure", "result" => "miss")
            .increment(1);
        let fresh = self.fetch(now).await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token, whatever it is (`marketlink doctor` wants a fresh one).
    pub async fn clear(&self) {
        *self.cache.lock().await = None;
    }

    /// Forgets `refused` (the API answered 401/403 to it) if it is still the cached token. A
    /// token another caller has already replaced stays: concurrent refusals of one expired token
    /// cost one new token, not one each.
    pub async fn invalidate(&self, refused: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| c.token == *refused) {
            *cache = None;
        }
    }

    async fn fetch(&self, now: OffsetDateTime) -> Result<Cached, ProviderError> {
        let scope = format!(
            "{}/.default",
            self.config.marketplace_resource_id.trim_end_matches('/')
        );
        let credential = self.credentials.build()?;
        let token = credential
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| self.credentials.fetch_error(&e))?;
        // azure_identity turns `expires_in` into a wall-clock instant; take the lifetime back
        // out of it and count it on our clock.
        let lifetime = (token.expires_on - SystemClock.now())
            .whole_seconds()
            .max(0);
        let margin = i64::try_from(self.config.token_refresh_margin_secs).unwrap_or(i64::MAX);
        // A margin larger than half the lifetime would refetch on every call: cap it.
        let margin = margin.min(lifetime / 2);
        tracing::debug!(lifetime, "fetched a marketplace API token");
        Ok(Cached {
            token: Secret::new(token.token.secret()),
            refresh_at: now + Duration::seconds(lifetime - margin),
        })
    }
}
