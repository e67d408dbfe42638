//! An EventBridge event as `/aws/events` reads it: source, id, detail-type, account and time,
//! then the agreement members interpretation acts on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_fuzz::SELLER_ACCOUNT;

fuzz_target!(|data: &[u8]| {
    // Without a configured seller account, and with one: the account check only narrows.
    let open = marketlink_aws::fuzzing::eventbridge_event(data, None);
    let Ok(seller) = marketlink_aws::fuzzing::eventbridge_event(data, Some(SELLER_ACCOUNT)) else {
        return;
    };
    let Ok(open) = open else {
        panic!("accepted for the seller account but refused without one");
    };
    assert_eq!(
        (&open.id, &open.detail_type, open.at),
        (&seller.id, &seller.detail_type, seller.at)
    );
    assert!(!seller.id.is_empty() && !seller.detail_type.is_empty());
    let Ok(agreement) = &seller.agreement else {
        return;
    };
    // Both read the same `time`.
    assert_eq!(agreement.occurred_at, seller.at);
    assert!(!agreement.agreement_id.is_empty());
    assert!(seller.detail_type.starts_with(&agreement.base_detail_type));
    if let Some((arn, key)) = &agreement.license {
        assert!(arn.starts_with("arn:"), "{arn}");
        assert_eq!(arn.trim(), arn, "a canonical ARN is trimmed");
        assert!(
            arn.ends_with(key.as_str()),
            "{arn} does not end in its key {key}"
        );
        assert!(!key.contains(['/', ':']), "{key}");
    }
});
