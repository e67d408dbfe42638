//! Renewals and replacements: new agreement ids, the licence switch, the events AWS sends and
//! what the APIs answer afterwards.

use aws_sdk_marketplacemetering::{
    operation::batch_meter_usage::BatchMeterUsageError,
    primitives::DateTime,
    types::{UsageRecord, UsageRecordResultStatus},
};
use marketlink_sandbox::aws::{AgreementChange, OfferKind, SubscriptionAction};
use serde_json::json;
use time::Duration;

use super::common::*;

fn concurrent_record(arn: &str, at: time::OffsetDateTime, q: i32) -> UsageRecord {
    UsageRecord::builder()
        .customer_aws_account_id(BUYER)
        .license_arn(arn)
        .dimension("api_calls")
        .quantity(q)
        .timestamp(DateTime::from_secs(at.unix_timestamp()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn renewal_with_a_new_license_on_eventbridge() {
    let h = start().await;
    let old =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&old.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.sb.update_entitlements(&old.agreement_id, &[("seats", 15)])
        .await
        .unwrap();
    drain(&h, &h.sb.eventbridge_queue_url()).await;

    let new = h.sb.renew(&old.agreement_id, true).await.unwrap();
    assert_ne!(new.agreement_id, old.agreement_id);
    assert_ne!(new.license_arn, old.license_arn);
    assert_eq!(
        (
            new.buyer_account_id.as_str(),
            new.product_code.as_str(),
            new.offer_id.as_str()
        ),
        (BUYER, CONCURRENT, old.offer_id.as_str())
    );
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    assert_eq!(
        detail_types(&events),
        [
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Proposer",
            "License Deprovisioned - Manufacturer",
        ]
    );
    let created = &events[0]["detail"];
    assert_eq!(created["agreement"]["id"], new.agreement_id.as_str());
    assert_eq!(created["agreement"]["intent"], "RENEW");
    assert_eq!(
        created["agreement"]["previousAgreementId"],
        old.agreement_id.as_str()
    );
    assert_eq!(created["product"]["id"], "prod-mlsandboxconcurr02");
    assert_eq!(
        events[0]["resources"][0],
        format!(
            "arn:aws:aws-marketplace::aws:agreement:{}",
            new.agreement_id
        )
    );
    assert_eq!(
        events[1]["detail"]["license"]["arn"],
        new.license_arn.as_str()
    );
    assert_eq!(
        events[1]["detail"]["agreement"]["id"],
        new.agreement_id.as_str()
    );
    assert_eq!(
        events[2]["detail"]["agreement"]["id"],
        old.agreement_id.as_str()
    );
    assert_eq!(events[2]["detail"]["agreement"]["status"], "RENEWED");
    assert_eq!(
        events[3]["detail"]["license"]["arn"],
        old.license_arn.as_str()
    );

    // The Agreement API: the chain, the statuses, the entitlements.
    let client = agreement(&h.url);
    let d = client
        .describe_agreement()
        .agreement_id(&old.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status().map(|s| s.as_str()), Some("RENEWED"));
    assert!(d.end_time_behavior().is_none());
    let d = client
        .describe_agreement()
        .agreement_id(&new.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(d.status().map(|s| s.as_str()), Some("ACTIVE"));
    assert_eq!(d.initial_agreement_id(), Some(old.agreement_id.as_str()));
    let ents = client
        .get_agreement_entitlements()
        .agreement_id(&old.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ents.agreement_entitlements()[0]
            .status()
            .map(|s| s.as_str()),
        Some("DEPROVISIONED")
    );
    // A second renewal keeps the chain's first agreement.
    let third = h.sb.renew(&new.agreement_id, false).await.unwrap();
    let d = client
        .describe_agreement()
        .agreement_id(&third.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(d.initial_agreement_id(), Some(old.agreement_id.as_str()));
    assert!(h.sb.renew(&old.agreement_id, true).await.is_err());
    let a = h.sb.agreement(&third.agreement_id).unwrap();
    assert_eq!(a.predecessor.unwrap().change, AgreementChange::Renew);
    assert_eq!(a.quantities.get("seats"), Some(&15));
}

#[tokio::test]
async fn after_a_license_switch_the_old_license_is_refused() {
    use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
    let h = start().await;
    let old =
        h.sb.purchase(CONCURRENT, OfferKind::ContractWithConsumption, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&old.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let metering = metering(&h.url, "sandbox-secret");
    let at = clock_now(&h) - Duration::minutes(10);
    let out = metering
        .batch_meter_usage()
        .usage_records(concurrent_record(&old.license_arn, at, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );

    let new = h.sb.renew(&old.agreement_id, true).await.unwrap();
    let err = metering
        .batch_meter_usage()
        .usage_records(concurrent_record(&old.license_arn, at, 3))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, BatchMeterUsageError::InvalidLicenseException(_)),
        "{err:?}"
    );
    let out = metering
        .batch_meter_usage()
        .usage_records(concurrent_record(&new.license_arn, at, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    let billed: Vec<_> =
        h.sb.metered_records()
            .into_iter()
            .map(|m| (m.agreement_id, m.quantity))
            .collect();
    assert_eq!(
        billed,
        [
            (old.agreement_id.clone(), "3".to_owned()),
            (new.agreement_id.clone(), "4".to_owned())
        ]
    );

    // GetEntitlements answers for the new licence only.
    let ent = entitlement(&h.url);
    let for_license = async |arn: &str| {
        ent.get_entitlements()
            .product_code(CONCURRENT)
            .filter(GetEntitlementFilterName::LicenseArn, vec![arn.to_owned()])
            .send()
            .await
            .unwrap()
            .entitlements()
            .len()
    };
    assert_eq!(for_license(&old.license_arn).await, 0);
    assert_eq!(for_license(&new.license_arn).await, 1);
    let by_account = ent
        .get_entitlements()
        .product_code(CONCURRENT)
        .filter(
            GetEntitlementFilterName::CustomerAwsAccountId,
            vec![BUYER.to_owned()],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(by_account.entitlements().len(), 1);
    assert_eq!(
        by_account.entitlements()[0].license_arn(),
        Some(new.license_arn.as_str())
    );
}

#[tokio::test]
async fn replacement_keeping_the_license() {
    let h = start().await;
    let old =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&old.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    drain(&h, &h.sb.eventbridge_queue_url()).await;
    let new = h.sb.replace(&old.agreement_id, false).await.unwrap();
    assert_eq!(new.license_arn, old.license_arn);
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    assert_eq!(
        detail_types(&events),
        [
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Proposer",
        ]
    );
    assert_eq!(events[0]["detail"]["agreement"]["intent"], "REPLACE");
    assert_eq!(events[2]["detail"]["agreement"]["status"], "REPLACED");
    // The licence carried over: usage on it bills the new agreement.
    let at = clock_now(&h) - Duration::minutes(1);
    let out = metering(&h.url, "sandbox-secret")
        .batch_meter_usage()
        .usage_records(concurrent_record(&old.license_arn, at, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    assert_eq!(h.sb.metered_records()[0].agreement_id, new.agreement_id);
    let (code, v) = agreement_json(
        &h,
        "GetAgreementEntitlements",
        json!({"agreementId": old.agreement_id}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(v["agreementEntitlements"][0]["status"], "PROVISIONED");
    let (_, v) = agreement_json(
        &h,
        "DescribeAgreement",
        json!({"agreementId": old.agreement_id}),
    )
    .await;
    assert_eq!(v["status"], "REPLACED");
    // Only an active agreement renews.
    h.sb.send_subscription_event(&new.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    assert!(h.sb.replace(&new.agreement_id, true).await.is_err());
}

#[tokio::test]
async fn renewal_on_an_sns_listing_is_an_entitlement_update() {
    use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
    let h = start().await;
    let old = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&old.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    drain(&h, &h.sb.sns_queue_url()).await;
    let new = h.sb.renew(&old.agreement_id, true).await.unwrap();
    assert_eq!(new.customer_identifier, old.customer_identifier);
    let envelopes = drain(&h, &h.sb.sns_queue_url()).await;
    assert_eq!(envelopes.len(), 1);
    assert!(
        envelopes[0]["TopicArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("aws-mp-entitlement-notification-{CLASSIC}"))
    );
    let message: serde_json::Value =
        serde_json::from_str(envelopes[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["action"], "entitlement-updated");
    assert_eq!(
        message["customer-identifier"],
        old.customer_identifier.as_str()
    );
    // The classic customer's entitlements are the new agreement's.
    let out = entitlement(&h.url)
        .get_entitlements()
        .product_code(CLASSIC)
        .filter(
            GetEntitlementFilterName::CustomerIdentifier,
            vec![old.customer_identifier.clone()],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.entitlements().len(), 1);
    assert_eq!(
        out.entitlements()[0].license_arn(),
        Some(new.license_arn.as_str())
    );
}
