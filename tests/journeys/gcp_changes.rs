//! Google Cloud Marketplace after the sign-up: plan changes approved or refused by the
//! vendor's downgrade policy, a cancellation with its pending period, usage billed once across
//! a crash (Service Control keeps one operation per id), and a lost Pub/Sub message repaired
//! by reconciliation.

use std::sync::Arc;

use marketlink_cli::run;
use marketlink_core::{Clock, Lifecycle, Quantity, Subscription, SubscriptionStatus, SystemClock};
use marketlink_e2e::{eventually, start_gcp};
use marketlink_engine::{Engine, Providers, metering::hour_floor, reconcile::Drift};
use marketlink_sandbox::gcp::{CancellationPolicy, EntitlementState, PubSubChaos, PurchaseRequest};
use marketlink_store::{QueueState, Store, StoreOptions, UsageHourState};
use time::Duration;

use crate::{
    gcp::{active_purchase, entitlement_state, google, subscription, wait_for},
    metering::DiesAfterCall,
};

fn plan(s: &Subscription) -> Option<&str> {
    s.plan_id.as_ref().map(|p| p.as_str())
}

#[tokio::test]
async fn an_upgrade_is_approved_and_a_downgrade_refused() {
    let stack = start_gcp(false, |_| {}, |c| c.changes.refuse_downgrades = true).await;
    let google_side = stack.google();
    let purchase = active_purchase(&stack, PurchaseRequest::plan("basic")).await;
    let id = purchase.entitlement_id.as_str();

    google_side.request_plan_change(id, "pro").unwrap();
    wait_for(&stack, id, "on pro", |s| plan(s) == Some("pro")).await;
    let entitlement = google_side.entitlement(id).unwrap();
    assert_eq!(
        (entitlement.state, entitlement.plan.as_str()),
        (EntitlementState::EntitlementActive, "pro")
    );

    google_side.request_plan_change(id, "basic").unwrap();
    eventually("Google has the downgrade refused", || async {
        let e = google_side.entitlement(id).unwrap();
        e.state == EntitlementState::EntitlementActive && e.new_pending_plan.is_none()
    })
    .await;
    assert_eq!(google_side.entitlement(id).unwrap().plan, "pro");
    let ours = subscription(&stack, id).await.unwrap();
    assert_eq!(
        (ours.status, plan(&ours)),
        (SubscriptionStatus::Active, Some("pro"))
    );
}

#[tokio::test]
async fn a_cancellation_waits_for_the_end_of_the_term() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let purchase = active_purchase(&stack, PurchaseRequest::plan("basic")).await;
    let id = purchase.entitlement_id.as_str();

    stack
        .google()
        .cancel(id, CancellationPolicy::EndOfTerm)
        .unwrap();
    assert_eq!(
        entitlement_state(&stack, id),
        EntitlementState::EntitlementPendingCancellation
    );
    wait_for(&stack, id, "usable until the term's end", |s| {
        s.status == SubscriptionStatus::Active && s.term.as_ref().is_some_and(|t| t.end.is_some())
    })
    .await;

    stack.google().end_term(id).unwrap();
    wait_for(&stack, id, "cancelled", |s| {
        s.status == SubscriptionStatus::Cancelled
    })
    .await;
}

