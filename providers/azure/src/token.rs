//! Marketplace API tokens: the client-credentials grant of the publisher's Entra app, cached
//! until shortly before expiry.
//!
//! Why not `azure_identity`: it pulls `azure_core` and a second HTTP stack, refuses `http`
//! authority hosts, and reads the wall clock for expiry; the grant is one form POST. The v2
//! endpoint is used (`scope={resource}/.default`); Entra issues the token shape the resource app
//! accepts (v1 for the marketplace API), whatever endpoint is asked.

use std::sync::Arc;

use marketlink_core::{Clock, ProviderError, Secret};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

use crate::{
    config::AzureConfig,
    http::{Reply, transport_error},
};

#[derive(Clone)]
struct Cached {
    token: Secret,
    /// When to fetch a new one (expiry minus the refresh margin).
    refresh_at: OffsetDateTime,
}

/// Fetches and caches the publisher's API token. Concurrent callers share one fetch.
pub(crate) struct TokenSource {
    http: reqwest::Client,
    config: Arc<AzureConfig>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<Cached>>,
}

/// `expires_in` is an integer on v2 and a string on v1.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Seconds>,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, config: Arc<AzureConfig>, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
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
        let config = &self.config;
        let scope = format!(
            "{}/.default",
            config.marketplace_resource_id.trim_end_matches('/')
        );
        let what = "Entra token request";
        let response = self
            .http
            .post(config.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", config.client_id.as_str()),
                ("client_secret", config.client_secret.expose()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| transport_error(what, &e))?;
        let reply = Reply::read(response, what).await?;
        if !reply.status.is_success() {
            let (code, message) = reply.error_detail();
            let text = format!(
                "{what}: HTTP {} {}: {message}",
                reply.status.as_u16(),
                code.unwrap_or_default()
            );
            return Err(
                if reply.status.is_server_error() || reply.status.as_u16() == 429 {
                    ProviderError::Retryable {
                        message: text,
                        retry_after: reply.retry_after(),
                    }
                } else {
                    // invalid_client, unauthorized_client, invalid_scope, invalid_tenant: ours.
                    ProviderError::Configuration(text)
                },
            );
        }
        let body: TokenResponse = reply.parse(what)?;
        let lifetime = match body.expires_in {
            Some(Seconds::Number(n)) => n,
            Some(Seconds::Text(t)) => t.trim().parse().unwrap_or(3600),
            None => 3600,
        }
        .max(0);
        let margin = i64::try_from(config.token_refresh_margin_secs).unwrap_or(i64::MAX);
        // A margin larger than half the lifetime would refetch on every call: cap it.
        let margin = margin.min(lifetime / 2);
        tracing::debug!(lifetime, "fetched a marketplace API token");
        Ok(Cached {
            token: Secret::new(body.access_token),
            refresh_at: now + Duration::seconds(lifetime - margin),
        })
    }
}
