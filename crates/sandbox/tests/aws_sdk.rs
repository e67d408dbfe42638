//! The AWS sandbox driven by the official AWS SDK clients (default protocols, endpoint override).

mod aws_common;

use aws_common::*;
use aws_sdk_marketplacemetering::{
    error::ProvideErrorMetadata,
    operation::{batch_meter_usage::BatchMeterUsageError, resolve_customer::ResolveCustomerError},
    primitives::DateTime,
    types::{UsageRecord, UsageRecordResultStatus},
};
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, InjectedError, OfferKind, SubscriptionAction};
use time::{Duration, macros::datetime};

fn record(customer: &str, dim: &str, qty: i32, at: time::OffsetDateTime) -> UsageRecord {
    UsageRecord::builder()
        .customer_identifier(customer)
        .dimension(dim)
        .quantity(qty)
        .timestamp(DateTime::from_secs(at.unix_timestamp()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn resolve_customer_classic_and_concurrent() {
    let h = start().await;
    let client = metering(&h.url, "sandbox-secret");

    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let out = client
        .resolve_customer()
        .registration_token(&p.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.customer_identifier(),
        Some(p.customer_identifier.as_str())
    );
    assert_eq!(out.product_code(), Some(CLASSIC));
    assert_eq!(out.customer_aws_account_id(), Some(BUYER));
    assert_eq!(out.license_arn(), Some(p.license_arn.as_str()));
    assert_eq!(
        out.metadata().and_then(|m| m.agreement_id()),
        Some(p.agreement_id.as_str())
    );

    // Concurrent agreements: no CustomerIdentifier; two agreements for one account.
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    assert_ne!(a.license_arn, b.license_arn);
    let out = client
        .resolve_customer()
        .registration_token(&b.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.customer_identifier(), None);
    assert_eq!(out.license_arn(), Some(b.license_arn.as_str()));
}

#[tokio::test]
async fn resolve_customer_errors() {
    let config = AwsSandboxConfig {
        sigv4_max_skew_secs: None,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let client = metering(&h.url, "sandbox-secret");
    let err = client
        .resolve_customer()
        .registration_token("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ResolveCustomerError::InvalidTokenException(_)),
        "{err:?}"
    );

    let token =
        h.sb.issue_registration_token(CLASSIC, OfferKind::FreeTrial, BUYER)
            .unwrap();
    h.clock.advance(Duration::hours(2));
    let err = client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ResolveCustomerError::ExpiredTokenException(_)),
        "{err:?}"
    );

    h.sb.inject_errors("ResolveCustomer", InjectedError::Throttling, 1);
    let err = client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ResolveCustomerError::ThrottlingException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("*", InjectedError::Internal, 1);
    let err = client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ResolveCustomerError::InternalServiceErrorException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("ResolveCustomer", InjectedError::DisabledApi, 1);
    let err = client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ResolveCustomerError::DisabledApiException(_)),
        "{err:?}"
    );
}

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

pub async fn raw_post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<axum::body::Bytes>>();
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(axum::body::Bytes::copy_from_slice(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn raw_get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<axum::body::Bytes>>();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn batch_meter_usage_statuses_and_dedup() {
    let h = start().await;
    let client = metering(&h.url, "sandbox-secret");
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let other =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, "777788889999")
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let at = h.clock_now() - Duration::minutes(30);

    let out = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&p.customer_identifier, "api_calls", 5, at))
        .usage_records(record(&other.customer_identifier, "api_calls", 1, at))
        .send()
        .await
        .unwrap();
    let results = out.results();
    assert_eq!(results[0].status(), Some(&UsageRecordResultStatus::Success));
    let id = results[0].metering_record_id().unwrap().to_owned();
    assert_eq!(
        results[1].status(),
        Some(&UsageRecordResultStatus::CustomerNotSubscribed)
    );
    assert!(out.unprocessed_records().is_empty());

    // Identical resend: Success again, same id. Same hour, other quantity: DuplicateRecord.
    let out = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(
            &p.customer_identifier,
            "api_calls",
            5,
            at + Duration::minutes(1),
        ))
        .usage_records(record(&p.customer_identifier, "api_calls", 6, at))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    assert_eq!(out.results()[0].metering_record_id(), Some(id.as_str()));
    assert_eq!(
        out.results()[1].status(),
        Some(&UsageRecordResultStatus::DuplicateRecord)
    );
    let ledger = h.sb.metered_records();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].quantity, "5");
    assert_eq!(ledger[0].agreement_id, p.agreement_id);

    // Unsubscribed: CustomerNotSubscribed after unsubscribe-success, accepted during pending.
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    let out = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&p.customer_identifier, "storage_gb", 2, at))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    let out = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(
            &p.customer_identifier,
            "storage_gb",
            3,
            at + Duration::minutes(10),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::CustomerNotSubscribed)
    );
}

