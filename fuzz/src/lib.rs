//! What the fuzz targets share: the fixed configuration the parsers are read with, and the
//! checks a parsed value must pass. Each target feeds libFuzzer's bytes to one parser of
//! outside input (docs/security.md, "Fuzzing").

use std::sync::OnceLock;

use marketlink_aws::sns::SnsVerifier;
use marketlink_azure::AzureConfig;
// Members whose numbers the sandbox encodes as CBOR timestamps (tag 1 + float).
use marketlink_sandbox::aws::wire::TIMESTAMP_MEMBERS;
use serde_json::Value;

/// The SNS hosts of production (`sns.<region>.amazonaws.com`), https only, SHA1 allowed.
pub fn sns_verifier() -> &'static SnsVerifier {
    static VERIFIER: OnceLock<SnsVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        match SnsVerifier::new(vec!["sns.*.amazonaws.com".into()], false, false) {
            Ok(verifier) => verifier,
            Err(e) => panic!("the SNS verifier cannot be built: {e}"),
        }
    })
}

/// The host an accepted SNS URL may name: one label between `sns.` and `.amazonaws.com`.
pub fn is_sns_host(url: &url::Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    url.port().is_none()
        && host
            .strip_prefix("sns.")
            .and_then(|h| h.strip_suffix(".amazonaws.com"))
            .is_some_and(|region| !region.is_empty() && !region.contains('.'))
}

/// The seller account the EventBridge targets expect (the sandbox's).
pub const SELLER_ACCOUNT: &str = "111122223333";

/// The publisher tenant, app and authority of the Azure sandbox, whose tokens are the seeds.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "5f3b2c1d-7a4e-4b8f-9c0d-1e2f3a4b5c6d";
const AUTHORITY: &str = "https://127.0.0.1:44137";

pub fn azure_config() -> &'static AzureConfig {
    static CONFIG: OnceLock<AzureConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = serde_json::json!({
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "authority_host": AUTHORITY,
            "jwt_leeway_secs": 300,
        });
        match serde_json::from_value(json) {
            Ok(config) => config,
            Err(e) => panic!("the Azure configuration does not parse: {e}"),
        }
    })
}

/// Nesting depth of a JSON value (a scalar is 0).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What the sandbox's CBOR encoding keeps of a JSON tree: no null members, timestamp members'
/// numbers as floats.
pub fn cbor_view(value: &Value, timestamp: bool) -> Value {
    match value {
        Value::Number(n) if timestamp => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(|v| cbor_view(v, false)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    (
                        k.clone(),
                        cbor_view(v, TIMESTAMP_MEMBERS.contains(&k.as_str())),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The sandbox's own CBOR encoding of a request tree decodes to what it kept. Trees at the
/// decoder's nesting bound are left out: a timestamp tag adds a level.
pub fn cbor_round_trip(value: &Value) {
    use marketlink_sandbox::aws::wire::{cbor_to_json, json_to_cbor};
    if depth(value) >= 31 {
        return;
    }
    let bytes = match json_to_cbor(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded tree does not encode: {e}"),
    };
    match cbor_to_json(&bytes) {
        Ok(back) => assert_eq!(back, cbor_view(value, false)),
        Err(e) => panic!("the sandbox's own CBOR does not decode: {e}"),
    }
}
