//! A landing request's query string or form body: the fields, and the token each marketplace
//! takes from them (AWS `x-amzn-marketplace-token`, Microsoft `token`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fields = marketlink_web::fuzzing::landing_fields(data);
    // Encoded again and read back, the fields are the same (form encoding round trip).
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    assert_eq!(
        marketlink_web::fuzzing::landing_fields(encoded.as_bytes()),
        fields
    );

    if let Some(token) = marketlink_aws::fuzzing::landing_token(&fields) {
        assert!(!token.is_empty() && token.trim() == token, "{token:?}");
        assert!(
            fields
                .iter()
                .any(|(k, v)| k == "x-amzn-marketplace-token" && v.trim() == token)
        );
    } else {
        assert!(
            !fields
                .iter()
                .any(|(k, v)| k == "x-amzn-marketplace-token" && !v.trim().is_empty())
        );
    }

    let first = fields.iter().find(|(k, _)| k == "token").map(|(_, v)| v);
    match marketlink_azure::fuzzing::landing_token(&fields) {
        Some(token) => {
            assert!(!token.is_empty());
            let Some(raw) = first else {
                panic!("a Microsoft token without a token field");
            };
            // A space is a `+` that lost its encoding: none survives an un-escaped token, and
            // normalising what came out changes nothing more.
            if !raw.contains('%') {
                assert!(!token.contains(' '), "{token:?} from {raw:?}");
                assert_eq!(marketlink_azure::normalize_landing_token(&token), token);
            }
        }
        None => assert!(
            first.is_none_or(|raw| marketlink_azure::normalize_landing_token(raw).is_empty())
        ),
    }
});
