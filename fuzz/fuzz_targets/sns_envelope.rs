//! An SNS envelope as `/aws/sns` reads it (and SQS, for SNS-delivered messages): the members
//! read before the signature, the signed parts, SubscribeURL and SigningCertURL checks, and a
//! Notification's Message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_fuzz::{is_sns_host, sns_verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(read) = marketlink_aws::fuzzing::sns_envelope(sns_verifier(), data) else {
        return;
    };
    assert!(!read.kind.is_empty() && !read.message_id.is_empty() && !read.topic.is_empty());
    if let Ok((data, version)) = &read.signed {
        // Only the three message types are signed, each string ends with its Type.
        assert!(
            matches!(
                read.kind.as_str(),
                "Notification" | "SubscriptionConfirmation" | "UnsubscribeConfirmation"
            ),
            "{} was signed",
            read.kind
        );
        assert!(data.starts_with("Message\n"), "{data:?}");
        assert!(
            data.ends_with(&format!("\nType\n{}\n", read.kind)),
            "{data:?}"
        );
        assert!(!version.is_empty());
        // The sandbox signs what we verify: both build the same string.
        assert_eq!(
            data,
            &marketlink_sandbox::aws::sns::string_to_sign(&read.envelope)
        );
    }
    for url in [&read.subscribe_url, &read.cert_url].into_iter().flatten() {
        if let Ok(url) = url {
            assert_eq!(url.scheme(), "https", "{url}");
            assert!(is_sns_host(url), "{url} is not an SNS host");
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{url}"
            );
        }
    }
    if let Some(Ok(url)) = &read.cert_url {
        assert!(
            url.path().ends_with(".pem") && url.query().is_none(),
            "{url}"
        );
    }
    assert_eq!(read.message.is_some(), read.kind == "Notification");
    if let Some(Ok((action, _))) = &read.message {
        assert!(!action.is_empty());
    }
});
