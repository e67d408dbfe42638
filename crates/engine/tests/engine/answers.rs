//! What the marketplace settled on after our answer: a refusal it applied anyway, a change it
//! accepted before our answer, a Reinstate our policy declines.

use marketlink_core::{
    ChangeProgress, EventKind, Lifecycle, Marketplace, MarketplaceView, PlanId, Subscription,
    SubscriptionStatus,
};
use marketlink_engine::{ChangePolicy, backoff::Backoff, webhooks::WebhookSettings};
use marketlink_store::QueueState;
use time::Duration;

use crate::harness::{Harness, T0, event, harness, lifecycle, message};

async fn active_on_pro(policy: ChangePolicy) -> (Harness, Subscription) {
    let mut h = harness(policy).await;
    h.engine.webhooks = Some(WebhookSettings {
        url: "http://127.0.0.1:9/hooks".into(),
        secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3".into(),
    });
    let pro = EventKind::PlanChanged {
        plan_id: PlanId::new("pro"),
    };
    h.deliver(message(
        "a",
        vec![
            event("s", T0, lifecycle(Lifecycle::Activate)),
            event("s", T0, pro),
        ],
    ))
    .await;
    h.drain().await;
    let sub = subscription(&h).await;
    (h, sub)
}

async fn subscription(h: &Harness) -> Subscription {
    h.engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap()
}

fn downgrade(op: &str) -> EventKind {
    EventKind::ChangeRequested {
        operation_id: op.into(),
        plan_id: Some(PlanId::new("basic")),
        quantity: None,
        answer_by: None,
    }
}

fn ended(sub: &Subscription, status: &str, plan: &str) -> ChangeProgress {
    let mut view = MarketplaceView::of(sub.external.clone());
    view.plan_id = Some(PlanId::new(plan));
    view.status = Some(SubscriptionStatus::Active);
    ChangeProgress::Ended {
        succeeded: status == "Succeeded",
        status: status.into(),
        view: Box::new(view),
    }
}

async fn outcomes(h: &Harness, sub: &Subscription) -> Vec<(String, String)> {
    h.engine
        .store
        .timeline(sub.id, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.outcome))
        .collect()
}

async fn vendor_hooks(h: &Harness, event_type: &str) -> Vec<serde_json::Value> {
    h.engine
        .store
        .outbox_list(QueueState::Pending, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.payload)
        .filter(|p| p["type"] == event_type)
        // Not the setup's move to `pro`.
        .filter(|p| {
            !(p["type"] == "subscription.plan_changed"
                && p["data"]
                    .get("subscription")
                    .is_some_and(|s| s["plan_id"] == "pro"))
        })
        .collect()
}

#[tokio::test]
async fn a_refused_change_applied_anyway_is_applied_and_reported() {
    let policy = ChangePolicy {
        refuse_downgrades: true,
        ..ChangePolicy::default()
    };
    let (h, sub) = active_on_pro(policy).await;
    // Microsoft took our Failure, and billed the new plan all the same.
    *h.provider.follow_script.lock().unwrap() = vec![ended(&sub, "Failed", "basic")];
    h.deliver(message("b", vec![event("s", T0, downgrade("op-1"))]))
        .await;
    h.drain().await;

    assert_eq!(
        *h.provider.responses.lock().unwrap(),
        [("op-1".into(), false)]
    );
    assert_eq!(subscription(&h).await.plan_id, Some(PlanId::new("basic")));
    let history = outcomes(&h, &sub).await;
    assert!(
        history
            .iter()
            .any(|(kind, outcome)| kind == "change_requested"
                && outcome.starts_with("refused: downgrades")),
        "{history:?}"
    );
    assert!(
        history.contains(&(
            "change_refusal_checked".into(),
            "applied despite our refusal (operation Failed)".into()
        )),
        "{history:?}"
    );
    let hooks = vendor_hooks(&h, "subscription.plan_changed").await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["data"]["applied_despite_refusal"], true);

    // Checked once more later (Microsoft may apply it asynchronously), from the outbox.
    *h.provider.follow_script.lock().unwrap() = vec![ended(&sub, "Failed", "basic")];
    let backoff = Backoff::default();
    h.engine.process_outbox(50, &backoff).await.unwrap();
    assert_eq!(h.provider.follow_script.lock().unwrap().len(), 1, "not yet");
    h.clock.advance(Duration::minutes(10));
    h.engine.process_outbox(50, &backoff).await.unwrap();
    assert!(
        h.provider.follow_script.lock().unwrap().is_empty(),
        "looked again"
    );
    let checks: Vec<_> = outcomes(&h, &sub)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "change_refusal_checked")
        .map(|(_, outcome)| outcome)
        .collect();
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(checks[1].ends_with("applied here before"), "{checks:?}");
    assert_eq!(
        vendor_hooks(&h, "subscription.plan_changed").await.len(),
        1,
        "told once"
    );
}

