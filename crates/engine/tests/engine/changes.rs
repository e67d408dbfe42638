//! Changes the marketplace asks us to accept, and how we answer them.

use marketlink_core::{EventKind, Lifecycle, Marketplace, PlanId, SubscriptionStatus};
use marketlink_engine::ChangePolicy;
use time::Duration;

use crate::harness::{T0, event, harness, lifecycle, message};

#[tokio::test]
async fn change_requests_follow_the_policy() {
    let h = harness(ChangePolicy {
        refuse_downgrades: true,
        min_quantity: Some(2),
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
async fn an_answer_after_the_marketplace_settled_is_recorded_not_retried() {
    let h = harness(ChangePolicy {
        refuse_downgrades: false,
        min_quantity: Some(10),
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
    let last = h
        .engine
        .store
        .timeline(sub.id, 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        last.outcome
            .contains("settled this operation before our answer"),
        "{last:?}"
    );
}
