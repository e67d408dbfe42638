//! RS256 JWT verification against an Entra JWKS: a key cache that follows key rotation (an
//! unknown `kid` triggers one re-download, rate limited so forged `kid`s cannot make us hammer
//! the JWKS endpoint), and claim checks done against our [`Clock`] rather than the wall clock.

use std::{collections::HashMap, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use marketlink_core::Clock;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::http::{Reply, transport_error};

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(crate) enum JwksSource {
    /// A JWKS URL.
    Url(String),
    /// An OIDC discovery document whose `jwks_uri` names the JWKS.
    Discovery(String),
}

/// Why a token was refused, or why we could not check it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// The token is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The keys could not be fetched; try again later.
    #[error("{0}")]
    Unavailable(String),
}

struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<OffsetDateTime>,
    jwks_url: Option<String>,
}

/// A cached JWKS.
pub(crate) struct JwksCache {
    http: reqwest::Client,
    source: JwksSource,
    clock: Arc<dyn Clock>,
    /// Least time between two downloads caused by an unknown `kid`.
    min_refetch: time::Duration,
    /// Keys are refreshed after this long anyway.
    max_age: time::Duration,
    state: Mutex<KeySet>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    kty: String,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct DiscoveryJwks {
    jwks_uri: String,
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl JwksCache {
    pub fn new(
        http: reqwest::Client,
        source: JwksSource,
        clock: Arc<dyn Clock>,
        min_refetch: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            http,
            source,
            clock,
            min_refetch: to_time(min_refetch),
            max_age: to_time(max_age),
            state: Mutex::new(KeySet {
                keys: HashMap::new(),
                fetched_at: None,
                jwks_url: None,
            }),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times the JWKS was downloaded (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key with id `kid`, downloading the set when it is stale or lacks `kid` (at most once
    /// per `min_refetch` for unknown ids).
    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, JwtError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        let stale = state
            .fetched_at
            .is_none_or(|at| now - at >= self.max_age || now < at);
        if stale && let Err(error) = self.refresh(&mut state, now).await {
            // Keep verifying with the last key set that downloaded (Microsoft.IdentityModel's
            // "last known good" configuration) rather than answer every webhook 503 while
            // Entra is unreachable; retried on the next token.
            match state.keys.get(kid) {
                Some(key) => {
                    tracing::warn!(%kid, %error, "cannot refresh the JWKS: using the keys downloaded before");
                    return Ok(key.clone());
                }
                None => return Err(error),
            }
        }
        if let Some(key) = state.keys.get(kid) {
            return Ok(key.clone());
        }
        if !stale {
            // Time since the last download, unless the clock went back (then download).
            let since = state
                .fetched_at
                .map(|at| now - at)
                .filter(|d| !d.is_negative());
            if let Some(since) = since.filter(|since| *since < self.min_refetch) {
                let wait = self.min_refetch - since;
                // A key Microsoft published since our last download looks just like a forged
                // `kid`; we may not download again yet, so we cannot tell: answer "later"
                // (a 5xx Microsoft retries), not "forged" (a 4xx that refuses a change).
                return Err(JwtError::Unavailable(format!(
                    "the token is signed with a key (kid {kid}) not in the key set downloaded {} s ago; the next download is allowed in {} s",
                    since.whole_seconds(),
                    wait.whole_seconds().max(1)
                )));
            }
            tracing::info!(%kid, "unknown JWT signing key id: downloading the JWKS again");
            self.refresh(&mut state, now).await?;
            if let Some(key) = state.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        // Not in a key set downloaded just now: not a key of this tenant.
        Err(JwtError::Invalid(format!(
            "the token is signed with an unknown key (kid {kid})"
        )))
    }

    async fn refresh(&self, state: &mut KeySet, now: OffsetDateTime) -> Result<(), JwtError> {
        let url = match (&self.source, &state.jwks_url) {
            (JwksSource::Url(url), _) => url.clone(),
            (JwksSource::Discovery(_), Some(url)) => url.clone(),
            (JwksSource::Discovery(doc), None) => {
                let discovery: DiscoveryJwks = self.get_json(doc, "OIDC discovery").await?;
                state.jwks_url = Some(discovery.jwks_uri.clone());
                discovery.jwks_uri
            }
        };
        let jwks: Jwks = self.get_json(&url, "JWKS").await?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
                continue;
            };
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(err) => tracing::warn!(%kid, error = %err, "skipping an unusable JWKS key"),
            }
        }
        state.keys = keys;
        state.fetched_at = Some(now);
        Ok(())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, JwtError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| JwtError::Unavailable(transport_error(what, &e).to_string()))?;
        let reply = Reply::read(response, what)
            .await
            .map_err(|e| JwtError::Unavailable(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(JwtError::Unavailable(format!(
                "{what} {url}: HTTP {}",
                reply.status.as_u16()
            )));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| JwtError::Unavailable(format!("{what} {url}: not the expected JSON: {e}")))
    }
}

/// What a token must satisfy besides its signature.
pub(crate) struct Expectations<'a> {
    /// Accepted `aud` values.
    pub audiences: &'a [&'a str],
    /// Skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Verifies the signature (RS256, key by `kid`) and the lifetime and audience of `token`;
/// returns the claims for further checks (issuer, tenant, app), which differ per use.
pub(crate) async fn verify(
    token: &str,
    jwks: &JwksCache,
    clock: &dyn Clock,
    expect: &Expectations<'_>,
) -> Result<serde_json::Map<String, Value>, JwtError> {
    let kid = signing_key_id(token)?;
    let key = jwks.key(&kid).await?;
    let claims = verified_claims(token, &key)?;
    // Lifetime is checked against our clock, not jsonwebtoken's; audience too, to word the error.
    check_lifetime_and_audience(&claims, clock.now().unix_timestamp(), expect)?;
    Ok(claims)
}

/// The claims of `token`, once its RS256 signature over `header.payload` verifies with `key`.
///
/// The header was read (and its `alg` checked) by [`signing_key_id`]. `jsonwebtoken::decode`
/// would decode it again and deserialize the claims twice (once for its own checks, all of which
/// we turn off); next to a fast RSA verification that work counts (docs/performance.md,
/// "Verification").
fn verified_claims(
    token: &str,
    key: &DecodingKey,
) -> Result<serde_json::Map<String, Value>, JwtError> {
    let invalid = |e: &dyn std::fmt::Display| {
        JwtError::Invalid(format!("the token signature does not verify: {e}"))
    };
    // Split as jsonwebtoken does: the signature after the last dot, the payload before it.
    let malformed = || JwtError::Invalid("the token is not a JWT: not three parts".into());
    let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (_, payload) = signed.rsplit_once('.').ok_or_else(malformed)?;
    if !jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, Algorithm::RS256)
        .map_err(|e| invalid(&e))?
    {
        return Err(invalid(&"InvalidSignature"));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| JwtError::Invalid(format!("the token payload is not base64url: {e}")))?;
    serde_json::from_slice(&payload)
        .map_err(|e| JwtError::Invalid(format!("the token claims are not a JSON object: {e}")))
}