#[tokio::test]
async fn a_refusal_that_held_changes_nothing() {
    let policy = ChangePolicy {
        refuse_downgrades: true,
        ..ChangePolicy::default()
    };
    let (h, sub) = active_on_pro(policy).await;
    *h.provider.follow_script.lock().unwrap() = vec![ended(&sub, "Failed", "pro")];
    h.deliver(message("b", vec![event("s", T0, downgrade("op-1"))]))
        .await;
    h.drain().await;
    assert_eq!(subscription(&h).await.plan_id, Some(PlanId::new("pro")));
    assert!(
        vendor_hooks(&h, "subscription.plan_changed")
            .await
            .is_empty()
    );
    let history = outcomes(&h, &sub).await;
    assert!(
        history
            .iter()
            .any(|(kind, outcome)| kind == "change_refusal_checked"
                && outcome.starts_with("refusal held")),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_change_accepted_before_our_answer_is_applied_and_the_vendor_told() {
    let policy = ChangePolicy {
        refuse_downgrades: true,
        ..ChangePolicy::default()
    };
    let (h, sub) = active_on_pro(policy).await;
    *h.provider.follow_script.lock().unwrap() = vec![ended(&sub, "Succeeded", "basic")];
    h.deliver(message("b", vec![event("s", T0, downgrade("late-1"))]))
        .await;
    h.drain().await;

    assert!(
        h.provider.responses.lock().unwrap().is_empty(),
        "no answer sent"
    );
    assert_eq!(subscription(&h).await.plan_id, Some(PlanId::new("basic")));
    let history = outcomes(&h, &sub).await;
    assert!(
        history
            .iter()
            .any(|(kind, outcome)| kind == "change_settled_by_marketplace"
                && outcome.contains("auto-accepted")
                && outcome.contains("our policy would have refused")),
        "{history:?}"
    );
    let hooks = vendor_hooks(&h, "subscription.plan_changed").await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["data"]["auto_accepted"], true);
    assert!(
        hooks[0]["data"]["policy_refusal"]
            .as_str()
            .unwrap()
            .contains("downgrades")
    );
}

#[tokio::test]
async fn a_declined_reinstate_cancels_at_the_marketplace_and_here() {
    let policy = ChangePolicy {
        decline_reinstate: true,
        ..ChangePolicy::default()
    };
    let (h, sub) = active_on_pro(policy).await;
    h.deliver(message(
        "b",
        vec![event("s", T0, lifecycle(Lifecycle::Suspend))],
    ))
    .await;
    h.drain().await;
    *h.provider.cancel_operation.lock().unwrap() = Some("op-delete".into());
    let mut view = MarketplaceView::of(sub.external.clone());
    view.status = Some(SubscriptionStatus::Cancelled);
    *h.provider.follow_script.lock().unwrap() = vec![ChangeProgress::Ended {
        succeeded: true,
        status: "Succeeded".into(),
        view: Box::new(view),
    }];
    h.deliver(message(
        "c",
        vec![event(
            "s",
            T0 + Duration::minutes(1),
            lifecycle(Lifecycle::Reinstate),
        )],
    ))
    .await;
    h.drain().await;
    assert_eq!(*h.provider.cancelled.lock().unwrap(), ["s".to_string()]);
    assert_eq!(
        h.status("s").await,
        SubscriptionStatus::Suspended,
        "not reinstated"
    );

    h.engine
        .process_outbox(50, &Backoff::default())
        .await
        .unwrap();
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
    let history = outcomes(&h, &sub).await;
    assert!(
        history
            .iter()
            .any(|(kind, outcome)| kind == "lifecycle:reinstate"
                && outcome.contains("declined by policy")),
        "{history:?}"
    );
    assert!(
        history.iter().any(|(kind, _)| kind == "reinstate_declined"),
        "{history:?}"
    );
    let hooks = vendor_hooks(&h, "subscription.cancelled").await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["data"]["reason"], "reinstate_declined");
}