trait ClockNow {
    fn clock_now(&self) -> time::OffsetDateTime;
}
impl ClockNow for Harness {
    fn clock_now(&self) -> time::OffsetDateTime {
        use marketlink_core::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn batch_meter_usage_concurrent_agreements() {
    let h = start().await;
    let client = metering(&h.url, "sandbox-secret");
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::ContractWithConsumption, BUYER)
            .unwrap();
    for p in [&a, &b] {
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    let at = h.clock_now() - Duration::minutes(5);
    let rec = |arn: &str, q: i32| {
        UsageRecord::builder()
            .customer_aws_account_id(BUYER)
            .license_arn(arn)
            .dimension("api_calls")
            .quantity(q)
            .timestamp(DateTime::from_secs(at.unix_timestamp()))
            .build()
            .unwrap()
    };
    let out = client
        .batch_meter_usage()
        .usage_records(rec(&a.license_arn, 15))
        .usage_records(rec(&b.license_arn, 2))
        .send()
        .await
        .unwrap();
    assert!(
        out.results()
            .iter()
            .all(|r| r.status() == Some(&UsageRecordResultStatus::Success))
    );
    let ledger = h.sb.metered_records();
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().any(|m| m.license_arn.as_deref() == Some(a.license_arn.as_str()) && m.quantity == "15"));

    // A LicenseArn of another account: InvalidLicenseException for the whole request.
    let err = client
        .batch_meter_usage()
        .usage_records(
            UsageRecord::builder()
                .customer_aws_account_id("999999999999")
                .license_arn(&a.license_arn)
                .dimension("api_calls")
                .quantity(1)
                .timestamp(DateTime::from_secs(at.unix_timestamp()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::InvalidLicenseException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn batch_meter_usage_errors() {
    let h = start().await;
    let client = metering(&h.url, "sandbox-secret");
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let now = h.clock_now();
    let ci = p.customer_identifier.clone();

    let err = client
        .batch_meter_usage()
        .product_code("unknownproduct")
        .usage_records(record(&ci, "api_calls", 1, now))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::InvalidProductCodeException(_)),
        "{err:?}"
    );

    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&ci, "no_such_dimension", 1, now))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::InvalidUsageDimensionException(_)),
        "{err:?}"
    );

    for ts in [now - Duration::hours(24), now + Duration::minutes(5)] {
        let err = client
            .batch_meter_usage()
            .product_code(CLASSIC)
            .usage_records(record(&ci, "api_calls", 1, ts))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            matches!(err, BatchMeterUsageError::TimestampOutOfBoundsException(_)),
            "{err:?}"
        );
    }

    let mut req = client.batch_meter_usage().product_code(CLASSIC);
    for i in 0..26 {
        req = req.usage_records(record(&ci, "api_calls", i, now));
    }
    let err = req.send().await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));

    use aws_sdk_marketplacemetering::types::{Tag, UsageAllocation};
    let alloc = |q: i32, key: &str| {
        UsageAllocation::builder()
            .allocated_usage_quantity(q)
            .tags(Tag::builder().key(key).value("v").build().unwrap())
            .build()
            .unwrap()
    };
    let with_allocs = |allocs: Vec<UsageAllocation>| {
        UsageRecord::builder()
            .customer_identifier(&ci)
            .dimension("api_calls")
            .quantity(10)
            .timestamp(DateTime::from_secs(now.unix_timestamp()))
            .set_usage_allocations(Some(allocs))
            .build()
            .unwrap()
    };
    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(with_allocs(vec![alloc(3, "team"), alloc(3, "team")]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            BatchMeterUsageError::InvalidUsageAllocationsException(_)
        ),
        "{err:?}"
    );
    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(with_allocs(vec![alloc(10, "bad{key}")]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::InvalidTagException(_)),
        "{err:?}"
    );

    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(
            UsageRecord::builder()
                .dimension("api_calls")
                .quantity(1)
                .timestamp(DateTime::from_secs(now.unix_timestamp()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            BatchMeterUsageError::InvalidCustomerIdentifierException(_)
        ),
        "{err:?}"
    );

    h.sb.inject_errors("BatchMeterUsage", InjectedError::Throttling, 1);
    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&ci, "api_calls", 1, now))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::ThrottlingException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn month_end_grace_period() {
    let clock = ManualClock::new(datetime!(2026-04-01 05:00 UTC));
    let config = AwsSandboxConfig {
        sigv4_max_skew_secs: None,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, clock).await;
    let client = metering(&h.url, "sandbox-secret");
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let march = datetime!(2026-03-31 23:00 UTC);
    let out = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&p.customer_identifier, "api_calls", 1, march))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    h.clock.set(datetime!(2026-04-01 06:00 UTC));
    let err = client
        .batch_meter_usage()
        .product_code(CLASSIC)
        .usage_records(record(&p.customer_identifier, "api_calls", 1, march))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::TimestampOutOfBoundsException(_)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- entitlement

