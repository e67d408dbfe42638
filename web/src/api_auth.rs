//! Vendor API keys on requests: `Authorization: Bearer mlk_...` (or `x-api-key`), verified
//! against the stored SHA-256 in constant time, cached briefly so the hot entitlement check
//! does no I/O, with every call counted per key and hour.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
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
    /// By prefix: the stored record and the SHA-256 of its secret (hex), shared with the
    /// requests that use them rather than copied for each.
    entries: Mutex<HashMap<String, (Arc<Verified>, Instant)>>,
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
    String::from_utf8_lossy(&hex_digest(secret)).into_owned()
}

/// The SHA-256 of `secret` in lowercase hex, on the stack: the check path hashes every
/// request's key and should not allocate for it.
fn hex_digest(secret: &str) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// A stored key and the hash its secret must match.
struct Verified {
    record: Arc<ApiKey>,
    hash: String,
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
    pub key: Arc<ApiKey>,
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
pub async fn verify(state: &AppState, presented: &str) -> Result<Arc<ApiKey>, AppError> {
    let key =
        parse_key(presented).ok_or_else(|| unauthorized("that is not a marketlink API key"))?;
    let cache = &state.keys;
    let cached = {
        let entries = cache.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key.prefix)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(verified, _)| verified.clone())
    };
    let verified = match cached {
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
            let verified = Arc::new(Verified {
                record: Arc::new(record),
                hash,
            });
            cache
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.prefix.to_owned(), (verified.clone(), Instant::now()));
            verified
        }
    };
    if !bool::from(hex_digest(key.secret)[..].ct_eq(verified.hash.as_bytes())) {
        cache.forget(key.prefix);
        return Err(unauthorized("unknown or revoked API key"));
    }
    if verified.record.revoked_at.is_some() {
        return Err(unauthorized("unknown or revoked API key"));
    }
    Ok(verified.record.clone())
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
    fn secrets_hash_to_lowercase_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
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
