//! A Pub/Sub push body (or a pulled message's envelope): the Procurement message inside the
//! base64 `data`, read as `authenticate` reads it once the push token is checked. What is
//! stored is exactly the JSON inside `data`.
#![no_main]

use base64::{Engine, engine::general_purpose::STANDARD};
use libfuzzer_sys::fuzz_target;
use marketlink_gcp::fuzzing::pubsub_body;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = pubsub_body(data) else {
        return;
    };
    // serde_json skips a field the struct does not read without checking its UTF-8, so the
    // parser may accept bytes a `Value` refuses: compare with a lossy reading, which keeps
    // every field the parser does read.
    let text = String::from_utf8_lossy(data);
    let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
        panic!("a payload from a body that is not JSON");
    };
    let encoded = envelope["message"]["data"].as_str().unwrap_or_default();
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        panic!("a payload from data that is not base64");
    };
    let Ok(inner) = serde_json::from_slice::<Value>(&decoded) else {
        panic!("a payload from data that is not JSON");
    };
    assert_eq!(inner, payload);
    assert!(payload.is_object(), "a Procurement message is an object");
});
