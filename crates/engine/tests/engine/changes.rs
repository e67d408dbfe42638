//! Changes the marketplace asks us to accept, and how we answer them.

use marketlink_core::{
    ChangeOutcome, ChangeProgress, EventKind, Lifecycle, Marketplace, MarketplaceView, PlanId,
    SubscriptionStatus,
};
use marketlink_engine::{ChangePolicy, VendorChange, backoff::Backoff};
use time::Duration;

use crate::harness::{T0, event, harness, lifecycle, message};

#[tokio::test]
async fn change_requests_follow_the_policy() {
    let h = harness(ChangePolicy {
        refuse_downgrades: true,
        min_quantity: Some(2),
        ..ChangePolicy::default()
    })
    .await;
    h.deliver(message(
        "a",
        vec![
            event("s", T0, lifecycle(Lifecycle::Activate)),
            event(
                "s",
                T0,
                EventKind::PlanChanged {
                    plan_id: PlanId::new("pro"),
                },
            ),
        ],
    ))
    .await;
    let request = |op: &str, plan: Option<&str>, quantity: Option<u32>| {
        event(
            "s",
            T0 + Duration::minutes(1),
            EventKind::ChangeRequested {
                operation_id: op.into(),
                plan_id: plan.map(PlanId::new),
                quantity,
                answer_by: None,
            },
        )
    };
    h.deliver(message("b", vec![request("op-down", Some("basic"), None)]))
        .await;
    h.deliver(message("c", vec![request("op-seats", None, Some(1))]))
        .await;
    h.deliver(message("d", vec![request("op-ok", None, Some(10))]))
        .await;
    assert_eq!(h.drain().await.processed, 4);
    assert_eq!(
        *h.provider.responses.lock().unwrap(),
        vec![
            ("op-down".to_string(), false),
            ("op-seats".to_string(), false),
            ("op-ok".to_string(), true)
        ]
    );
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.plan_id, Some(PlanId::new("pro")), "downgrade refused");
    assert_eq!(sub.quantity, Some(10));
}

#[tokio::test]
async fn a_reinstate_we_cannot_honour_is_answered_by_cancelling() {
    let h = harness(ChangePolicy::default()).await;
    h.deliver(message(
        "a",
        vec![event("s", T0, lifecycle(Lifecycle::Cancel))],
    ))
    .await;
    h.deliver(message(
        "b",
        vec![event("s", T0, lifecycle(Lifecycle::Reinstate))],
    ))
    .await;
    assert_eq!(h.drain().await.processed, 2);
    assert_eq!(*h.provider.cancelled.lock().unwrap(), vec!["s".to_string()]);
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
}

#[tokio::test]
async fn an_answer_after_the_marketplace_settled_is_recorded_then_followed() {
    let h = harness(ChangePolicy {
        refuse_downgrades: false,
        min_quantity: Some(10),
        ..ChangePolicy::default()
    })
    .await;
    h.deliver(message(
        "a",
        vec![
            event("s", T0, lifecycle(Lifecycle::Activate)),
            event(
                "s",
                T0,
                EventKind::ChangeRequested {
                    operation_id: "late".into(),
                    plan_id: None,
                    quantity: Some(3),
                    answer_by: None,
                },
            ),
        ],
    ))
    .await;
    let run = h.drain().await;
    assert_eq!((run.processed, run.retried, run.buried), (1, 0, 0));
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    let timeline = h.engine.store.timeline(sub.id, 10).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "change_requested"
            && e.outcome
                .starts_with("settled by the marketplace: operation already Succeeded")),
        "{timeline:?}"
    );
    // What Microsoft settled on could not be read yet: an outbox job follows the operation.
    let jobs = h
        .engine
        .store
        .outbox_list(marketlink_store::QueueState::Pending, 10)
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.kind == "follow_change" && j.payload["operation_id"] == "late"),
        "{jobs:?}"
    );
}

/// Microsoft's DELETE answers 202 with an operation; its webhook may never come. The outbox
/// follows the operation (a stored job, so a restart keeps following) and applies the outcome.
#[tokio::test]
async fn a_cancellation_in_progress_is_followed_until_it_ends() {
    let h = harness(ChangePolicy::default()).await;
    h.deliver(message(
        "a",
        vec![event("s", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.drain().await;
    let test = Marketplace::parse("test").unwrap();
    let sub = h
        .engine
        .store
        .find_subscription(&test, "s")
        .await
        .unwrap()
        .unwrap();
    *h.provider.cancel_operation.lock().unwrap() = Some("op-1".into());
    let mut view = MarketplaceView::of(sub.external.clone());
    view.status = Some(SubscriptionStatus::Cancelled);
    *h.provider.follow_script.lock().unwrap() = vec![
        ChangeProgress::Running {
            poll_after: std::time::Duration::from_secs(5),
        },
        ChangeProgress::Ended {
            succeeded: true,
            status: "Succeeded".into(),
            view: Box::new(view),
        },
    ];
    let outcome = h
        .engine
        .request_change(sub.id, VendorChange::Cancel)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ChangeOutcome::InProgress {
            operation_id: "op-1".into()
        }
    );

    let backoff = Backoff::default();
    let first = h.engine.process_outbox(10, &backoff).await.unwrap();
    assert_eq!((first.done, first.retried, first.buried), (0, 1, 0));
    assert_eq!(
        h.status("s").await,
        SubscriptionStatus::Active,
        "still running"
    );
    let early = h.engine.process_outbox(10, &backoff).await.unwrap();
    assert_eq!(
        early.done + early.retried,
        0,
        "not looked at before the poll interval"
    );

    h.clock.advance(Duration::seconds(5));
    let second = h.engine.process_outbox(10, &backoff).await.unwrap();
    assert_eq!((second.done, second.retried, second.buried), (1, 0, 0));
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
    let kinds: Vec<_> = h
        .engine
        .store
        .timeline(sub.id, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.source, e.kind))
        .collect();
    assert!(
        kinds.contains(&(
            "operation:op-1".to_string(),
            "vendor_change_ended".to_string()
        )),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(source, kind)| source == "operation:op-1" && kind.starts_with("lifecycle")),
        "{kinds:?}"
    );
}
