//! Who the seller is in each EventBridge event (proposer, manufacturer, CPPO), every product of
//! the seller on one queue, and classic-identity listings notified over EventBridge.

use aws_sdk_marketplacemetering::types::UsageRecordResultStatus;
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{
    AwsSandboxConfig, IdentityMode, NotificationMode, OfferKind, ProductConfig, SubscriptionAction,
};
use time::Duration;

use super::common::*;

const OTHER: &str = "mlsandboxother000000000003";
const CLASSIC_EB: &str = "mlsandboxclassiceb00000004";

#[tokio::test]
async fn channel_partner_offers_notify_the_manufacturer() {
    let mut config = AwsSandboxConfig::default();
    config.products[1].offers[1].channel_partner = true;
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    assert_eq!(
        detail_types(&events),
        [
            "Purchase Agreement Created - Manufacturer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Manufacturer",
        ]
    );
    let created = &events[0];
    // The seller receives it (account), the partner proposed it.
    assert_eq!(created["account"], "111122223333");
    assert_eq!(created["detail"]["proposer"]["accountId"], "222233334444");
    let resale = created["detail"]["resaleAuthorization"]["id"]
        .as_str()
        .unwrap();
    assert!(resale.starts_with("resaleauthz-"), "{resale}");
    assert_eq!(events[2]["detail"]["resaleAuthorization"]["id"], resale);
    assert_eq!(
        events[1]["detail"]["license"]["arn"],
        p.license_arn.as_str()
    );
    let agreement = h.sb.agreement(&p.agreement_id).unwrap();
    assert_eq!(
        agreement.channel_partner.map(|c| c.account_id).as_deref(),
        Some("222233334444")
    );
}

#[tokio::test]
async fn every_product_of_the_seller_shares_the_eventbridge_queue() {
    let mut config = AwsSandboxConfig::default();
    config.products.push(ProductConfig::standard(
        OTHER,
        "prod-mlsandboxother03",
        "A product marketlink does not sell",
        IdentityMode::Concurrent,
        NotificationMode::Eventbridge,
    ));
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let mine =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    let other =
        h.sb.purchase(OTHER, OfferKind::Subscription, BUYER)
            .unwrap();
    for p in [&other, &mine] {
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    let agreements: Vec<&str> = events
        .iter()
        .map(|e| e["detail"]["agreement"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        agreements,
        [
            other.agreement_id.as_str(),
            other.agreement_id.as_str(),
            mine.agreement_id.as_str(),
            mine.agreement_id.as_str()
        ]
    );
    assert_eq!(events[1]["detail"]["product"]["code"], OTHER);
    assert_eq!(events[3]["detail"]["product"]["code"], CONCURRENT);
}

#[tokio::test]
async fn classic_identity_listing_on_eventbridge() {
    use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
    let mut config = AwsSandboxConfig::default();
    config.products.push(ProductConfig::standard(
        CLASSIC_EB,
        "prod-mlsandboxclassiceb4",
        "Classic identity, EventBridge notifications",
        IdentityMode::Classic,
        NotificationMode::Eventbridge,
    ));
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let p =
        h.sb.purchase(CLASSIC_EB, OfferKind::Contract, BUYER)
            .unwrap();
    let resolved = metering(&h.url, "sandbox-secret")
        .resolve_customer()
        .registration_token(&p.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resolved.customer_identifier(),
        Some(p.customer_identifier.as_str())
    );
    assert_eq!(resolved.customer_aws_account_id(), Some(BUYER));
    assert_eq!(resolved.license_arn(), Some(p.license_arn.as_str()));
    assert_eq!(
        resolved.metadata().and_then(|m| m.agreement_id()),
        Some(p.agreement_id.as_str())
    );
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let events = drain(&h, &h.sb.eventbridge_queue_url()).await;
    assert_eq!(
        detail_types(&events),
        [
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer"
        ]
    );
    assert_eq!(events[1]["detail"]["product"]["code"], CLASSIC_EB);
    assert_eq!(
        events[1]["detail"]["license"]["arn"],
        p.license_arn.as_str()
    );
    assert!(drain(&h, &h.sb.sns_queue_url()).await.is_empty());

    // From the event's licence or account, GetEntitlements names the CustomerIdentifier.
    let ent = entitlement(&h.url);
    for (filter, value) in [
        (GetEntitlementFilterName::LicenseArn, p.license_arn.clone()),
        (
            GetEntitlementFilterName::CustomerAwsAccountId,
            BUYER.to_owned(),
        ),
    ] {
        let out = ent
            .get_entitlements()
            .product_code(CLASSIC_EB)
            .filter(filter.clone(), vec![value])
            .send()
            .await
            .unwrap();
        let e = &out.entitlements()[0];
        assert_eq!(
            e.customer_identifier(),
            Some(p.customer_identifier.as_str()),
            "{filter:?}"
        );
        assert_eq!(e.license_arn(), Some(p.license_arn.as_str()));
    }
    // Classic metering (CustomerIdentifier + ProductCode) bills the agreement.
    let at = clock_now(&h) - Duration::minutes(2);
    let out = metering(&h.url, "sandbox-secret")
        .batch_meter_usage()
        .product_code(CLASSIC_EB)
        .usage_records(record(&p.customer_identifier, "api_calls", 7, at))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.results()[0].status(),
        Some(&UsageRecordResultStatus::Success)
    );
    assert_eq!(h.sb.metered_records()[0].agreement_id, p.agreement_id);
}
