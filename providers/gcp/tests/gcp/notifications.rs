//! Pub/Sub push and pull, and what `interpret` makes of each pointer message, against the
//! stand-in. The sandbox runs the real paths end to end (`sandbox.rs`: pull through
//! cancellation, duplicates and reordering; `sandbox_push.rs`: its OIDC-signed pushes;
//! `sandbox_lifecycle.rs`: private offers and renewals); these
//! cases stay here because the sandbox cannot produce them: push tokens with altered claims
//! (it exposes no signer for its OIDC key), key rotation and refetch counts, an entitlement
//! whose account Google has not shown yet (a sandbox purchase creates both at once), any state
//! in any order (ENTITLEMENT_SUSPENDED is "not yet supported" by Google and the sandbox), event
//! types Google has not documented, and "authentication calls nothing" (the call log).

use marketlink_core::{
    EmptyDirectory, EventKind, Lifecycle, MarketplaceEvent, MarketplaceProvider, ProviderError,
};
use marketlink_gcp::PULL_CHANNEL;
use serde_json::json;
use time::Duration;

use super::common::{Harness, PUSH_AUDIENCE, entitlement_notice, pubsub_message};

async fn interpret(
    h: &Harness,
    notice: &serde_json::Value,
) -> Result<Vec<MarketplaceEvent>, ProviderError> {
    let message = h.provider.authenticate(&h.push(notice, None)).await?;
    h.provider.interpret(&message, &EmptyDirectory).await
}

