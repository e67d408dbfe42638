//! The string SNS signs, for every envelope that parses as a JSON object: agrees with the
//! sandbox's signer, survives a JSON round trip, and holds exactly the members it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_aws::sns::string_to_sign;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let Ok(signed) = string_to_sign(&envelope) else {
        return;
    };
    assert_eq!(
        signed,
        marketlink_sandbox::aws::sns::string_to_sign(&envelope)
    );
    // Serialised and read again (as SQS stores it), the envelope signs the same string.
    let again: Map<String, Value> =
        match serde_json::from_str(&Value::Object(envelope.clone()).to_string()) {
            Ok(again) => again,
            Err(e) => panic!("a parsed envelope does not parse again: {e}"),
        };
    assert_eq!(string_to_sign(&again).ok().as_ref(), Some(&signed));
    // Every member SNS signs is covered: altering one alters the string (or makes it unsigned).
    for key in [
        "Message",
        "MessageId",
        "Subject",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ] {
        let Some(Value::String(value)) = envelope.get(key) else {
            continue;
        };
        if !signed.contains(&format!("{key}\n{value}\n")) {
            continue;
        }
        let mut altered = envelope.clone();
        altered.insert(key.into(), Value::String(format!("{value}!")));
        assert_ne!(
            string_to_sign(&altered).ok().as_ref(),
            Some(&signed),
            "{key} is not signed"
        );
    }
});