/// Sign a raw request with the independent `aws-sigv4` crate (what boto3 / older SDKs send).
fn sigv4_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
) -> Vec<(String, String)> {
    use aws_sigv4::{
        http_request::{SignableBody, SignableRequest, SigningSettings, sign},
        sign::v4,
    };
    use aws_smithy_runtime_api::client::identity::Identity;
    let identity: Identity =
        aws_credential_types::Credentials::from_keys("AKIASANDBOX", "sandbox-secret", None).into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("host", &host));
    let signable = SignableRequest::new(
        "POST",
        url,
        all.clone().into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    out
}

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

// ---------------------------------------------------------------- agreement

#[tokio::test]
async fn describe_agreement_and_terms() {
    use aws_sdk_marketplaceagreement::{
        operation::{
            describe_agreement::DescribeAgreementError, get_agreement_terms::GetAgreementTermsError,
        },
        types::AcceptedTerm,
    };
    let h = start().await;
    let client = agreement(&h.url);
    let trial =
        h.sb.purchase(CONCURRENT, OfferKind::FreeTrial, BUYER)
            .unwrap();
    let out = client
        .describe_agreement()
        .agreement_id(&trial.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.agreement_id(), Some(trial.agreement_id.as_str()));
    assert_eq!(out.acceptor().and_then(|a| a.account_id()), Some(BUYER));
    assert_eq!(
        out.proposer().and_then(|a| a.account_id()),
        Some("111122223333")
    );
    assert_eq!(out.status().map(|s| s.as_str()), Some("ACTIVE"));
    // freeTrialSummary is in the current model but not in aws-sdk-marketplaceagreement 1.124.
    assert!(out.end_time().is_none());
    assert_eq!(
        out.proposal_summary().and_then(|p| p.offer_id()),
        Some(trial.offer_id.as_str())
    );

    let terms = client
        .get_agreement_terms()
        .agreement_id(&trial.agreement_id)
        .send()
        .await
        .unwrap();
    let trial_term = terms
        .accepted_terms()
        .iter()
        .find_map(|t| match t {
            AcceptedTerm::FreeTrialPricingTerm(t) => Some(t),
            _ => None,
        })
        .expect("free trial term");
    assert_eq!(trial_term.duration(), Some("P30D"));
    assert_eq!(trial_term.grants()[0].dimension_key(), Some("seats"));
    assert!(
        terms
            .accepted_terms()
            .iter()
            .any(|t| matches!(t, AcceptedTerm::UsageBasedPricingTerm(_)))
    );

    let contract = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let out = client
        .describe_agreement()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap();
    assert!(out.end_time().is_some());
    assert_eq!(
        out.estimated_charges().and_then(|e| e.agreement_value()),
        Some("1200.00")
    );
    let page = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.accepted_terms().len(), 2);
    let rest = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        rest.accepted_terms()
            .iter()
            .any(|t| matches!(t, AcceptedTerm::ConfigurableUpfrontPricingTerm(_)))
    );

    let err = client
        .describe_agreement()
        .agreement_id("agmt-doesnotexist")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    let err = client
        .describe_agreement()
        .agreement_id("bad id!")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::ValidationException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("GetAgreementTerms", InjectedError::Throttling, 1);
    let err = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetAgreementTermsError::ThrottlingException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("DescribeAgreement", InjectedError::Internal, 1);
    let err = client
        .describe_agreement()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::InternalServerException(_)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- SQS + SNS + EventBridge

