//! GetEntitlements over RPC v2 CBOR (current SDK) and awsJson1.1 (boto3 / older SDKs).

use marketlink_sandbox::aws::{InjectedError, OfferKind, SubscriptionAction};

use super::common::*;

#[tokio::test]
async fn get_entitlements_over_cbor_with_filters_and_paging() {
    use aws_sdk_marketplaceentitlement::{
        operation::get_entitlements::GetEntitlementsError, types::GetEntitlementFilterName as F,
    };
    let h = start().await;
    let client = entitlement(&h.url);
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::ContractWithConsumption, BUYER)
            .unwrap();
    let c = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let pending =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, "777788889999")
            .unwrap();
    for p in [&a, &b, &c] {
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    let out = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.entitlements().len(),
        2,
        "pending agreements have no entitlement"
    );
    assert!(
        out.entitlements()
            .iter()
            .all(|e| e.customer_identifier().is_none())
    );
    let e = out
        .entitlements()
        .iter()
        .find(|e| e.license_arn() == Some(a.license_arn.as_str()))
        .unwrap();
    assert_eq!(e.dimension(), Some("seats"));
    assert_eq!(e.value().and_then(|v| v.integer_value()), Some(10));
    assert!(e.expiration_date().is_some());
    assert_eq!(e.customer_aws_account_id(), Some(BUYER));
    let _ = pending;

    let out = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .filter(F::LicenseArn, vec![b.license_arn.clone()])
        .send()
        .await
        .unwrap();
    assert_eq!(out.entitlements().len(), 1);
    assert_eq!(
        out.entitlements()[0].license_arn(),
        Some(b.license_arn.as_str())
    );

    let out = client
        .get_entitlements()
        .product_code(CLASSIC)
        .filter(F::CustomerIdentifier, vec![c.customer_identifier.clone()])
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.entitlements()[0].customer_identifier(),
        Some(c.customer_identifier.as_str())
    );

    // Paging.
    let page1 = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page1.entitlements().len(), 1);
    let page2 = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .max_results(1)
        .next_token(page1.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page2.entitlements().len(), 1);
    assert!(page2.next_token().is_none());
    assert_ne!(
        page1.entitlements()[0].license_arn(),
        page2.entitlements()[0].license_arn()
    );

    let err = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .filter(F::CustomerIdentifier, vec!["x".into()])
        .filter(F::CustomerAwsAccountId, vec![BUYER.into()])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetEntitlementsError::InvalidParameterException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("GetEntitlements", InjectedError::Throttling, 1);
    let err = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetEntitlementsError::ThrottlingException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("GetEntitlements", InjectedError::Internal, 1);
    let err = client
        .get_entitlements()
        .product_code(CONCURRENT)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetEntitlementsError::InternalServiceErrorException(_)),
        "{err:?}"
    );
    assert!(
        h.sb.call_log()
            .iter()
            .any(|c| c.service == "entitlement" && c.operation == "GetEntitlements")
    );
}

#[tokio::test]
async fn get_entitlements_over_aws_json_like_boto3() {
    let h = start().await;
    let a = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&a.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let body = format!(
        r#"{{"ProductCode":"{CLASSIC}","Filter":{{"CUSTOMER_IDENTIFIER":["{}"]}}}}"#,
        a.customer_identifier
    );
    let headers = sigv4_headers(
        &format!("{}/", h.url),
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "AWSMPEntitlementService.GetEntitlements"),
        ],
        body.as_bytes(),
        "aws-marketplace",
    );
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, text) = raw_post(&h.url, "/", &refs, body.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Entitlements"][0]["Dimension"], "seats");
    assert_eq!(v["Entitlements"][0]["Value"]["IntegerValue"], 10);
    assert!(v["Entitlements"][0]["ExpirationDate"].is_number());

    // Bad JSON: a SerializationException, not a crash.
    let bad = b"{not json";
    let headers = sigv4_headers(
        &format!("{}/", h.url),
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "AWSMPEntitlementService.GetEntitlements"),
        ],
        bad,
        "aws-marketplace",
    );
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, text) = raw_post(&h.url, "/", &refs, bad).await;
    assert_eq!(status, 400);
    assert!(text.contains("SerializationException"), "{text}");
}
