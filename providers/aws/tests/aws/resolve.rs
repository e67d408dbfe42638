//! ResolveCustomer, free trials, error mapping and GetEntitlements.

use marketlink_aws::AwsProvider;
use marketlink_core::{
    EntitlementValue, ExternalRef, LandingToken, Marketplace, MarketplaceProvider, ProviderError,
};
use marketlink_sandbox::aws::{InjectedError, OfferKind, SubscriptionAction};
use time::Duration;

use crate::common::*;

async fn resolve_err(p: &AwsProvider, token: &str) -> ProviderError {
    p.resolve(&LandingToken {
        token: token.into(),
    })
    .await
    .unwrap_err()
}

#[tokio::test]
async fn classic_purchase_resolves_to_customer_and_product() {
    let h = start().await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let r = h.resolve(&p.registration_token).await;
    assert_eq!(
        r.subscription,
        ExternalRef {
            marketplace: Marketplace::AWS,
            external_id: ExternalRef::aws_classic_id(&p.customer_identifier, CLASSIC),
            product_code: CLASSIC.into(),
            customer_id: p.customer_identifier.clone(),
            customer_account_id: Some(BUYER.into()),
            license_arn: Some(p.license_arn.clone()),
        }
    );
    assert!(!r.free_trial);
    // The same token resolves to the same purchase.
    assert_eq!(h.resolve(&p.registration_token).await, r);
}

#[tokio::test]
async fn concurrent_agreements_on_one_account_are_two_subscriptions() {
    let h = start().await;
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let ra = h.resolve(&a.registration_token).await.subscription;
    let rb = h.resolve(&b.registration_token).await.subscription;
    assert_eq!(ra.external_id, a.license_arn);
    assert_eq!(rb.external_id, b.license_arn);
    assert_ne!(ra.external_id, rb.external_id);
    assert_eq!(ra.customer_id, BUYER);
    assert_eq!(ra.customer_account_id.as_deref(), Some(BUYER));
    assert_eq!(ra.license_arn.as_deref(), Some(a.license_arn.as_str()));
}

#[tokio::test]
async fn free_trial_comes_from_the_agreement_for_eventbridge_listings() {
    let h = start().await;
    // The agreement has a free-trial term.
    let t =
        h.sb.purchase(CONCURRENT, OfferKind::FreeTrial, BUYER)
            .unwrap();
    let r = h.resolve(&t.registration_token).await;
    assert!(r.free_trial);
    assert_eq!(r.term.unwrap().unit.as_deref(), Some("P30D"));
    // A contract has none, whatever the buyer's form said.
    let c =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let r = h.resolve(&c.registration_token).await;
    assert!(!r.free_trial);
    let term = r.term.unwrap();
    assert_eq!(term.unit.as_deref(), Some("P12M"));
    assert!(term.end.is_some());
    // SNS listings learn of the trial from subscribe-success, not at the landing page.
    let s = h.sb.purchase(CLASSIC, OfferKind::FreeTrial, BUYER).unwrap();
    assert!(!h.resolve(&s.registration_token).await.free_trial);
}

#[tokio::test]
async fn a_posted_offer_type_marks_no_trial() {
    let h = start().await;
    let c =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    let fields = vec![
        (
            "x-amzn-marketplace-token".to_owned(),
            c.registration_token.clone(),
        ),
        (
            "x-amzn-marketplace-offer-type".to_owned(),
            "free-trial".to_owned(),
        ),
    ];
    let token = h.provider.landing_token(&fields).unwrap();
    assert!(!h.provider.resolve(&token).await.unwrap().free_trial);
}

#[tokio::test]
async fn agreement_api_failure_marks_no_trial_until_aws_confirms() {
    let h = start().await;
    h.sb.inject_errors("DescribeAgreement", InjectedError::Internal, 10);
    let t =
        h.sb.purchase(CONCURRENT, OfferKind::FreeTrial, BUYER)
            .unwrap();
    let r = h.resolve(&t.registration_token).await;
    assert!(
        !r.free_trial,
        "the agreement's events bring the trial later"
    );
    assert_eq!(r.subscription.external_id, t.license_arn);
}

#[tokio::test]
async fn invalid_and_expired_tokens() {
    let h = start().await;
    assert!(matches!(
        resolve_err(&h.provider, "no-such-token").await,
        ProviderError::InvalidToken(_)
    ));
    assert!(matches!(
        resolve_err(&h.provider, "  ").await,
        ProviderError::InvalidToken(_)
    ));
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    h.clock.advance(Duration::hours(1));
    assert!(matches!(
        resolve_err(&h.provider, &p.registration_token).await,
        ProviderError::ExpiredToken(_)
    ));
}

