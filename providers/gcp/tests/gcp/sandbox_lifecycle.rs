//! Activation, plan-change answers, reconciliation and credentials against the Google sandbox:
//! its Procurement state machine, its token endpoint and its fault switches.
//! (Moved here from the stand-in, `lifecycle.rs`, which keeps only what the sandbox cannot do.)

use marketlink_core::{
    ChangeAnswer, ChangeProgress, Clock, DiagnosisStatus, EventKind, ExternalRef, LandingToken,
    Lifecycle, MarketplaceProvider, PlanId, ProviderError, SubscriptionStatus,
};
use marketlink_sandbox::{
    gcp::{CancellationPolicy, PrivateOffer, Purchase, PurchaseRequest},
    switch::{FaultConfig, FaultKind},
};
use serde_json::json;
use time::{Duration, macros::datetime};

use super::{
    keys,
    sandbox::{World, drain, start, start_with},
};

async fn resolved(w: &World, purchase: &Purchase) -> ExternalRef {
    let token = LandingToken {
        token: purchase.sign_up_token.clone(),
    };
    w.provider.resolve(&token).await.unwrap().subscription
}

fn fault(matching: &str, kind: FaultKind) -> FaultConfig {
    FaultConfig {
        matching: matching.into(),
        kind,
        retry_after_secs: None,
        late_ms: None,
        calls: Some(1),
        start_after_secs: None,
        duration_secs: None,
    }
}