#[tokio::test]
async fn sqs_carries_signed_sns_envelopes() {
    use aws_sdk_sqs::{
        operation::{
            change_message_visibility::ChangeMessageVisibilityError,
            delete_message::DeleteMessageError, get_queue_url::GetQueueUrlError,
        },
        types::MessageSystemAttributeName,
    };
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = sqs
        .get_queue_url()
        .queue_name("aws-mp-sns-notifications")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    assert_eq!(url, h.sb.sns_queue_url());
    let err = sqs
        .get_queue_url()
        .queue_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetQueueUrlError::QueueDoesNotExist(_)),
        "{err:?}"
    );

    let p = h.sb.purchase(CLASSIC, OfferKind::FreeTrial, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let msgs = out.messages();
    assert_eq!(msgs.len(), 1);
    let env: serde_json::Value = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(env["Type"], "Notification");
    assert_eq!(
        env["TopicArn"],
        format!("arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{CLASSIC}")
    );
    let message: serde_json::Value =
        serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["action"], "subscribe-success");
    assert_eq!(
        message["customer-identifier"],
        p.customer_identifier.as_str()
    );
    assert_eq!(message["isFreeTrialTermPresent"], "true");
    verify_sns_with_openssl(&h, &env).await;
    assert!(
        msgs[0]
            .attributes()
            .unwrap()
            .contains_key(&MessageSystemAttributeName::ApproximateReceiveCount)
    );

    // In flight: invisible; visibility change and delete.
    let handle = msgs[0].receipt_handle().unwrap().to_owned();
    let again = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert!(again.messages().is_empty());
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&handle)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let again = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(again.messages().len(), 1);
    let stale = handle;
    let handle = again.messages()[0].receipt_handle().unwrap().to_owned();
    let err = sqs
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&stale)
        .visibility_timeout(10)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, ChangeMessageVisibilityError::MessageNotInflight(_)),
        "{err:?}"
    );
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(&handle)
        .send()
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(5));
    let empty = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert!(empty.messages().is_empty());
    let err = sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle("garbage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DeleteMessageError::ReceiptHandleIsInvalid(_)),
        "{err:?}"
    );

    // SendMessage round trip (the SDK checks MD5OfMessageBody).
    sqs.send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .unwrap();
    let got = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(got.messages()[0].body(), Some("hello"));
}

#[tokio::test]
async fn sqs_get_queue_attributes_counts_messages() {
    use aws_sdk_sqs::{
        operation::get_queue_attributes::GetQueueAttributesError, types::QueueAttributeName,
    };
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = h.sb.sns_queue_url();
    for body in ["one", "two"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // One in flight, one waiting.
    sqs.receive_message().queue_url(&url).send().await.unwrap();
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .map(String::as_str),
        Some("1")
    );
    assert!(!attrs.contains_key(&QueueAttributeName::QueueArn));
    let all = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(
        all.attributes()
            .unwrap()
            .get(&QueueAttributeName::QueueArn)
            .map(String::as_str),
        Some("arn:aws:sqs:us-east-1:111122223333:aws-mp-sns-notifications")
    );
    let err = sqs
        .get_queue_attributes()
        .queue_url(format!("{}/111122223333/nope", h.url))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetQueueAttributesError::QueueDoesNotExist(_)),
        "{err:?}"
    );
}

