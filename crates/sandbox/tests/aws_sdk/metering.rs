//! AWSMPMeteringService: ResolveCustomer and BatchMeterUsage through the official SDK.

use aws_sdk_marketplacemetering::{
    error::ProvideErrorMetadata,
    operation::{batch_meter_usage::BatchMeterUsageError, resolve_customer::ResolveCustomerError},
    primitives::DateTime,
    types::{UsageRecord, UsageRecordResultStatus},
};
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, InjectedError, OfferKind, SubscriptionAction};
use time::{Duration, macros::datetime};

use super::common::*;

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
    // Ten past the previous hour: the resends below (+1 and +10 minutes) stay in that hour
    // whatever the time the test runs (now - 30 min + 1 min crossed the hour at hh:29).
    let now = h.clock_now();
    let at =
        now.replace_time(time::Time::from_hms(now.hour(), 10, 0).unwrap()) - Duration::hours(1);

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
