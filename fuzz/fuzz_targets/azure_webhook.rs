//! The body Microsoft POSTs to `/azure/webhook`: the notice, its inbox key and its kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_azure::fuzzing::webhook_body;

fuzz_target!(|data: &[u8]| {
    let Ok(notice) = webhook_body(data) else {
        return;
    };
    assert!(!notice.operation_id.is_empty() && !notice.subscription_id.is_empty());
    assert_eq!(
        notice.subscription_id,
        notice.subscription_id.to_ascii_lowercase()
    );
    // The key keeps the operation (any case) and the status, so retries collapse and stages do not.
    let status = if notice.status.is_empty() {
        "unknown"
    } else {
        notice.status.as_str()
    };
    assert!(
        notice
            .dedup_key
            .starts_with(&format!("{}:", notice.operation_id.to_ascii_lowercase()))
            && notice.dedup_key.ends_with(&format!(":{status}")),
        "{} for operation {} status {status}",
        notice.dedup_key,
        notice.operation_id
    );
    assert!(!notice.kind.is_empty());
    // The stored payload reads back to the same notice (interpret reads it again).
    let stored = notice.payload.to_string();
    let Ok(again) = webhook_body(stored.as_bytes()) else {
        panic!("a stored webhook payload does not read again");
    };
    assert_eq!(
        (
            &again.operation_id,
            &again.subscription_id,
            &again.dedup_key,
            &again.kind
        ),
        (
            &notice.operation_id,
            &notice.subscription_id,
            &notice.dedup_key,
            &notice.kind
        )
    );
});
