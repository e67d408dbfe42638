//! The webhook's `Authorization` header: the bearer token, its JWT header (`alg`, `kid`) and
//! its claims (read from the payload's JSON as the webhook reads them; lifetime, audience,
//! issuer, tenant, app). The claims are checked here without a signature, which the real path
//! verifies first: the claim checks must hold on their own.
#![no_main]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use marketlink_azure::fuzzing::{bearer_token, jwt_claims, jwt_key_id};
use marketlink_fuzz::{CLIENT_ID, TENANT, azure_config};
use serde_json::{Map, Value};

/// A fixed "now" (2026-12-07, when the seed tokens are live), so a run is reproducible.
const NOW: i64 = 1_796_650_000;
const LEEWAY: i64 = 300;

// The input is the header value, then optionally a newline and the claims as JSON: the
// claims are checked as given, without going through base64, which mutates poorly.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (header, given_claims) = text.split_once('\n').unwrap_or((text, ""));
    let token = match bearer_token(header) {
        Ok(token) => {
            assert!(!token.is_empty() && token.trim() == token);
            token
        }
        Err(_) => header.to_owned(),
    };
    if let Ok(kid) = jwt_key_id(&token) {
        assert!(token.matches('.').count() >= 2, "a kid from {token:?}");
        let _ = kid;
    }
    let json = if given_claims.is_empty() {
        let Some(payload) = token.split('.').nth(1) else {
            return;
        };
        let Ok(json) = URL_SAFE_NO_PAD.decode(payload) else {
            return;
        };
        json
    } else {
        given_claims.as_bytes().to_vec()
    };
    if jwt_claims(azure_config(), &json, NOW).is_ok() {
        // Accepted claims are a JSON object as serde_json reads one, and meet every check.
        let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(&json) else {
            panic!("accepted claims that are not a JSON object");
        };
        let exp = claims.get("exp").and_then(Value::as_i64);
        assert!(exp.is_some_and(|exp| i128::from(exp) + i128::from(LEEWAY) >= i128::from(NOW)));
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
            assert!(i128::from(nbf) <= i128::from(NOW) + i128::from(LEEWAY));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == CLIENT_ID,
            Some(Value::Array(items)) => items.iter().any(|a| a == CLIENT_ID),
            _ => false,
        };
        assert!(aud_ok, "accepted audience {:?}", claims.get("aud"));
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let tid = text("tid")
            .or_else(|| text("http://schemas.microsoft.com/identity/claims/tenantid"))
            .unwrap_or_default();
        assert!(tid.eq_ignore_ascii_case(TENANT), "accepted tenant {tid}");
    }
});
