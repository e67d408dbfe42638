//! Set-up requests: an operator decides each once; an approval link is found by its hash
//! only while it is valid.

use marketlink_core::{ExternalRef, Marketplace, ResolvedPurchase};
use marketlink_store::{OnboardingDecision, OnboardingRequest, Store, StoreError};
use time::Duration;
use uuid::Uuid;

use crate::{T0, story};

fn request(external_id: &str) -> OnboardingRequest {
    OnboardingRequest {
        id: Uuid::now_v7(),
        name: "Sam Stranger".into(),
        email: "sam@other.example".into(),
        company: None,
        message: Some("signed in as someone else".into()),
        purchase: ResolvedPurchase {
            subscription: ExternalRef {
                marketplace: Marketplace::AZURE,
                external_id: external_id.into(),
                product_code: "contoso-analytics".into(),
                customer_id: "tenant-1".into(),
                customer_account_id: None,
                license_arn: None,
            },
            plan_id: None,
            quantity: None,
            free_trial: false,
            term: None,
            display_name: None,
            buyer_email: None,
            aliases: vec![],
            parties: vec![],
        },
        status: "open".into(),
        created_at: T0,
    }
}

async fn a_request_is_decided_once_and_its_link_expires(store: &Store) {
    let approved = request("sub-approved");
    let declined = request("sub-declined");
    store.create_onboarding_request(&approved).await.unwrap();
    store.create_onboarding_request(&declined).await.unwrap();
    let decision = OnboardingDecision::Approved {
        link_hash: "hash-1".into(),
        expires_at: T0 + Duration::days(7),
    };
    store
        .decide_onboarding_request(approved.id, &decision, "admin:ops@v.example", T0)
        .await
        .unwrap();
    // Decided already: a second decision (another operator's, or a replayed form) is refused.
    let again = OnboardingDecision::Declined {
        reason: "late".into(),
    };
    assert!(matches!(
        store
            .decide_onboarding_request(approved.id, &again, "admin:other@v.example", T0)
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .decide_onboarding_request(declined.id, &again, "admin:ops@v.example", T0)
        .await
        .unwrap();

    let found = store
        .approved_onboarding_request("hash-1", T0 + Duration::days(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, approved.id);
    assert_eq!(found.status, "approved");
    assert_eq!(found.purchase, approved.purchase);
    assert!(
        store
            .approved_onboarding_request("hash-1", T0 + Duration::days(8))
            .await
            .unwrap()
            .is_none(),
        "an expired link finds nothing"
    );
    assert!(
        store
            .approved_onboarding_request("hash-2", T0)
            .await
            .unwrap()
            .is_none()
    );
    let open = store.list_onboarding_requests("open", 10).await.unwrap();
    assert!(open.is_empty(), "both are decided: {open:?}");
    let gone = store
        .list_onboarding_requests("declined", 10)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
}
story!(
    onboarding_decisions,
    a_request_is_decided_once_and_its_link_expires
);
