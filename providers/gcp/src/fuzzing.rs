//! Entry points for fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): the parsers of what
//! Google sends, reached without network or clock. Not an API: hidden from the docs and free
//! to change with the targets.

use marketlink_core::{Marketplace, ProviderError};
use serde_json::Value;

use crate::{keys, model, pubsub, signup};

/// A push or pulled body as `authenticate` reads it after the token check: the Procurement
/// message inside the base64 `data`.
pub fn pubsub_body(body: &[u8]) -> Result<Value, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        message: pubsub::PubsubMessage,
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| ProviderError::retryable(format!("not an envelope: {e}")))?;
    pubsub::notice_of(&envelope.message).map(|(payload, _)| payload)
}

/// The sign-up JWT's header as `resolve` reads it before fetching keys: the `kid` of an RS256
/// token.
pub fn signup_key_id(token: &str) -> Result<String, ProviderError> {
    signup::key_id(token)
}

/// The sign-up JWT's claims (JSON) as `resolve` checks them once the signature, `aud` and
/// `iss` are verified: lifetime, freshness at `now` with `skew_secs`, the account in `sub`.
pub fn signup_claims(
    json: &[u8],
    now: i64,
    skew_secs: i64,
) -> Result<signup::SignUp, ProviderError> {
    let claims: signup::Claims = serde_json::from_slice(json)
        .map_err(|e| ProviderError::InvalidToken(format!("claims: {e}")))?;
    signup::accept(claims, now, skew_secs)
}

/// A `{kid: PEM certificate}` key map; returns the kids of the RSA keys it holds.
pub fn key_map(body: &[u8]) -> Result<Vec<String>, ProviderError> {
    keys::parse_key_map(body).map(|keys| keys.into_keys().collect())
}

/// An entitlement as Procurement returns it, and the reference it becomes.
pub fn entitlement(body: &[u8]) -> Option<(String, Option<marketlink_core::SubscriptionStatus>)> {
    let entitlement: model::Entitlement = serde_json::from_slice(body).ok()?;
    let marketplace = Marketplace::parse("gcp").ok()?;
    let reference = entitlement.external_ref(&marketplace);
    let _ = entitlement.term();
    Some((reference.external_id, entitlement.status()))
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::*;

    #[test]
    fn parsers_refuse_garbage_without_panicking() {
        assert!(pubsub_body(b"{").is_err());
        assert!(pubsub_body(br#"{"message":{"data":"!!"}}"#).is_err());
        let data = STANDARD.encode(r#"{"eventId":"e","providerId":"p","entitlement":{"id":"x"}}"#);
        let body = format!(r#"{{"message":{{"data":"{data}","messageId":"1"}}}}"#);
        assert_eq!(pubsub_body(body.as_bytes()).unwrap()["eventId"], "e");
        assert!(key_map(br#"{"k":"not a pem"}"#).unwrap().is_empty());
        assert!(key_map(b"[]").is_err());
        let parsed =
            entitlement(br#"{"name":"providers/p/entitlements/e1","state":"ENTITLEMENT_ACTIVE"}"#);
        assert_eq!(
            parsed,
            Some((
                "e1".into(),
                Some(marketlink_core::SubscriptionStatus::Active)
            ))
        );
        assert_eq!(entitlement(br#"{"offerEndTime":"yesterday"}"#), None);
    }

    #[test]
    fn signup_claims_are_checked_without_overflow() {
        let claims = |iat: i64, exp: i64| {
            format!(
                r#"{{"iss":"{}","sub":"acct","iat":{iat},"exp":{exp},"google":{{"orders":["o1"]}}}}"#,
                crate::SIGNUP_ISSUER
            )
        };
        let accepted = signup_claims(claims(1000, 1300).as_bytes(), 1100, 60).unwrap();
        assert_eq!(
            (accepted.account_id.as_str(), accepted.orders.len()),
            ("acct", 1)
        );
        assert!(matches!(
            signup_claims(claims(1000, 1300).as_bytes(), 1400, 60),
            Err(ProviderError::ExpiredToken(_))
        ));
        assert!(signup_claims(claims(1000, 1301).as_bytes(), 1100, 60).is_err());
        assert!(signup_claims(claims(-1, i64::MAX).as_bytes(), 0, 60).is_err());
        // Near i64's ends: refused as not yet issued / expired, without overflowing.
        assert!(signup_claims(claims(i64::MAX - 10, i64::MAX).as_bytes(), 0, 60).is_err());
        assert!(signup_claims(claims(i64::MIN, i64::MIN + 10).as_bytes(), 0, i64::MAX).is_ok());
        assert!(signup_claims(claims(i64::MIN, i64::MIN + 10).as_bytes(), i64::MAX, 60).is_err());
        assert!(signup_key_id("a.b.c").is_err());
    }
}
