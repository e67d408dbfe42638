//! SigV4: a wrong secret, an unknown access key and an unsigned request are refused.

use aws_sdk_marketplacemetering::error::ProvideErrorMetadata;
use marketlink_sandbox::aws::OfferKind;

use super::common::*;

#[tokio::test]
async fn sigv4_is_verified() {
    let h = start().await;
    let token =
        h.sb.issue_registration_token(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let err = metering(&h.url, "wrong-secret")
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = metering_key(&h.url, "AKIAUNKNOWN")
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");

    // Unsigned request straight over HTTP.
    let resp = raw_post(
        &h.url,
        "/",
        &[
            ("x-amz-target", "AWSMPMeteringService.ResolveCustomer"),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        br#"{"RegistrationToken":"x"}"#,
    )
    .await;
    assert_eq!(resp.0, 400);
    assert!(
        resp.1.contains("MissingAuthenticationTokenException"),
        "{}",
        resp.1
    );
    assert!(h.sb.call_log().iter().any(|c| c.status == 403));
}
