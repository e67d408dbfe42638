//! An entitlement as the Procurement API returns it, read as `resolve`, `interpret` and
//! `survey` read it: the reference it becomes and the status its state means.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_gcp::fuzzing::entitlement;
use serde_json::Value;

/// The EntitlementState values with a marketlink status (S8); any other maps to none.
const KNOWN_STATES: [&str; 7] = [
    "ENTITLEMENT_ACTIVATION_REQUESTED",
    "ENTITLEMENT_ACTIVE",
    "ENTITLEMENT_PENDING_PLAN_CHANGE",
    "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL",
    "ENTITLEMENT_PENDING_CANCELLATION",
    "ENTITLEMENT_CANCELLED",
    "ENTITLEMENT_SUSPENDED",
];

fuzz_target!(|data: &[u8]| {
    let Some((external_id, status)) = entitlement(data) else {
        return;
    };
    // serde_json skips a field the struct does not read without checking its UTF-8, so the
    // parser may accept bytes a `Value` refuses: compare with a lossy reading, which keeps
    // every field the parser does read.
    let text = String::from_utf8_lossy(data);
    let Ok(Value::Object(read)) = serde_json::from_str::<Value>(&text) else {
        panic!("an entitlement from a document that is not a JSON object");
    };
    // The id is the name's last segment: never a path, so no two names share one by prefix.
    assert!(!external_id.contains('/'), "id {external_id:?}");
    let name = read.get("name").and_then(Value::as_str).unwrap_or_default();
    assert!(name.ends_with(&external_id), "id {external_id:?} of name {name:?}");
    let state = read.get("state").and_then(Value::as_str).unwrap_or_default();
    assert_eq!(status.is_some(), KNOWN_STATES.contains(&state), "state {state:?}");
});
