//! The sign-up JWT Google POSTs as `x-gcp-marketplace-token` (gcp.md §1, S1/S2): RS256 with a
//! `kid` from the pinned cloud-commerce-partner key URL, `iss` that URL exactly, `aud` the
//! product's service name, `exp` five minutes after `iat`, `sub` the Procurement account id,
//! `google.*` optional.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, Validation};
use marketlink_core::ProviderError;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::{config::SIGNUP_ISSUER, keys::KeyCache};

/// Google issues the token for five minutes; a longer one is not Google's (S13 rejects it).
const MAX_LIFETIME_SECS: i64 = 300;

#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default)]
    google: Option<Value>,
}

/// What a verified sign-up token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignUp {
    /// The Procurement account id (`sub`).
    pub account_id: String,
    /// `google.orders`: the orders this sign-up is for (strings or `{orderId}` objects, S11/S13).
    pub orders: Vec<String>,
    /// `google.user_identity`, an obfuscated Google user id, when present.
    pub user_identity: Option<String>,
}

pub(crate) struct SignUpVerifier<'a> {
    pub(crate) keys: &'a KeyCache,
    pub(crate) audience: &'a str,
    pub(crate) now: OffsetDateTime,
    pub(crate) skew_secs: i64,
}

impl SignUpVerifier<'_> {
    pub(crate) async fn verify(&self, token: &str) -> Result<SignUp, ProviderError> {
        let kid = key_id(token)?;
        let key = self.keys.key(&kid).await?.ok_or_else(|| {
            ProviderError::InvalidToken(format!("kid {kid} is not one of Google's keys"))
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Expiry is checked below against our Clock, not the wall clock.
        validation.validate_exp = false;
        validation.required_spec_claims =
            HashSet::from(["iss", "aud", "sub", "exp"].map(String::from));
        validation.set_audience(&[self.audience]);
        validation.set_issuer(&[SIGNUP_ISSUER]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| ProviderError::InvalidToken(format!("sign-up token refused: {e}")))?
            .claims;
        accept(claims, self.now.unix_timestamp(), self.skew_secs)
    }
}

/// The header's `kid`, for a token Google signs with RS256: the key to verify it with.
pub(crate) fn key_id(token: &str) -> Result<String, ProviderError> {
    let invalid = |why: String| ProviderError::InvalidToken(why);
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(invalid(format!(
            "alg {:?}, Google signs with RS256",
            header.alg
        )));
    }
    header
        .kid
        .ok_or_else(|| invalid("no kid in the header".into()))
}

/// The checks on claims whose signature, `aud` and `iss` jsonwebtoken has verified: lifetime
/// and freshness against our clock (`now`), and an account in `sub`.
pub(crate) fn accept(claims: Claims, now: i64, skew_secs: i64) -> Result<SignUp, ProviderError> {
    check_times(&claims, now, skew_secs)?;
    if claims.iss != SIGNUP_ISSUER || claims.sub.trim().is_empty() {
        return Err(ProviderError::InvalidToken(
            "no procurement account in sub".into(),
        ));
    }
    Ok(SignUp {
        orders: orders(claims.google.as_ref()),
        user_identity: claims
            .google
            .as_ref()
            .and_then(|g| g.get("user_identity"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        account_id: claims.sub,
    })
}

fn check_times(claims: &Claims, now: i64, skew_secs: i64) -> Result<(), ProviderError> {
    // i128: `exp` and `iat` are the sender's numbers and may be anywhere in i64.
    let (iat, exp) = (i128::from(claims.iat), i128::from(claims.exp));
    let (now, skew) = (i128::from(now), i128::from(skew_secs));
    if exp - iat > i128::from(MAX_LIFETIME_SECS) || exp < iat {
        return Err(ProviderError::InvalidToken(format!(
            "lives {} s, Google's live {MAX_LIFETIME_SECS} s",
            exp - iat
        )));
    }
    if iat > now + skew {
        return Err(ProviderError::InvalidToken("issued in the future".into()));
    }
    if now > exp + skew {
        return Err(ProviderError::ExpiredToken(
            "the sign-up token has expired".into(),
        ));
    }
    Ok(())
}

fn orders(google: Option<&Value>) -> Vec<String> {
    let Some(list) = google
        .and_then(|g| g.get("orders"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|o| {
            o.as_str()
                .or_else(|| o.get("orderId").and_then(Value::as_str))
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn orders_are_strings_or_objects() {
        let google = json!({"orders": ["o1", {"orderId": "o2"}, 3]});
        assert_eq!(orders(Some(&google)), vec!["o1", "o2"]);
        assert!(orders(None).is_empty());
    }
}
