//! Activation, plan-change answers, reconciliation and doctor against Procurement.

use axum::http::StatusCode;
use marketlink_core::{
    ChangeAnswer, ChangeProgress, DiagnosisStatus, MarketplaceProvider, PlanId, ProviderError,
    SubscriptionStatus,
};
use serde_json::json;

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
async fn activation_failures_are_classified() {
    let h = Harness::start().await;
    let subscription = pending(&h).await;
    h.world.lock().unwrap().fail_next = Some(StatusCode::SERVICE_UNAVAILABLE);
    let outage = h.provider.activate(&subscription, None, None).await;
    assert!(
        outage.as_ref().is_err_and(ProviderError::is_retryable),
        "{outage:?}"
    );
    h.set("ent-1", "state", json!("ENTITLEMENT_CANCELLED"));
    let cancelled = h.provider.activate(&subscription, None, None).await;
    assert!(
        matches!(cancelled, Err(ProviderError::Rejected { .. })),
        "{cancelled:?}"
    );
    let mut gone = subscription.clone();
    gone.external_id = "ent-none".into();
    let missing = h.provider.activate(&gone, None, None).await;
    assert!(
        matches!(missing, Err(ProviderError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_provider_id_google_does_not_grant_is_a_configuration_problem() {
    let h = Harness::start_with(|c| c.provider_id = "DEMO-other".into()).await;
    h.add_account("acc-1", false);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let refused = h.provider.entitlement("ent-1").await;
    assert!(
        matches!(refused, Err(ProviderError::Configuration(_))),
        "{refused:?}"
    );
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
async fn a_token_endpoint_outage_is_retried_later() {
    let h = Harness::start().await;
    h.world.lock().unwrap().token_outage = Some(StatusCode::SERVICE_UNAVAILABLE);
    let outage = h.provider.entitlement("ent-1").await;
    assert!(
        outage.as_ref().is_err_and(ProviderError::is_retryable),
        "{outage:?}"
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
async fn a_refused_token_grant_is_a_configuration_problem() {
    let h = Harness::start().await;
    h.world.lock().unwrap().refuse_tokens = true;
    let refused = h.provider.entitlement("ent-1").await;
    assert!(
        matches!(refused, Err(ProviderError::Configuration(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn plan_changes_are_approved_or_rejected_by_pending_plan() {
    let h = Harness::start().await;
    let subscription = pending(&h).await;
    h.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    h.set(
        "ent-1",
        "state",
        json!("ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"),
    );
    h.set("ent-1", "newPendingPlan", json!("pro"));
    // An answer about another pending plan is not sent.
    let other = h
        .provider
        .respond_to_change(&subscription, "enterprise", true, None)
        .await
        .unwrap();
    assert!(matches!(other, ChangeAnswer::SettledWithout { .. }));
    let running = h
        .provider
        .follow_change(&subscription, "pro")
        .await
        .unwrap();
    assert!(matches!(running, ChangeProgress::Running { .. }));
    let taken = h
        .provider
        .respond_to_change(&subscription, "pro", true, None)
        .await
        .unwrap();
    assert_eq!(taken, ChangeAnswer::Taken);
    match h
        .provider
        .follow_change(&subscription, "pro")
        .await
        .unwrap()
    {
        ChangeProgress::Ended {
            succeeded, view, ..
        } => {
            assert!(succeeded);
            assert_eq!(view.plan_id, Some(PlanId::new("pro")));
        }
        other => panic!("{other:?}"),
    }
    // Refusing a downgrade keeps the old plan.
    h.set(
        "ent-1",
        "state",
        json!("ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"),
    );
    h.set("ent-1", "newPendingPlan", json!("basic"));
    let refused = h
        .provider
        .respond_to_change(&subscription, "basic", false, None)
        .await
        .unwrap();
    assert_eq!(refused, ChangeAnswer::Taken);
    match h
        .provider
        .follow_change(&subscription, "basic")
        .await
        .unwrap()
    {
        ChangeProgress::Ended {
            succeeded, view, ..
        } => {
            assert!(!succeeded);
            assert_eq!(view.plan_id, Some(PlanId::new("pro")));
        }
        other => panic!("{other:?}"),
    }
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
async fn survey_lists_every_entitlement_in_marketlink_states() {
    let h = Harness::start().await;
    h.add_account("acc-1", true);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVE");
    h.add_entitlement("ent-2", "acc-1", "ENTITLEMENT_PENDING_CANCELLATION");
    h.add_entitlement("ent-3", "acc-1", "ENTITLEMENT_CANCELLED");
    h.add_entitlement("ent-4", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let mut views = h.provider.survey(&[]).await.unwrap();
    views.sort_by(|a, b| a.subscription.external_id.cmp(&b.subscription.external_id));
    let statuses: Vec<_> = views.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        [
            Some(SubscriptionStatus::Active),
            Some(SubscriptionStatus::Active),
            Some(SubscriptionStatus::Cancelled),
            Some(SubscriptionStatus::Pending)
        ]
    );
    assert_eq!(views[0].plan_id, Some(PlanId::new("basic")));
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
    let wrong = Harness::start_with(|c| c.provider_id = "DEMO-other".into()).await;
    let findings = wrong.provider.diagnose().await;
    let procurement = findings
        .iter()
        .find(|f| f.check == "gcp.procurement")
        .unwrap();
    assert_eq!(procurement.status, DiagnosisStatus::Failed);
    assert!(
        procurement.detail.contains("provider_id"),
        "{}",
        procurement.detail
    );
}
