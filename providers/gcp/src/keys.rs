//! Google's `{kid: PEM certificate}` key maps (the cloud-commerce-partner keys of the sign-up
//! JWT, the OAuth keys of Pub/Sub push tokens), fetched from a pinned URL, cached for
//! `keys_cache_secs` (about an hour, as implementations do: gcp.md §1 [R] S13) and fetched
//! again when a token names a `kid` we do not hold, at most once a minute.

use std::{collections::HashMap, sync::Arc};

use jsonwebtoken::{DecodingKey, jwk::JwkSet};
use marketlink_core::{Clock, ProviderError};
use time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

use crate::body::{read_bounded, transport_error};

/// Unknown `kid`s may not make us hammer Google: one refetch a minute at most.
const REFETCH_PAUSE: Duration = Duration::minutes(1);

struct Cached {
    fetched_at: OffsetDateTime,
    keys: HashMap<String, DecodingKey>,
}

pub(crate) struct KeyCache {
    url: String,
    ttl: Duration,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<Cached>>,
}

impl KeyCache {
    pub(crate) fn new(
        url: String,
        ttl: Duration,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            url,
            ttl,
            http,
            clock,
            cached: Mutex::new(None),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The key `kid` names. `Ok(None)`: Google does not publish it (a forged or retired kid);
    /// `Err(Retryable)`: the key URL cannot be read now.
    pub(crate) async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, ProviderError> {
        let now = self.clock.now();
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = now - c.fetched_at < self.ttl;
            if fresh {
                if let Some(key) = c.keys.get(kid) {
                    return Ok(Some(key.clone()));
                }
                if now - c.fetched_at < REFETCH_PAUSE {
                    return Ok(None);
                }
            }
        }
        let keys = self.fetch().await?;
        let found = keys.get(kid).cloned();
        *cached = Some(Cached {
            fetched_at: now,
            keys,
        });
        Ok(found)
    }

    /// Fetches and parses the map (also used by `diagnose`).
    pub(crate) async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, ProviderError> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(transport_error)?;
        if !response.status().is_success() {
            return Err(ProviderError::retryable(format!(
                "keys at {} answered {}",
                self.url,
                response.status()
            )));
        }
        let body = read_bounded(response).await?;
        parse_key_map(&body)
    }
}

/// Either of Google's two forms: `{kid: "-----BEGIN CERTIFICATE-----..."}` (the x509 URLs,
/// `oauth2/v1/certs`) or a JWK set `{"keys":[{kid, n, e}]}` (the jwk URLs, `oauth2/v3/certs`).
pub(crate) fn parse_key_map(body: &[u8]) -> Result<HashMap<String, DecodingKey>, ProviderError> {
    let unreadable =
        |e: serde_json::Error| ProviderError::retryable(format!("unreadable key map: {e}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(unreadable)?;
    if value.get("keys").is_some() {
        let set: JwkSet = serde_json::from_value(value).map_err(unreadable)?;
        return Ok(set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect());
    }
    let map: HashMap<String, String> = serde_json::from_value(value).map_err(unreadable)?;
    let mut keys = HashMap::new();
    for (kid, pem) in map {
        match DecodingKey::from_rsa_pem(pem.as_bytes()) {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(e) => {
                tracing::warn!(kid, error = %e, "skipping a key Google published that is not an RSA certificate")
            }
        }
    }
    Ok(keys)
}