/// The `kid` of an RS256 token's header: the key its signature must verify with.
pub(crate) fn signing_key_id(token: &str) -> Result<String, JwtError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| JwtError::Invalid(format!("the token is not a JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(JwtError::Invalid(format!(
            "the token algorithm {:?} is not RS256",
            header.alg
        )));
    }
    header
        .kid
        .ok_or_else(|| JwtError::Invalid("the token header has no kid".into()))
}

/// `exp` and `nbf` against `now` (Unix seconds) with the leeway, and `aud` against ours.
pub(crate) fn check_lifetime_and_audience(
    claims: &serde_json::Map<String, Value>,
    now: i64,
    expect: &Expectations<'_>,
) -> Result<(), JwtError> {
    // In i128: `exp` and `nbf` are whatever the token says, i64::MIN and i64::MAX included,
    // and i64 sums with them overflow (found by the `azure_jwt` fuzz target).
    let now = i128::from(now);
    let leeway = i128::from(expect.leeway.as_secs());
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .map(i128::from)
        .ok_or_else(|| JwtError::Invalid("the token has no exp claim".into()))?;
    if now > exp + leeway {
        return Err(JwtError::Invalid(format!(
            "the token expired {} s ago",
            now - exp
        )));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64).map(i128::from)
        && nbf > now + leeway
    {
        return Err(JwtError::Invalid(format!(
            "the token is not valid for another {} s",
            nbf - now
        )));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| expect.audiences.contains(a)) {
        return Err(JwtError::Invalid(format!(
            "the token audience {audiences:?} is not ours"
        )));
    }
    Ok(())
}

/// A string claim.
pub(crate) fn claim<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(claims: Value) -> Result<(), JwtError> {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        let expect = Expectations {
            audiences: &["us"],
            leeway: Duration::from_secs(60),
        };
        check_lifetime_and_audience(&claims, 1_800_000_000, &expect)
    }

    /// Extreme `exp`/`nbf` values are judged, not overflowed (found by the `azure_jwt` target).
    #[test]
    fn extreme_lifetimes_do_not_overflow() {
        assert!(check(json!({"exp": i64::MAX, "aud": "us"})).is_ok());
        let expired = check(json!({"exp": i64::MIN, "aud": "us"}));
        assert!(matches!(expired, Err(JwtError::Invalid(m)) if m.contains("expired")));
        assert!(check(json!({"exp": i64::MAX, "nbf": i64::MIN, "aud": "us"})).is_ok());
        let early = check(json!({"exp": i64::MAX, "nbf": i64::MAX, "aud": "us"}));
        assert!(matches!(early, Err(JwtError::Invalid(m)) if m.contains("not valid for another")));
    }

    #[test]
    fn lifetime_and_audience() {
        assert!(check(json!({"exp": 1_800_000_000 - 59, "aud": ["x", "us"]})).is_ok());
        assert!(check(json!({"exp": 1_800_000_000 - 61, "aud": "us"})).is_err());
        assert!(check(json!({"exp": 1_800_000_100, "aud": "them"})).is_err());
        assert!(check(json!({"aud": "us"})).is_err());
    }
}
