//! RS256 JWT verification against an Entra JWKS: a key cache that follows key rotation (an
//! unknown `kid` triggers one re-download, rate limited so forged `kid`s cannot make us hammer
//! the JWKS endpoint), and claim checks done against our [`Clock`] rather than the wall clock.

mod claims;

use std::{borrow::Cow, collections::HashMap, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use marketlink_core::Clock;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use self::claims::Header;
pub(crate) use self::claims::{Claims, Text};
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
///
/// The claims borrow from `payload`, which receives the decoded payload: only the claims we
/// read are built, not a map of every claim (docs/performance.md, "Verification").
pub(crate) async fn verify<'p>(
    token: &str,
    jwks: &JwksCache,
    clock: &dyn Clock,
    expect: &Expectations<'_>,
    payload: &'p mut Vec<u8>,
) -> Result<Claims<'p>, JwtError> {
    let mut header = Vec::new();
    let key = jwks.key(&read_signing_key_id(token, &mut header)?).await?;
    let claims = verified_claims(token, &key, payload)?;
    // Lifetime is checked against our clock, not jsonwebtoken's; audience too, to word the error.
    check_lifetime_and_audience(&claims, clock.now().unix_timestamp(), expect)?;
    Ok(claims)
}

/// The claims of `token`, once its RS256 signature over `header.payload` verifies with `key`;
/// they borrow from `payload`, which receives the decoded payload.
///
/// The header was read (and its `alg` checked) by [`read_signing_key_id`]. `jsonwebtoken::decode`
/// would decode it again and deserialize the claims twice (once for its own checks, all of which
/// we turn off); next to a fast RSA verification that work counts (docs/performance.md,
/// "Verification").
fn verified_claims<'p>(
    token: &str,
    key: &DecodingKey,
    payload: &'p mut Vec<u8>,
) -> Result<Claims<'p>, JwtError> {
    let invalid = |e: &dyn std::fmt::Display| {
        JwtError::Invalid(format!("the token signature does not verify: {e}"))
    };
    // Split as jsonwebtoken does: the signature after the last dot, the payload before it.
    let malformed = || JwtError::Invalid("the token is not a JWT: not three parts".into());
    let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (_, encoded) = signed.rsplit_once('.').ok_or_else(malformed)?;
    if !jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, Algorithm::RS256)
        .map_err(|e| invalid(&e))?
    {
        return Err(invalid(&"InvalidSignature"));
    }
    payload.clear();
    URL_SAFE_NO_PAD
        .decode_vec(encoded, payload)
        .map_err(|e| JwtError::Invalid(format!("the token payload is not base64url: {e}")))?;
    read_claims(payload)
}

/// The claims of a decoded payload, which must be a JSON object.
pub(crate) fn read_claims(payload: &[u8]) -> Result<Claims<'_>, JwtError> {
    serde_json::from_slice(payload)
        .map_err(|e| JwtError::Invalid(format!("the token claims are not a JSON object: {e}")))
}

/// The `kid` of an RS256 token's header: the key its signature must verify with.
pub(crate) fn signing_key_id(token: &str) -> Result<String, JwtError> {
    let mut header = Vec::new();
    read_signing_key_id(token, &mut header).map(Cow::into_owned)
}

/// [`signing_key_id`], borrowed from `header`, which receives the decoded header.
///
/// The token is split as `jsonwebtoken::decode_header` splits it (the header is what precedes
/// the last two dots); only `alg` and `kid` are read, not the header's other fields.
fn read_signing_key_id<'h>(token: &str, header: &'h mut Vec<u8>) -> Result<Cow<'h, str>, JwtError> {
    let not_jwt =
        |why: &dyn std::fmt::Display| JwtError::Invalid(format!("the token is not a JWT: {why}"));
    let encoded = token
        .rsplit_once('.')
        .and_then(|(signed, _)| signed.rsplit_once('.'))
        .map(|(header, _)| header)
        .ok_or_else(|| not_jwt(&"InvalidToken"))?;
    header.clear();
    URL_SAFE_NO_PAD
        .decode_vec(encoded, header)
        .map_err(|e| not_jwt(&e))?;
    let Header { alg, kid } = serde_json::from_slice(header).map_err(|e| not_jwt(&e))?;
    match alg.get() {
        Some("RS256") => {}
        Some(alg) => {
            return Err(JwtError::Invalid(format!(
                "the token algorithm {alg} is not RS256"
            )));
        }
        None => return Err(not_jwt(&"the header has no alg")),
    }
    kid.0
        .ok_or_else(|| JwtError::Invalid("the token header has no kid".into()))
}