#[tokio::test]
async fn activation_failures_are_classified() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let subscription = resolved(&w, &purchase).await;
    w.sandbox
        .start_fault(fault(":approve", FaultKind::Unavailable))
        .unwrap();
    let outage = w.provider.activate(&subscription, None, None).await;
    assert!(
        outage.as_ref().is_err_and(ProviderError::is_retryable),
        "{outage:?}"
    );
    // The buyer aborts before we approve: nothing to activate, for good.
    w.sandbox
        .cancel(&purchase.entitlement_id, CancellationPolicy::Immediate)
        .unwrap();
    let cancelled = w.provider.activate(&subscription, None, None).await;
    assert!(
        matches!(cancelled, Err(ProviderError::Rejected { .. })),
        "{cancelled:?}"
    );
    let gone = ExternalRef {
        external_id: "ent-none".into(),
        ..subscription
    };
    let missing = w.provider.activate(&gone, None, None).await;
    assert!(
        matches!(missing, Err(ProviderError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_provider_id_google_does_not_grant_is_a_configuration_problem() {
    let w = start_with(|c| c.provider_id = "DEMO-other".into()).await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let refused = w.provider.entitlement(&purchase.entitlement_id).await;
    assert!(
        matches!(refused, Err(ProviderError::Configuration(_))),
        "{refused:?}"
    );
    let findings = w.provider.diagnose().await;
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

#[tokio::test]
async fn a_token_endpoint_outage_is_retried_later() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    w.sandbox
        .start_fault(fault("/token", FaultKind::Unavailable))
        .unwrap();
    let outage = w.provider.entitlement(&purchase.entitlement_id).await;
    assert!(
        outage.as_ref().is_err_and(ProviderError::is_retryable),
        "{outage:?}"
    );
    // The fault was for one call: the next read gets a token.
    w.provider
        .entitlement(&purchase.entitlement_id)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_token_grant_is_a_configuration_problem() {
    // A key file of an account the sandbox does not know: its grant is refused.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("unlinked.json");
    let key = json!({
        "type": "service_account",
        "project_id": "vendor",
        "private_key_id": keys::service_account().kid,
        "private_key": keys::service_account().private_pem,
        "client_email": "unlinked@vendor.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(&key_file, key.to_string()).unwrap();
    let w = start_with(|c| {
        c.token_url = Some(format!("{}/token", c.procurement_url));
        c.credentials_file = Some(key_file.clone());
    })
    .await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let refused = w.provider.entitlement(&purchase.entitlement_id).await;
    assert!(
        matches!(refused, Err(ProviderError::Configuration(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn plan_changes_are_approved_or_rejected_by_pending_plan() {
    let w = start().await;
    let purchase = w.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let subscription = resolved(&w, &purchase).await;
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    let id = &purchase.entitlement_id;
    w.sandbox.request_plan_change(id, "pro").unwrap();
    // An answer about another pending plan is not sent.
    let other = w
        .provider
        .respond_to_change(&subscription, "enterprise", true, None)
        .await
        .unwrap();
    assert!(
        matches!(other, ChangeAnswer::SettledWithout { .. }),
        "{other:?}"
    );
    let running = w
        .provider
        .follow_change(&subscription, "pro")
        .await
        .unwrap();
    assert!(
        matches!(running, ChangeProgress::Running { .. }),
        "{running:?}"
    );
    let taken = w
        .provider
        .respond_to_change(&subscription, "pro", true, None)
        .await
        .unwrap();
    assert_eq!(taken, ChangeAnswer::Taken);
    // Google may hold an approved change to the end of the cycle (PENDING_PLAN_CHANGE).
    if w.sandbox.entitlement(id).unwrap().state.name() == "ENTITLEMENT_PENDING_PLAN_CHANGE" {
        w.sandbox.complete_plan_change(id).unwrap();
    }
    assert_eq!(w.sandbox.entitlement(id).unwrap().plan, "pro");
    // Refusing a downgrade keeps the old plan.
    w.sandbox.request_plan_change(id, "basic").unwrap();
    let refused = w
        .provider
        .respond_to_change(&subscription, "basic", false, None)
        .await
        .unwrap();
    assert_eq!(refused, ChangeAnswer::Taken);
    match w
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
async fn survey_lists_every_entitlement_in_marketlink_states() {
    let w = start().await;
    let mut expected = Vec::new();
    for (plan, status) in [
        ("basic", SubscriptionStatus::Active),
        ("pro", SubscriptionStatus::Active),
        ("basic", SubscriptionStatus::Cancelled),
        ("pro", SubscriptionStatus::Pending),
    ] {
        let purchase = w.sandbox.purchase(PurchaseRequest::plan(plan)).unwrap();
        if status != SubscriptionStatus::Pending {
            let subscription = resolved(&w, &purchase).await;
            w.provider
                .activate(&subscription, None, None)
                .await
                .unwrap();
        }
        expected.push((purchase.entitlement_id, status, plan));
    }
    // The second is cancelled at term end (still usable), the third at once.
    w.sandbox
        .cancel(&expected[1].0, CancellationPolicy::EndOfTerm)
        .unwrap();
    w.sandbox
        .cancel(&expected[2].0, CancellationPolicy::Immediate)
        .unwrap();
    let views = w.provider.survey(&[]).await.unwrap();
    for (id, status, plan) in &expected {
        let view = views
            .iter()
            .find(|v| &v.subscription.external_id == id)
            .unwrap_or_else(|| panic!("{id} surveyed: {views:?}"));
        assert_eq!(view.status, Some(*status), "{id}");
        assert_eq!(view.plan_id, Some(PlanId::new(*plan)), "{id}");
    }
}

#[tokio::test]
async fn private_offers_and_renewals_carry_their_term() {
    let w = start().await;
    let offer_end = datetime!(2027-09-02 00:00 UTC);
    let purchase = w
        .sandbox
        .purchase(PurchaseRequest {
            private_offer: Some(PrivateOffer {
                offer: "projects/1/services/svc/privateOffers/po-1".into(),
                offer_duration: Some("P1Y6M".into()),
                offer_end_time: Some(offer_end),
            }),
            ..PurchaseRequest::plan("pro")
        })
        .unwrap();
    let token = LandingToken {
        token: purchase.sign_up_token.clone(),
    };
    let term = w.provider.resolve(&token).await.unwrap().term.unwrap();
    assert_eq!(term.unit.as_deref(), Some("P1Y6M"));
    assert_eq!(term.end, Some(offer_end));
    let subscription = resolved(&w, &purchase).await;
    w.provider
        .activate(&subscription, None, None)
        .await
        .unwrap();
    let accepted = drain(&w).await;
    assert!(
        accepted.iter().any(|e| matches!(&e.kind,
            EventKind::Renewed { term: Some(t) } if t.unit.as_deref() == Some("P1Y6M"))),
        "{accepted:?}"
    );
    // Renewed: active, with the new end, at Google's time.
    let renewed_until = datetime!(2029-03-02 00:00 UTC);
    w.clock.advance(Duration::minutes(5));
    w.sandbox
        .renew(&purchase.entitlement_id, renewed_until)
        .unwrap();
    let renewed = drain(&w).await;
    assert!(
        renewed.iter().any(|e| matches!(
            &e.kind,
            EventKind::Lifecycle {
                event: Lifecycle::Activate,
                ..
            }
        )),
        "{renewed:?}"
    );
    let renewal = renewed
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Renewed { term: Some(t) } if t.end == Some(renewed_until)))
        .unwrap_or_else(|| panic!("{renewed:?}"));
    assert_eq!(renewal.occurred_at, w.clock.now());
}
