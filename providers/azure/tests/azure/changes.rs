//! Answering Microsoft's change requests in time, and what the sandbox settles on: the 10 s
//! window counts from the webhook's arrival; our own in-progress changes are not requests; a
//! refused change may be applied anyway (`apply_refused_changes`).

use marketlink_core::{ChangeAnswer, ChangeProgress, EventKind, MarketplaceProvider};
use marketlink_sandbox::azure::MarketplaceAction;
use uuid::Uuid;

use crate::common::{H, plan};

async fn patches_to(h: &H, op: &str) -> usize {
    h.sandbox
        .call_log()
        .await
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains(&format!("/operations/{op}")))
        .count()
}

#[tokio::test]
async fn past_the_window_nothing_is_sent_and_the_change_is_read_back() {
    let h = H::start().await;
    let sub = h.subscribed("pro", Some(5)).await;
    let id = Uuid::parse_str(&sub.external_id).unwrap();
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangeQuantity(2))
        .await
        .unwrap();
    let (_, events) = h.webhook_events(op).await;
    let EventKind::ChangeRequested { answer_by, .. } = &events[0].kind else {
        panic!("{events:?}");
    };
    let answer_by = answer_by.expect("a deadline from the arrival");
    // The worker got to it only after our window: no PATCH at all.
    h.clock.advance(time::Duration::seconds(9));
    let answer = h
        .provider
        .respond_to_change(&sub, &op.to_string(), false, Some(answer_by))
        .await
        .unwrap();
    assert!(
        matches!(answer, ChangeAnswer::SettledWithout { .. }),
        "{answer:?}"
    );
    assert_eq!(patches_to(&h, &op.to_string()).await, 0);
    // Microsoft's own timer has not fired yet (the sandbox waits 60 s here): still running.
    assert!(matches!(
        h.provider
            .follow_change(&sub, &op.to_string())
            .await
            .unwrap(),
        ChangeProgress::Running { .. }
    ));
}

#[tokio::test]
async fn our_own_change_in_progress_is_not_a_request() {
    let h = H::start_with(|s| s.partner_operation_ms = 300, |_| {}).await;
    let sub = h.subscribed("pro", Some(5)).await;
    let marketlink_core::ChangeOutcome::InProgress { operation_id } =
        h.provider.change_quantity(&sub, 7).await.unwrap()
    else {
        panic!("expected an operation");
    };
    let op = Uuid::parse_str(&operation_id).unwrap();
    let (message, events) = h.webhook_events(op).await;
    assert_eq!(message.dedup_key, format!("{op}:InProgress"));
    assert_eq!(message.payload["operationRequestSource"], "Partner");
    assert!(events.is_empty(), "not answered again: {events:?}");
    // Once it Succeeded, it is applied like any ended change.
    let mut kinds = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if h.op_status(&operation_id).await == "Succeeded" {
            let events = h
                .provider
                .interpret(&message, &marketlink_core::EmptyDirectory)
                .await
                .unwrap();
            kinds = events.into_iter().map(|e| e.kind).collect();
            break;
        }
    }
    assert_eq!(kinds, [EventKind::QuantityChanged { quantity: 7 }]);
    assert_eq!(patches_to(&h, &operation_id).await, 0);
}

#[tokio::test]
async fn a_refused_change_can_be_applied_anyway_and_reading_back_shows_it() {
    let h = H::start_with(|s| s.apply_refused_changes = true, |_| {}).await;
    let sub = h.subscribed("pro", Some(5)).await;
    let id = Uuid::parse_str(&sub.external_id).unwrap();
    let op = h
        .sandbox
        .marketplace_action(id, MarketplaceAction::ChangePlan("basic".into()))
        .await
        .unwrap();
    h.webhook_events(op).await;
    let taken = h
        .provider
        .respond_to_change(&sub, &op.to_string(), false, None)
        .await
        .unwrap();
    assert_eq!(taken, ChangeAnswer::Taken);
    assert_eq!(h.op_status(&op.to_string()).await, "Failed");
    let ChangeProgress::Ended {
        succeeded, view, ..
    } = h
        .provider
        .follow_change(&sub, &op.to_string())
        .await
        .unwrap()
    else {
        panic!("the refused operation has ended");
    };
    assert!(!succeeded);
    assert_eq!(
        view.plan_id,
        Some(plan("basic")),
        "applied despite the refusal"
    );
}