fn kinds(events: &[MarketplaceEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

#[tokio::test]
async fn a_push_is_authenticated_by_googles_oidc_token() {
    let h = Harness::start().await;
    let notice = entitlement_notice("ev-1", "ENTITLEMENT_CREATION_REQUESTED", "ent-1");
    let message = h
        .provider
        .authenticate(&h.push(&notice, None))
        .await
        .unwrap();
    assert_eq!(message.dedup_key, "ev-1");
    assert_eq!(message.kind, "ENTITLEMENT_CREATION_REQUESTED");
    assert_eq!(message.payload["entitlement"]["id"], "ent-1");
    // Authentication acts on nothing at Google.
    assert!(h.world.lock().unwrap().calls.is_empty());
}

#[tokio::test]
async fn forged_stale_and_misaddressed_pushes_are_refused() {
    let h = Harness::start().await;
    let notice = entitlement_notice("ev-1", "ENTITLEMENT_ACTIVE", "ent-1");
    let mut cases = Vec::new();
    for (field, value) in [
        ("aud", json!("https://elsewhere.example/push")),
        ("iss", json!("https://evil.example")),
        ("email", json!("someone@else.iam.gserviceaccount.com")),
        ("email_verified", json!(false)),
        ("exp", json!(h.now() - 3600)),
    ] {
        let mut claims = h.push_claims();
        claims[field] = value;
        cases.push((field.to_owned(), h.push(&notice, Some(claims))));
    }
    let mut unsigned = h.push(&notice, None);
    unsigned.headers.clear();
    cases.push(("no token".into(), unsigned));
    let forged = super::keys::sign(
        super::keys::forger(),
        &super::keys::oidc().kid,
        &h.push_claims(),
    );
    let mut forged_push = h.push(&notice, None);
    forged_push.headers = vec![("authorization".into(), format!("Bearer {forged}"))];
    cases.push(("forged".into(), forged_push));
    for (what, message) in cases {
        let refused = h.provider.authenticate(&message).await;
        assert!(
            matches!(refused, Err(ProviderError::Unauthenticated(_))),
            "{what}: {refused:?}"
        );
    }
    let mut other_provider = notice.clone();
    other_provider["providerId"] = json!("DEMO-someone-else");
    let refused = h
        .provider
        .authenticate(&h.push(&other_provider, None))
        .await;
    assert!(
        matches!(refused, Err(ProviderError::Rejected { .. })),
        "{refused:?}"
    );
    assert!(PUSH_AUDIENCE.ends_with("/gcp/pubsub"));
}

#[tokio::test]
async fn pull_takes_messages_and_ack_removes_them() {
    let h = Harness::start().await;
    let notice = entitlement_notice("ev-7", "ENTITLEMENT_ACTIVE", "ent-1");
    h.world
        .lock()
        .unwrap()
        .queue
        .push(("ack-1".into(), pubsub_message(&notice, "m-7")));
    let pulled = h.provider.pull(10).await.unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].receipt, "ack-1");
    assert_eq!(pulled[0].message.channel, PULL_CHANNEL);
    let message = h.provider.authenticate(&pulled[0].message).await.unwrap();
    assert_eq!(message.dedup_key, "ev-7");
    h.provider.ack("ack-1").await.unwrap();
    assert!(h.provider.pull(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn creation_before_the_account_is_retried_then_creates_a_pending_subscription() {
    let h = Harness::start().await;
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVATION_REQUESTED");
    let notice = entitlement_notice("ev-1", "ENTITLEMENT_CREATION_REQUESTED", "ent-1");
    let early = interpret(&h, &notice).await;
    assert!(
        early.as_ref().is_err_and(ProviderError::is_retryable),
        "{early:?}"
    );
    h.add_account("acc-1", false);
    let events = interpret(&h, &notice).await.unwrap();
    assert_eq!(
        kinds(&events),
        [EventKind::PlanChanged {
            plan_id: "basic".into()
        }]
    );
    // The same reference the sign-up resolves to, so both meet on one subscription.
    let token = marketlink_core::LandingToken {
        token: h.sign_up_token("acc-1"),
    };
    let purchase = h.provider.resolve(&token).await.unwrap();
    assert_eq!(events[0].subscription, purchase.subscription);
}

#[tokio::test]
async fn each_state_maps_to_its_event_whatever_the_order() {
    let h = Harness::start().await;
    h.add_account("acc-1", true);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVE");
    // A late CREATION_REQUESTED after activation reads the current state: active.
    let events = interpret(
        &h,
        &entitlement_notice("ev-1", "ENTITLEMENT_CREATION_REQUESTED", "ent-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Activate,
            reason: None
        }
    );
    h.set(
        "ent-1",
        "state",
        json!("ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"),
    );
    h.set("ent-1", "newPendingPlan", json!("pro"));
    let events = interpret(
        &h,
        &entitlement_notice("ev-2", "ENTITLEMENT_PLAN_CHANGE_REQUESTED", "ent-1"),
    )
    .await
    .unwrap();
    assert!(
        matches!(&events[0].kind, EventKind::ChangeRequested { operation_id, .. } if operation_id == "pro")
    );
    h.set("ent-1", "state", json!("ENTITLEMENT_PENDING_CANCELLATION"));
    h.set(
        "ent-1",
        "subscriptionEndTime",
        json!("2026-04-01T00:00:00Z"),
    );
    let events = interpret(
        &h,
        &entitlement_notice("ev-3", "ENTITLEMENT_PENDING_CANCELLATION", "ent-1"),
    )
    .await
    .unwrap();
    match &events[0].kind {
        EventKind::Renewed { term: Some(term) } => assert!(term.end.is_some()),
        other => panic!("{other:?}"),
    }
    h.set("ent-1", "state", json!("ENTITLEMENT_CANCELLED"));
    h.set("ent-1", "cancellationReason", json!("user-cancelled"));
    let events = interpret(
        &h,
        &entitlement_notice("ev-4", "ENTITLEMENT_CANCELLED", "ent-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        events[0].kind,
        EventKind::Lifecycle {
            event: Lifecycle::Cancel,
            reason: Some("user-cancelled".into())
        }
    );
    assert_eq!(
        events[0].occurred_at,
        time::macros::datetime!(2026-03-02 09:30 UTC)
    );
}

#[tokio::test]
async fn unknown_types_accounts_and_deleted_entitlements_change_nothing() {
    let h = Harness::start().await;
    h.add_account("acc-1", true);
    h.add_entitlement("ent-1", "acc-1", "ENTITLEMENT_ACTIVE");
    let unknown = entitlement_notice("ev-1", "ENTITLEMENT_SOMETHING_NEW", "ent-1");
    assert!(interpret(&h, &unknown).await.unwrap().is_empty());
    let account = json!({"eventId": "ev-2", "eventType": "ACCOUNT_ACTIVE", "providerId": super::google::PROVIDER,
                         "account": {"id": "acc-1", "updateTime": "2026-03-02T09:30:00Z"}});
    assert!(interpret(&h, &account).await.unwrap().is_empty());
    let deleted = entitlement_notice("ev-3", "ENTITLEMENT_DELETED", "ent-gone");
    assert!(interpret(&h, &deleted).await.unwrap().is_empty());
}

#[tokio::test]
async fn push_keys_rotate_and_unknown_kids_do_not_hammer_google() {
    let h = Harness::start().await;
    let notice = entitlement_notice("ev-1", "ENTITLEMENT_ACTIVE", "ent-1");
    h.provider
        .authenticate(&h.push(&notice, None))
        .await
        .unwrap();
    let unknown = super::keys::sign(super::keys::oidc(), "kid-new", &h.push_claims());
    let mut message = h.push(&notice, None);
    message.headers = vec![("authorization".into(), format!("Bearer {unknown}"))];
    // Just fetched: an unknown kid is not worth another fetch yet.
    assert!(h.provider.authenticate(&message).await.is_err());
    assert_eq!(h.world.lock().unwrap().key_fetches, 1);
    // A minute on, it fetches once more (a rotation), then not again within the minute.
    h.clock.advance(Duration::minutes(2));
    assert!(h.provider.authenticate(&message).await.is_err());
    assert!(h.provider.authenticate(&message).await.is_err());
    assert_eq!(h.world.lock().unwrap().key_fetches, 2);
    // Within the hour the cached keys serve; after it they are fetched again.
    h.clock.advance(Duration::minutes(30));
    h.provider
        .authenticate(&h.push(&notice, None))
        .await
        .unwrap();
    assert_eq!(h.world.lock().unwrap().key_fetches, 2);
    h.clock.advance(Duration::hours(2));
    h.provider
        .authenticate(&h.push(&notice, None))
        .await
        .unwrap();
    assert_eq!(h.world.lock().unwrap().key_fetches, 3);
}