#[tokio::test]
async fn throttling_is_retried_then_reported_retryable() {
    let h = start().await;
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    // Two failures, third attempt succeeds (max_attempts = 3).
    h.sb.inject_errors("ResolveCustomer", InjectedError::Throttling, 2);
    h.resolve(&p.registration_token).await;
    h.sb.inject_errors("ResolveCustomer", InjectedError::Throttling, 3);
    let err = resolve_err(&h.provider, &p.registration_token).await;
    assert!(err.is_retryable(), "{err:?}");
    h.sb.inject_errors("ResolveCustomer", InjectedError::Internal, 3);
    assert!(
        resolve_err(&h.provider, &p.registration_token)
            .await
            .is_retryable()
    );
    // The retries really happened: 2 + 1 + 3 + 3 calls.
    let calls =
        h.sb.call_log()
            .iter()
            .filter(|c| c.operation == "ResolveCustomer")
            .count();
    assert_eq!(calls, 9);
    h.sb.inject_errors("ResolveCustomer", InjectedError::DisabledApi, 1);
    assert!(matches!(
        resolve_err(&h.provider, &p.registration_token).await,
        ProviderError::Configuration(_)
    ));
}

#[tokio::test]
async fn wrong_credentials_and_unknown_products_are_configuration_errors() {
    let h = start_with(Default::default(), |c| {
        c.credentials.as_mut().unwrap().secret_access_key =
            marketlink_aws::Secret::new("wrong-secret");
    })
    .await;
    let p =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    assert!(matches!(
        resolve_err(&h.provider, &p.registration_token).await,
        ProviderError::Configuration(_)
    ));
    let h = start_with(Default::default(), |c| c.products.truncate(1)).await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    let err = resolve_err(&h.provider, &p.registration_token).await;
    assert!(
        matches!(&err, ProviderError::Configuration(m) if m.contains(CONCURRENT)),
        "{err:?}"
    );
}

#[tokio::test]
async fn entitlements_of_a_contract() {
    let h = start().await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let r = h.resolve(&p.registration_token).await.subscription;
    // Not subscribed yet: nothing.
    assert!(h.provider.entitlements(&r).await.unwrap().is_empty());
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let e = h.provider.entitlements(&r).await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].dimension, "seats");
    assert_eq!(e[0].value, EntitlementValue::Integer(10));
    assert!(e[0].expires_at.is_some());

    // Concurrent: per LicenseArn.
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let ra = h.resolve(&a.registration_token).await.subscription;
    for x in [&a, &b] {
        h.sb.send_subscription_event(&x.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    h.sb.update_entitlements(&b.agreement_id, &[("seats", 99)])
        .await
        .unwrap();
    let e = h.provider.entitlements(&ra).await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].value, EntitlementValue::Integer(10));
}

#[tokio::test]
async fn entitlements_page_through_next_token() {
    let h = start().await;
    for _ in 0..30 {
        let p =
            h.sb.purchase(CONCURRENT, OfferKind::Contract, OTHER_BUYER)
                .unwrap();
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    // Without a LicenseArn, the account filter returns every license of the account.
    let by_account = ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: OTHER_BUYER.into(),
        product_code: CONCURRENT.into(),
        customer_id: OTHER_BUYER.into(),
        customer_account_id: Some(OTHER_BUYER.into()),
        license_arn: None,
    };
    let e = h.provider.entitlements(&by_account).await.unwrap();
    assert_eq!(e.len(), 30);
    let pages =
        h.sb.call_log()
            .iter()
            .filter(|c| c.operation == "GetEntitlements")
            .count();
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn vendor_side_changes_are_unsupported() {
    let h = start().await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let r = h.resolve(&p.registration_token).await.subscription;
    let caps = h.provider.capabilities();
    assert!(!caps.vendor_activates && !caps.vendor_changes_plan && !caps.vendor_cancels);
    h.provider.activate(&r, None, None).await.unwrap();
    assert!(matches!(
        h.provider.cancel(&r).await,
        Err(ProviderError::Unsupported { .. })
    ));
    assert!(matches!(
        h.provider.change_quantity(&r, 3).await,
        Err(ProviderError::Unsupported { .. })
    ));
    assert!(matches!(
        h.provider
            .change_plan(&r, &marketlink_core::PlanId::new("x"))
            .await,
        Err(ProviderError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn unreachable_endpoint_is_retryable() {
    let h = start_with(Default::default(), |c| {
        c.endpoint_url = Some("http://127.0.0.1:1".into());
        c.max_attempts = 2;
    })
    .await;
    let err = resolve_err(&h.provider, "any-token").await;
    assert!(err.is_retryable(), "{err:?}");
}
