//! Google's sign-up JWT (`x-gcp-marketplace-token`): its header (RS256, `kid`) and its claims
//! as `resolve` checks them after the signature (lifetime at most five minutes, freshness
//! against the clock, an account in `sub`). As for `azure_jwt`, the input is the token, then
//! optionally a newline and the claims as JSON, which mutate better than base64.
#![no_main]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use marketlink_gcp::{
    SIGNUP_ISSUER,
    fuzzing::{signup_claims, signup_key_id},
};
use serde_json::{Map, Value};

/// A fixed "now" (2026-12-07), so a run is reproducible.
const NOW: i64 = 1_796_650_000;
const SKEW: i64 = 60;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (token, given_claims) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(kid) = signup_key_id(token) {
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
    let Ok(sign_up) = signup_claims(&json, NOW, SKEW) else {
        return;
    };
    // Accepted claims are an object from Google's issuer, live now, living five minutes at
    // most, naming the account they were accepted for.
    // serde_json skips a field the struct does not read without checking its UTF-8, so the
    // parser may accept bytes a `Value` refuses: compare with a lossy reading, which keeps
    // every field the parser does read.
    let text = String::from_utf8_lossy(&json);
    let Ok(claims) = serde_json::from_str::<Map<String, Value>>(&text) else {
        panic!("accepted claims that are not a JSON object");
    };
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(SIGNUP_ISSUER));
    let number = |name: &str| claims.get(name).and_then(Value::as_i64).map(i128::from);
    let (Some(iat), Some(exp)) = (number("iat"), number("exp")) else {
        panic!("accepted claims without iat and exp");
    };
    assert!((0..=300).contains(&(exp - iat)), "lifetime {}", exp - iat);
    assert!(iat <= i128::from(NOW + SKEW) && exp + i128::from(SKEW) >= i128::from(NOW));
    assert!(!sign_up.account_id.trim().is_empty());
    assert_eq!(claims.get("sub").and_then(Value::as_str), Some(sign_up.account_id.as_str()));
    let listed = claims
        .get("google")
        .and_then(|g| g.get("orders"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert!(sign_up.orders.len() <= listed);
});
