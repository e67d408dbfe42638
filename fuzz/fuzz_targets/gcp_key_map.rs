//! A key map Google publishes (the cloud-commerce-partner certificates of the sign-up JWT, the
//! OAuth keys of Pub/Sub push tokens): `{kid: PEM}` or a JWK set. The kids taken are ones the
//! document names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_gcp::fuzzing::key_map;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(kids) = key_map(data) else {
        return;
    };
    if kids.is_empty() {
        return;
    }
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(data) else {
        panic!("keys from a document that is not a JSON object");
    };
    let named: Vec<&str> = match document.get("keys") {
        Some(Value::Array(set)) => set
            .iter()
            .filter_map(|jwk| jwk.get("kid").and_then(Value::as_str))
            .collect(),
        Some(_) => panic!("keys from a JWK set whose keys are not a list"),
        None => document.keys().map(String::as_str).collect(),
    };
    for kid in &kids {
        assert!(named.contains(&kid.as_str()), "kid {kid:?} is not in the document");
    }
});