async fn verify_sns_with_openssl(h: &Harness, env: &serde_json::Value) {
    use base64::Engine;
    let map = env.as_object().unwrap();
    let (status, pem) = raw_get(env["SigningCertURL"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(pem, h.sb.signing_cert_pem().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let pubkey = dir.path().join("pub.pem");
    let data = dir.path().join("data.txt");
    let sig = dir.path().join("sig.bin");
    std::fs::write(&cert, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&pubkey, out.stdout).unwrap();
    std::fs::write(&data, marketlink_sandbox::aws::sns::string_to_sign(map)).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(env["Signature"].as_str().unwrap())
        .unwrap();
    std::fs::write(&sig, signature).unwrap();
    let digest = match env["SignatureVersion"].as_str().unwrap() {
        "1" => "-sha1",
        "2" => "-sha256",
        v => panic!("SignatureVersion {v}"),
    };
    let out = std::process::Command::new("openssl")
        .args(["dgst", digest, "-verify"])
        .arg(&pubkey)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sns_http_delivery_confirmation_first_then_notifications_v1() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let rx = received.clone();
    let app = axum::Router::new().route(
        "/sns",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let rx = rx.clone();
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    headers["x-amz-sns-message-type"].to_str().unwrap(),
                    v["Type"].as_str().unwrap()
                );
                rx.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/sns", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = AwsSandboxConfig {
        sns_http_endpoint: Some(endpoint),
        sns_signature_version: 1,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let first = received.lock().unwrap().clone();
    assert_eq!(
        first.len(),
        1,
        "only the confirmation until confirmed: {first:?}"
    );
    assert_eq!(first[0]["Type"], "SubscriptionConfirmation");
    verify_sns_with_openssl(&h, &first[0]).await;

    let (status, xml) = raw_get(first[0]["SubscribeURL"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("ConfirmSubscriptionResult"));
    let all = received.lock().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["Type"], "Notification");
    assert_eq!(all[1]["SignatureVersion"], "1");
    verify_sns_with_openssl(&h, &all[1]).await;

    h.sb.update_entitlements(&p.agreement_id, &[("seats", 25)])
        .await
        .unwrap();
    let all = received.lock().unwrap().clone();
    // The entitlement topic has its own subscription: confirmation first again.
    assert_eq!(all[2]["Type"], "SubscriptionConfirmation");
    assert!(
        all[2]["TopicArn"]
            .as_str()
            .unwrap()
            .contains("aws-mp-entitlement-notification-")
    );
    let (status, _) = raw_get(all[2]["SubscribeURL"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let all = received.lock().unwrap().clone();
    let msg: serde_json::Value = serde_json::from_str(all[3]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(msg["action"], "entitlement-updated");
}

#[tokio::test]
async fn eventbridge_events_reach_the_queue() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = h.sb.eventbridge_queue_url();
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.sb.update_entitlements(&p.agreement_id, &[("seats", 20)])
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = out
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Purchase Agreement Created - Manufacturer",
            "License Updated - Manufacturer",
            "Purchase Agreement Amended - Manufacturer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Manufacturer",
            "License Deprovisioned - Manufacturer",
        ]
    );
    let created = &events[0];
    assert_eq!(created["source"], "aws.agreement-marketplace");
    assert_eq!(created["version"], "0");
    assert_eq!(created["region"], "us-east-1");
    assert_eq!(created["account"], "111122223333");
    assert_eq!(
        created["detail"]["agreement"]["id"],
        p.agreement_id.as_str()
    );
    assert_eq!(created["detail"]["agreement"]["intent"], "NEW");
    assert_eq!(created["detail"]["acceptor"]["accountId"], BUYER);
    assert_eq!(
        created["resources"][0],
        format!("arn:aws:aws-marketplace::aws:agreement:{}", p.agreement_id)
    );
    assert_eq!(
        events[1]["detail"]["license"]["arn"],
        p.license_arn.as_str()
    );
    assert_eq!(events[1]["detail"]["product"]["code"], CONCURRENT);
    assert_eq!(events[4]["detail"]["agreement"]["status"], "CANCELLED");
    // No SNS traffic for EventBridge listings.
    let sns = sqs
        .receive_message()
        .queue_url(h.sb.sns_queue_url())
        .send()
        .await
        .unwrap();
    assert!(sns.messages().is_empty());
}

#[tokio::test]
async fn buyer_page_posts_token_to_landing_url() {
    let config = AwsSandboxConfig {
        subscribe_delay_ms: 50,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let (status, html) = raw_get(&format!("{}/aws/buyer", h.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains(CLASSIC));
    let form = format!("product_code={CLASSIC}&offer_id=offer-{CLASSIC}-trial&account_id={BUYER}");
    let (status, html) = raw_post(
        &h.url,
        "/aws/buyer/subscribe",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"action="http://127.0.0.1:8080/aws/landing""#));
    assert!(html.contains(r#"name="x-amzn-marketplace-offer-type" value="free-trial""#));
    let ag = h.sb.agreements().pop().unwrap();
    assert!(html.contains(&ag.registration_token));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        h.sb.agreement(&ag.agreement_id).unwrap().state,
        marketlink_sandbox::aws::SubscriptionState::Subscribed
    );
    let (status, html) = raw_get(&format!("{}/aws/calls", h.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Subscribe"));
    let (status, _) = raw_get(&format!("{}/aws/buyer/agreements", h.url)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn state_persists_to_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = AwsSandboxConfig {
        state_file: Some(dir.path().join("aws.json")),
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config.clone(), ManualClock::new(wall_now())).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let again = start_with(config, ManualClock::new(wall_now())).await;
    let ag = again.sb.agreement(&p.agreement_id).unwrap();
    assert_eq!(
        ag.state,
        marketlink_sandbox::aws::SubscriptionState::Subscribed
    );
    // The token still resolves and the SNS message is still queued.
    let out = metering(&again.url, "sandbox-secret")
        .resolve_customer()
        .registration_token(&p.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.customer_identifier(),
        Some(p.customer_identifier.as_str())
    );
    let msgs = sqs(&again.url)
        .receive_message()
        .queue_url(again.sb.sns_queue_url())
        .send()
        .await
        .unwrap();
    assert_eq!(msgs.messages().len(), 1);
}
