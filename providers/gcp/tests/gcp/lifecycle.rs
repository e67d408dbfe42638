//! Against the stand-in, for what the Google sandbox cannot show: the order and number of
//! Procurement and token calls (the stand-in logs them; the sandbox keeps no call log), and a
//! doctor whose `gcp.pubsub` check reads the subscription (`subscriptions.get`, which the
//! sandbox does not serve). The rest is in `sandbox_lifecycle.rs`.

use marketlink_core::{DiagnosisStatus, MarketplaceProvider, PlanId, ProviderError};

use super::common::Harness;

async fn pending(h: &Harness) -> marketlink_core::ExternalRef {
    h.add_account("acc-1", false);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let token = marketlink_core::LandingToken {
        token: h.sign_up_token("acc-1"),
    };
    h.provider.resolve(&token).await.unwrap().subscription
}

#[tokio::test]
async fn activate_approves_the_account_then_the_entitlement_and_may_repeat() {
    let h = Harness::start().await;
    let subscription = pending(&h).await;
    assert!(h.provider.capabilities().vendor_activates);
    h.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    assert_eq!(h.entitlement_state("ent-1"), "ENTITLEMENT_ACTIVE");
    let account = h.provider.account("acc-1").await.unwrap();
    assert!(account.signup_approved());
    let calls = h.world.lock().unwrap().calls.clone();
    let account_at = calls
        .iter()
        .position(|c| c == "POST account acc-1:approve")
        .unwrap();
    let entitlement_at = calls
        .iter()
        .position(|c| c == "POST entitlement ent-1:approve")
        .unwrap();
    assert!(account_at < entitlement_at, "{calls:?}");
    // A repeat after a lost acknowledgement is a success and approves nothing twice.
    h.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    let approvals = h
        .world
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|c| c.ends_with(":approve"))
        .count();
    assert_eq!(approvals, 2);
}

#[tokio::test]
async fn the_access_token_is_reused_until_near_its_expiry_by_our_clock() {
    let h = Harness::start().await;
    h.add_account("acc-1", true);
    for _ in 0..3 {
        h.provider.account("acc-1").await.unwrap();
    }
    assert_eq!(h.world.lock().unwrap().tokens_issued, 1);
    h.clock.advance(time::Duration::minutes(56));
    h.provider.account("acc-1").await.unwrap();
    assert_eq!(
        h.world.lock().unwrap().tokens_issued,
        2,
        "renewed five minutes before expiry"
    );
}

#[tokio::test]
async fn without_a_key_file_nothing_is_probed_at_start() {
    // ADC is looked up on first use only: building the provider makes no call at all.
    let h = Harness::start_with(|c| c.credentials_file = None).await;
    assert!(format!("{:?}", h.provider).contains("GcpProvider"));
    assert_eq!(h.world.lock().unwrap().tokens_issued, 0);
}

#[tokio::test]
async fn google_has_no_vendor_side_cancel_or_change() {
    let h = Harness::start().await;
    let subscription = pending(&h).await;
    let caps = h.provider.capabilities();
    assert!(!caps.vendor_cancels && !caps.vendor_changes_plan);
    assert!(matches!(
        h.provider.cancel(&subscription).await,
        Err(ProviderError::Unsupported { .. })
    ));
    let change = h
        .provider
        .change_plan(&subscription, &PlanId::new("pro"))
        .await;
    assert!(matches!(change, Err(ProviderError::Unsupported { .. })));
    assert!(
        h.world
            .lock()
            .unwrap()
            .calls
            .iter()
            .all(|c| !c.starts_with("POST"))
    );
}

#[tokio::test]
async fn doctor_checks_each_surface() {
    let h = Harness::start().await;
    let findings = h.provider.diagnose().await;
    let checks: Vec<_> = findings
        .iter()
        .map(|f| (f.check.as_str(), f.status))
        .collect();
    assert!(
        checks.contains(&("gcp.credentials", DiagnosisStatus::Ok)),
        "{findings:?}"
    );
    assert!(
        checks.contains(&("gcp.procurement", DiagnosisStatus::Ok)),
        "{findings:?}"
    );
    assert!(
        checks.contains(&("gcp.signup_keys", DiagnosisStatus::Ok)),
        "{findings:?}"
    );
    assert!(
        checks.contains(&("gcp.pubsub", DiagnosisStatus::Ok)),
        "{findings:?}"
    );
}