/// `exp` and `nbf` against `now` (Unix seconds) with the leeway, and `aud` against ours.
pub(crate) fn check_lifetime_and_audience(
    claims: &Claims<'_>,
    now: i64,
    expect: &Expectations<'_>,
) -> Result<(), JwtError> {
    // In i128: `exp` and `nbf` are whatever the token says, i64::MIN and i64::MAX included,
    // and i64 sums with them overflow (found by the `azure_jwt` fuzz target).
    let now = i128::from(now);
    let leeway = i128::from(expect.leeway.as_secs());
    let exp = claims
        .exp
        .0
        .map(i128::from)
        .ok_or_else(|| JwtError::Invalid("the token has no exp claim".into()))?;
    if now > exp + leeway {
        return Err(JwtError::Invalid(format!(
            "the token expired {} s ago",
            now - exp
        )));
    }
    if let Some(nbf) = claims.nbf.0.map(i128::from)
        && nbf > now + leeway
    {
        return Err(JwtError::Invalid(format!(
            "the token is not valid for another {} s",
            nbf - now
        )));
    }
    if !claims.aud.iter().any(|a| expect.audiences.contains(&a)) {
        let audiences: Vec<&str> = claims.aud.iter().collect();
        return Err(JwtError::Invalid(format!(
            "the token audience {audiences:?} is not ours"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn check(claims: Value) -> Result<(), JwtError> {
        let payload = serde_json::to_vec(&claims).unwrap();
        let expect = Expectations {
            audiences: &["us"],
            leeway: Duration::from_secs(60),
        };
        check_lifetime_and_audience(&read_claims(&payload)?, 1_800_000_000, &expect)
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

    /// A claim of another type reads as absent, and a repeated one as its last copy: what
    /// `serde_json::Value`'s accessors on a map of every claim gave.
    #[test]
    fn claims_read_as_a_map_of_every_claim_did() {
        let claims = read_claims(
            br#"{"exp": 1.8e9, "nbf": 18446744073709551615, "aud": ["a", 7, null, "b"],
                "iss": 1, "tid": ["t"], "azp": {"x": "y"}, "appid": "a\u0070p", "sub": "s",
                "sub": "last", "other": {"deep": [1, {"x": null}]}, "exp": 5}"#,
        )
        .unwrap();
        assert_eq!(claims.exp.0, Some(5));
        assert_eq!(claims.nbf.0, None);
        assert_eq!(claims.aud.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((claims.iss.get(), claims.tid.get()), (None, None));
        assert_eq!(claims.azp.get(), None);
        assert_eq!(claims.appid.get(), Some("app"));
        assert_eq!(claims.sub.get(), Some("last"));
        // Borrowed from the payload unless an escape had to be undone.
        assert!(matches!(claims.sub.0, Some(Cow::Borrowed(_))));
        assert!(matches!(claims.appid.0, Some(Cow::Owned(_))));
        let one = read_claims(br#"{"aud": "us", "exp": -3}"#).unwrap();
        assert_eq!(
            (one.aud.iter().collect::<Vec<_>>(), one.exp.0),
            (vec!["us"], Some(-3))
        );
        assert!(
            read_claims(br#"{"aud": {"us": 1}}"#)
                .unwrap()
                .aud
                .iter()
                .next()
                .is_none()
        );
        // Claims we skip are still checked as a map of every claim checked them.
        let lone_surrogate = br#"{"aud": "us", "exp": 5, "other": "\ud800"}"#;
        let not_utf8 = b"{\"aud\": \"us\", \"exp\": 5, \"other\": \"\xff\"}";
        let huge = br#"{"aud": "us", "exp": 5, "other": 1e400}"#;
        for refused in [&lone_surrogate[..], not_utf8, huge] {
            assert!(serde_json::from_slice::<Value>(refused).is_err());
            assert!(read_claims(refused).is_err());
        }
        for not_an_object in [&b"[1, 2]"[..], b"5", b"\"us\"", b"null", b"{", b"{} x"] {
            let refused = read_claims(not_an_object);
            assert!(
                matches!(&refused, Err(JwtError::Invalid(m)) if m.contains("not a JSON object")),
                "{refused:?}"
            );
        }
    }

    fn header_of(header: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        format!("{header}.e30.c2ln")
    }

    #[test]
    fn the_header_names_an_rs256_key() {
        let kid = |header: Value| signing_key_id(&header_of(&header)).map_err(|e| e.to_string());
        assert_eq!(
            kid(json!({"alg": "RS256", "kid": "k1", "typ": "JWT", "x5t": "k1"})).unwrap(),
            "k1"
        );
        let refused = |header: Value, needle: &str| {
            let error = kid(header).unwrap_err();
            assert!(error.contains(needle), "{error}");
        };
        refused(
            json!({"alg": "HS256", "kid": "k1"}),
            "algorithm HS256 is not RS256",
        );
        refused(json!({"alg": "none", "kid": "k1"}), "is not RS256");
        refused(json!({"kid": "k1"}), "not a JWT");
        refused(json!({"alg": ["RS256"], "kid": "k1"}), "not a JWT");
        refused(json!({"alg": "RS256"}), "no kid");
        refused(json!({"alg": "RS256", "kid": 1}), "no kid");
        refused(json!(["RS256", "k1"]), "not a JWT");
        // `alg` or `kid` twice: never a question of which copy counts.
        let twice = |member: &str| {
            let json = format!(r#"{{"alg": "RS256", "kid": "k1", {member}}}"#);
            signing_key_id(&format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(json)))
        };
        assert!(
            matches!(twice(r#""alg": "RS256""#), Err(JwtError::Invalid(m)) if m.contains("duplicate field `alg`"))
        );
        assert!(
            matches!(twice(r#""kid": "k2""#), Err(JwtError::Invalid(m)) if m.contains("duplicate field `kid`"))
        );
        for token in ["", "a", "a.b", "!.e30.c2ln"] {
            assert!(
                matches!(signing_key_id(token), Err(JwtError::Invalid(m)) if m.contains("not a JWT"))
            );
        }
    }
}