/// The first flusher makes the Service Control call and dies before its bookkeeping; the
/// next one resends the same operation ids, and Google's ledger counts each hour once.
#[tokio::test]
async fn usage_is_billed_once_across_a_crash() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let purchase = active_purchase(
        &stack,
        PurchaseRequest {
            usage_based: true,
            ..PurchaseRequest::plan("pro")
        },
    )
    .await;
    let served = subscription(&stack, &purchase.entitlement_id)
        .await
        .unwrap();
    // marketlink's own database for the flushers (the stack's server has another).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite:{}", dir.path().join("crash.db").display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut pending = Subscription::pending(served.external.clone(), clock.now());
    pending.product_id = served.product_id.clone();
    pending.plan_id = served.plan_id.clone();
    let sub = store.upsert_subscription(&pending).await.unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, clock.now())
        .await
        .unwrap();

    let providers = run::providers(&stack.config, clock.clone()).await.unwrap();
    let gcp = providers.get(&google()).unwrap().clone();
    let config = stack.config.clone();
    let engine = |provider: Arc<dyn marketlink_core::MarketplaceProvider>| {
        let mut settings = config.metering.settings();
        settings.lease = Duration::seconds(1);
        // The last hour may be sent as soon as it has ended: Google wants it within an hour.
        settings.settle = Duration::ZERO;
        Engine::new(
            store.clone(),
            Providers::new().with(provider),
            clock.clone(),
            Arc::new(config.catalog.clone()),
            config.changes.clone(),
        )
        .with_metering(settings)
    };
    // The hour before this one: closed, and young enough for Google (an hour, S19).
    let hour = hour_floor(clock.now()) - Duration::hours(1);
    let input = marketlink_engine::metering::UsageInput {
        subscription_id: Some(sub.id),
        tenant_id: None,
        product: None,
        dimension: "api_calls".into(),
        quantity: Quantity::from_units(42),
        timestamp: hour + Duration::minutes(30),
        idempotency_key: None,
        allocations: vec![],
    };
    let doomed = engine(Arc::new(DiesAfterCall(gcp.clone())));
    doomed.ingest_usage(&[input], None).await.unwrap();
    let ledger = || {
        stack
            .google()
            .usage_ledger()
            .into_iter()
            .filter(|r| r.entitlement_id == purchase.entitlement_id)
            .collect::<Vec<_>>()
    };
    let crashed = tokio::spawn(async move { doomed.flush_usage().await });
    eventually("Service Control has the report", || async {
        ledger().len() == 1
    })
    .await;
    crashed.abort();
    let _ = crashed.await;
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert!(
        rows.iter().all(|h| h.state == UsageHourState::Sending),
        "{rows:?}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let run = engine(gcp).flush_usage().await.unwrap();
    assert_eq!((run.claimed, run.delivered), (1, 1), "{run:?}");
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert!(
        rows.iter()
            .all(|h| h.state == UsageHourState::Delivered && h.attempts == 2),
        "{rows:?}"
    );
    let ledger = ledger();
    assert_eq!(ledger.len(), 1, "billed once: {ledger:?}");
    assert_eq!(
        (
            ledger[0].value,
            ledger[0].window_start,
            ledger[0].metric.as_str()
        ),
        (42, hour, "marketlink.example.com/api_calls")
    );
    store.close().await;
}

/// The cancellation's message is lost (the sandbox's drop switch): reconciliation reads
/// the entitlement and repairs our copy.
#[tokio::test]
async fn reconciliation_repairs_a_lost_message() {
    let stack = start_gcp(false, |_| {}, |_| {}).await;
    let purchase = active_purchase(&stack, PurchaseRequest::plan("basic")).await;
    let id = purchase.entitlement_id.as_str();
    let google_side = stack.google();
    // Every message so far applied: each re-reads the entitlement, so one still on its way
    // would carry the cancellation too.
    eventually("the purchase's messages applied", || async {
        let done = stack.store.inbox_list(QueueState::Done, 100).await.unwrap();
        done.len() == google_side.published().len()
    })
    .await;
    google_side.set_pubsub_chaos(PubSubChaos {
        drop_next: 1,
        ..PubSubChaos::default()
    });
    google_side
        .cancel(id, CancellationPolicy::Immediate)
        .unwrap();
    assert!(
        google_side
            .published()
            .last()
            .is_some_and(|m| m.dropped && m.data["eventType"] == "ENTITLEMENT_CANCELLED"),
        "the cancellation was lost"
    );
    // Nothing else arrives: ours stays active.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        subscription(&stack, id).await.unwrap().status,
        SubscriptionStatus::Active
    );

    let dry = run::reconcile_once(&stack.config, true).await.unwrap();
    let drift = dry.items.iter().find(|i| i.external_id == id);
    assert!(
        drift.is_some_and(|i| matches!(
            i.drift,
            Drift::StatusMismatch {
                ours: SubscriptionStatus::Active,
                theirs: SubscriptionStatus::Cancelled
            }
        )),
        "{dry:?}"
    );
    assert_eq!(
        subscription(&stack, id).await.unwrap().status,
        SubscriptionStatus::Active,
        "a dry run changes nothing"
    );
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(report.repaired >= 1, "{report:?}");
    assert_eq!(
        subscription(&stack, id).await.unwrap().status,
        SubscriptionStatus::Cancelled
    );
}
