//! The body of `POST /api/v1/usage`: one event, an array, or `{"events": [...]}`. What parses
//! is written back as JSON and must read back to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_engine::metering::UsageInput;
use marketlink_web::fuzzing::usage_body;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

/// An event as a client would send it; quantities as decimal strings, which are exact.
fn to_json(input: &UsageInput) -> Value {
    let mut event = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            event.insert(key.into(), value);
        }
    };
    put(
        "subscription_id",
        input.subscription_id.map(|id| json!(id.to_string())),
    );
    put("tenant_id", input.tenant_id.map(|id| json!(id.to_string())));
    put("product", input.product.as_ref().map(|p| json!(p.as_str())));
    put("dimension", Some(json!(input.dimension)));
    put("quantity", Some(json!(input.quantity.to_string())));
    let timestamp = match input.timestamp.format(&Rfc3339) {
        Ok(text) => text,
        Err(e) => panic!("a parsed timestamp does not format: {e}"),
    };
    put("timestamp", Some(json!(timestamp)));
    put(
        "idempotency_key",
        input.idempotency_key.as_ref().map(|k| json!(k)),
    );
    let allocations: Vec<Value> = input
        .allocations
        .iter()
        .map(|a| {
            let tags: Map<String, Value> =
                a.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"quantity": a.quantity.to_string(), "tags": tags})
        })
        .collect();
    put("allocations", Some(Value::Array(allocations)));
    Value::Object(event)
}

fuzz_target!(|data: &[u8]| {
    let Ok(inputs) = usage_body(data) else {
        return;
    };
    let written = Value::Array(inputs.iter().map(to_json).collect()).to_string();
    match usage_body(written.as_bytes()) {
        Ok(again) => assert_eq!(again, inputs, "{written}"),
        Err(e) => panic!("{written} does not read back: {e}"),
    }
    for input in &inputs {
        assert!(input.quantity.micros() >= 0);
        let parts = input.allocations.iter().map(|a| a.quantity.micros());
        assert!(parts.into_iter().all(|m| m >= 0));
    }
});
