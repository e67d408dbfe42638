//! Vendor API keys on requests: `Authorization: Bearer mlk_...` (or `x-api-key`), verified
//! against the stored SHA-256 in constant time, cached briefly so the hot entitlement check
//! does no I/O, with every call counted per key and hour.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use marketlink_core::{ApiKey, Scope, TenantId, apikey::parse_key};
use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AppError, AppState};

/// How long a verified key is trusted without re-reading it (revocation delay).
const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (ApiKey, String, Instant)>>,
    uses: Mutex<HashMap<(Uuid, &'static str, i64), i64>>,
}

/// A new key: the record to store, the plaintext to show once, and the hash to keep.
pub fn new_key(
    name: &str,
    scopes: Vec<Scope>,
    tenant_id: Option<TenantId>,
    now: OffsetDateTime,
) -> (ApiKey, String, String) {
    let random = |n: usize| -> String {
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(n)
            .map(char::from)
            .collect()
    };
    let prefix = random(12);
    let secret = random(40);
    let key = ApiKey {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        prefix: prefix.clone(),
        scopes,
        tenant_id,
        created_at: now,
        revoked_at: None,
    };
    (key, format!("mlk_{prefix}_{secret}"), hash_secret(&secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyCache {
    /// Counts one call of `action` by `key` (flushed to the store by [`KeyCache::drain`]).
    pub fn count(&self, key: Uuid, action: &'static str, now: OffsetDateTime) {
        let hour = now.unix_timestamp() / 3600 * 3600;
        let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        *uses.entry((key, action, hour)).or_insert(0) += 1;
    }

    /// Takes the counted calls, to be written to the store.
    pub fn drain(&self) -> Vec<(Uuid, String, i64, i64)> {
        let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        uses.drain()
            .map(|((key, action, hour), calls)| (key, action.to_owned(), hour * 1000, calls))
            .collect()
    }

    /// Puts counts back after a failed write, so nothing is lost.
    pub fn restore(&self, counts: Vec<(Uuid, String, i64, i64)>) {
        let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        for (key, action, hour_ms, calls) in counts {
            let action: &'static str = match action.as_str() {
                "check" => "check",
                "entitlements" => "entitlements",
                "tenants" => "tenants",
                "api_keys" => "api_keys",
                "usage" => "usage",
                _ => "other",
            };
            *uses.entry((key, action, hour_ms / 1000)).or_insert(0) += calls;
        }
    }

    /// Drops a cached key, so a revocation applies on this replica at once.
    pub(crate) fn forget(&self, prefix: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(prefix);
    }
}

/// The authenticated caller of an API route.
pub struct ApiCaller {
    pub key: ApiKey,
}

impl ApiCaller {
    /// The caller as the audit log names it.
    pub fn actor(&self) -> marketlink_engine::Actor {
        marketlink_engine::Actor::ApiKey(self.key.prefix.clone())
    }

    /// Counts one call of `action` by this key.
    pub fn count(&self, state: &AppState, action: &'static str) {
        state.keys.count(self.key.id, action, state.now());
    }

    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.key.allows(scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden {
                message: format!("this API key lacks the `{scope}` scope"),
            })
        }
    }

    /// A tenant-scoped key asking about another tenant gets "not found", not "forbidden":
    /// it must not learn that the tenant exists.
    pub fn require_tenant(&self, tenant: TenantId) -> Result<(), AppError> {
        if self.key.sees_tenant(tenant) {
            Ok(())
        } else {
            Err(AppError::NotFound("tenant"))
        }
    }
}

fn unauthorized(message: &str) -> AppError {
    AppError::Unauthorized {
        message: message.into(),
    }
}

/// The key presented on a request, if any.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Verifies a presented `mlk_` key: known, secret matching in constant time, not revoked.
pub async fn verify(state: &AppState, presented: &str) -> Result<ApiKey, AppError> {
    let key =
        parse_key(presented).ok_or_else(|| unauthorized("that is not a marketlink API key"))?;
    let cache = &state.keys;
    let cached = {
        let entries = cache.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key.prefix)
            .filter(|(_, _, at)| at.elapsed() < CACHE_TTL)
            .map(|(k, h, _)| (k.clone(), h.clone()))
    };
    let (record, stored_hash) = match cached {
        Some(found) => found,
        None => {
            let found = state
                .engine
                .api_key_for_verification(key.prefix)
                .await
                .map_err(|e| AppError::unavailable("cannot check the API key", e))?;
            let Some((record, hash)) = found else {
                return Err(unauthorized("unknown or revoked API key"));
            };
            cache
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    key.prefix.to_owned(),
                    (record.clone(), hash.clone(), Instant::now()),
                );
            (record, hash)
        }
    };
    let presented_hash = hash_secret(key.secret);
    if !bool::from(presented_hash.as_bytes().ct_eq(stored_hash.as_bytes())) {
        cache.forget(key.prefix);
        return Err(unauthorized("unknown or revoked API key"));
    }
    if record.revoked_at.is_some() {
        return Err(unauthorized("unknown or revoked API key"));
    }
    Ok(record)
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let presented = presented_key(&parts.headers)
            .ok_or_else(|| unauthorized("send an API key: `Authorization: Bearer mlk_...`"))?;
        Ok(ApiCaller {
            key: verify(state, presented).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_parse_and_hash() {
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let (key, plaintext, hash) = new_key("ci", vec![Scope::UsageWrite], None, now);
        let parsed = parse_key(&plaintext).unwrap();
        assert_eq!(parsed.prefix, key.prefix);
        assert_eq!(hash_secret(parsed.secret), hash);
        assert!(!hash.contains(parsed.secret));
    }

    #[test]
    fn use_counts_survive_a_failed_flush() {
        let cache = KeyCache::default();
        let now = time::macros::datetime!(2026-01-01 10:30 UTC);
        let key = Uuid::now_v7();
        cache.count(key, "check", now);
        cache.count(key, "check", now);
        let drained = cache.drain();
        assert_eq!(
            drained,
            vec![(key, "check".to_string(), 1_767_261_600_000, 2)]
        );
        cache.restore(drained);
        assert_eq!(cache.drain()[0].3, 2);
    }
}
