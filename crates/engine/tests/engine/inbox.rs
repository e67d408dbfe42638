//! Receiving and applying marketplace messages: authentication, idempotency, order,
//! retries and the queue.

use std::sync::atomic::Ordering;

use marketlink_core::{
    Clock, EventKind, Lifecycle, Marketplace, ProductId, PulledMessage, SubscriptionStatus,
};
use marketlink_engine::{ChangePolicy, ReceiveError, Received, backoff::Backoff};
use marketlink_store::QueueState;
use time::Duration;

use crate::harness::{T0, event, harness, lifecycle, message};

#[tokio::test]
async fn receive_authenticates_stores_once_and_names_unknown_marketplaces() {
    let h = harness(ChangePolicy::default()).await;
    let msg = message("m1", vec![]);
    assert!(matches!(h.deliver(msg.clone()).await, Received::Stored(_)));
    assert!(matches!(
        h.deliver(msg.clone()).await,
        Received::Duplicate(_)
    ));
    let mut forged = msg.clone();
    forged.headers.clear();
    assert!(matches!(
        h.engine.receive("test", &forged).await,
        Err(ReceiveError::Rejected(_))
    ));
    assert!(matches!(
        h.engine.receive("nowhere", &msg).await,
        Err(ReceiveError::UnknownMarketplace(_))
    ));
}

/// SNS over HTTP retries only 5xx: what we cannot take for our own reasons must be retryable
/// (not configured, certificate or database unavailable), and only forged or malformed
/// messages are refused for good. Nothing refused is stored.
#[tokio::test]
async fn messages_we_cannot_take_yet_are_retryable_and_only_bad_ones_are_refused() {
    let h = harness(ChangePolicy::default()).await;
    let refused = |reason: &str| {
        let mut msg = message("m1", vec![]);
        msg.headers.push(("x-refuse".into(), reason.into()));
        msg
    };
    let configuration = h.engine.receive("test", &refused("configuration")).await;
    assert!(
        matches!(&configuration, Err(ReceiveError::NotConfigured(why)) if why.contains("topic t")),
        "{configuration:?}"
    );
    let message_text = configuration.unwrap_err().to_string();
    assert!(
        message_text.contains("configuration is fixed"),
        "{message_text}"
    );
    assert!(matches!(
        h.engine.receive("test", &refused("certificate")).await,
        Err(ReceiveError::Unavailable(_))
    ));
    assert!(matches!(
        h.engine.receive("test", &refused("malformed")).await,
        Err(ReceiveError::Malformed(_))
    ));
    assert!(
        h.engine
            .store
            .inbox_list(QueueState::Pending, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Once the cause is gone, the retried delivery is stored.
    assert!(matches!(
        h.deliver(message("m1", vec![])).await,
        Received::Stored(_)
    ));
    // The database down: retryable too.
    h.engine.store.close().await;
    assert!(matches!(
        h.engine.receive("test", &message("m2", vec![])).await,
        Err(ReceiveError::Unavailable(_))
    ));
}

#[tokio::test]
async fn notification_before_landing_creates_and_activates_the_subscription() {
    let h = harness(ChangePolicy::default()).await;
    h.deliver(message(
        "m1",
        vec![event("sub-1", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    let run = h.drain().await;
    assert_eq!(run.processed, 1);
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "sub-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.tenant_id, None, "bound later, when the buyer registers");
    assert_eq!(sub.product_id, Some(ProductId::new("analytics")));
    let timeline: Vec<_> = h
        .engine
        .store
        .timeline(sub.id, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != "entitlements_read")
        .collect();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, "lifecycle:activate");
    assert_eq!(timeline[0].outcome, "applied");
}

#[tokio::test]
async fn duplicates_and_out_of_order_events_change_nothing_twice() {
    let h = harness(ChangePolicy::default()).await;
    let at = |m: i64| T0 + Duration::minutes(m);
    h.deliver(message(
        "a",
        vec![event("s", at(0), lifecycle(Lifecycle::Activate))],
    ))
    .await;
    // The same event again under another message id (a marketplace retry).
    h.deliver(message(
        "b",
        vec![event("s", at(0), lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.deliver(message(
        "c",
        vec![event(
            "s",
            at(10),
            EventKind::QuantityChanged { quantity: 20 },
        )],
    ))
    .await;
    // An older quantity statement delivered late.
    h.deliver(message(
        "d",
        vec![event(
            "s",
            at(5),
            EventKind::QuantityChanged { quantity: 5 },
        )],
    ))
    .await;
    assert_eq!(h.drain().await.processed, 4);
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.quantity, Some(20));
    let outcomes: Vec<String> = h
        .engine
        .store
        .timeline(sub.id, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != "entitlements_read")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["applied", "unchanged", "applied", "stale"]);
}

#[tokio::test]
async fn an_illegal_transition_is_recorded_not_retried() {
    let h = harness(ChangePolicy::default()).await;
    h.deliver(message(
        "a",
        vec![event("s", T0, lifecycle(Lifecycle::Cancel))],
    ))
    .await;
    // subscribe-success arriving after the cancellation.
    h.deliver(message(
        "b",
        vec![event("s", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    let run = h.drain().await;
    assert_eq!((run.processed, run.retried, run.buried), (2, 0, 0));
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    let timeline = h.engine.store.timeline(sub.id, 10).await.unwrap();
    assert!(
        timeline[1].outcome.starts_with("refused: cannot activate"),
        "{timeline:?}"
    );
}

#[tokio::test]
async fn retryable_failures_back_off_then_succeed_and_permanent_ones_are_kept_dead() {
    let h = harness(ChangePolicy::default()).await;
    h.provider.failures.lock().unwrap().extend([
        ("slow".to_string(), "retry", 2),
        ("bad".to_string(), "permanent", 1),
    ]);
    h.deliver(message(
        "slow",
        vec![event("s1", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.deliver(message(
        "bad",
        vec![event("s2", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    let first = h.drain().await;
    assert_eq!((first.processed, first.retried, first.buried), (0, 1, 1));
    // Not due yet: nothing happens until the clock passes the backoff.
    assert_eq!(h.drain().await, Default::default());
    h.clock.advance(Duration::minutes(1));
    assert_eq!(h.drain().await.retried, 1);
    h.clock.advance(Duration::minutes(1));
    assert_eq!(h.drain().await.processed, 1);
    assert_eq!(h.status("s1").await, SubscriptionStatus::Active);
    let dead = h
        .engine
        .store
        .inbox_list(QueueState::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].last_error.as_deref().unwrap().contains("not found"));
    // The operator requeues it after fixing the cause; it applies.
    h.engine
        .store
        .inbox_requeue(dead[0].id, h.clock.now())
        .await
        .unwrap();
    assert_eq!(h.drain().await.processed, 1);
    assert_eq!(h.status("s2").await, SubscriptionStatus::Active);
}

#[tokio::test]
async fn retries_stop_after_the_attempt_limit() {
    let h = harness(ChangePolicy::default()).await;
    h.provider
        .failures
        .lock()
        .unwrap()
        .push(("flaky".to_string(), "retry", 1000));
    h.deliver(message("flaky", vec![])).await;
    let backoff = Backoff {
        max_attempts: 3,
        ..Backoff::default()
    };
    let mut buried = 0;
    for _ in 0..5 {
        buried += h.engine.process_inbox(10, &backoff).await.unwrap().buried;
        h.clock.advance(Duration::hours(1));
    }
    assert_eq!(buried, 1);
    assert_eq!(h.provider.interpret_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn queue_messages_are_deleted_only_once_stored() {
    let h = harness(ChangePolicy::default()).await;
    let mut forged = message("x", vec![]);
    forged.headers.clear();
    h.provider.queue.lock().unwrap().extend([
        PulledMessage {
            message: message("q1", vec![]),
            receipt: "r1".into(),
        },
        PulledMessage {
            message: forged,
            receipt: "r-forged".into(),
        },
        PulledMessage {
            message: message("q1", vec![]),
            receipt: "r1-again".into(),
        },
    ]);
    assert_eq!(h.engine.pull_once(10).await, 1);
    assert_eq!(
        *h.provider.acked.lock().unwrap(),
        vec!["r1".to_string(), "r1-again".to_string()],
        "the forged message stays on its queue for the dead-letter queue"
    );
}

/// A message refused for our own configuration (a product or topic not configured yet) is
/// retried with backoff, so it applies once the operator has fixed it; one the marketplace
/// refuses for good is buried at once.
#[tokio::test]
async fn configuration_problems_are_retried_until_fixed_and_rejections_are_buried_at_once() {
    let h = harness(ChangePolicy::default()).await;
    h.provider.failures.lock().unwrap().extend([
        ("config".to_string(), "configuration", 2),
        ("malformed".to_string(), "rejected", 1),
    ]);
    h.deliver(message(
        "config",
        vec![event("s1", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.deliver(message(
        "malformed",
        vec![event("s2", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    let first = h.drain().await;
    assert_eq!((first.processed, first.retried, first.buried), (0, 1, 1));
    let dead = h
        .engine
        .store
        .inbox_list(QueueState::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("malformed"),
        "{dead:?}"
    );
    let waiting = h
        .engine
        .store
        .inbox_list(QueueState::Pending, 10)
        .await
        .unwrap();
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("product prod-b is not configured"),
        "{waiting:?}"
    );
    h.clock.advance(Duration::minutes(1));
    assert_eq!(h.drain().await.retried, 1);
    // The operator configured the product: the next attempt applies it.
    h.clock.advance(Duration::minutes(1));
    assert_eq!(h.drain().await.processed, 1);
    assert_eq!(h.status("s1").await, SubscriptionStatus::Active);
}

/// A configuration never fixed is given up when the backoff is exhausted, with its reason.
#[tokio::test]
async fn a_configuration_never_fixed_is_buried_with_its_reason_after_the_backoff() {
    let h = harness(ChangePolicy::default()).await;
    h.provider
        .failures
        .lock()
        .unwrap()
        .push(("config".to_string(), "configuration", 1000));
    h.deliver(message("config", vec![])).await;
    let backoff = Backoff {
        max_attempts: 3,
        ..Backoff::default()
    };
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(h.engine.process_inbox(10, &backoff).await.unwrap());
        h.clock.advance(Duration::hours(1));
    }
    let buried: usize = runs.iter().map(|r| r.buried).sum();
    let retried: usize = runs.iter().map(|r| r.retried).sum();
    assert_eq!((retried, buried), (2, 1), "{runs:?}");
    let dead = h
        .engine
        .store
        .inbox_list(QueueState::Dead, 10)
        .await
        .unwrap();
    let reason = dead[0].last_error.as_deref().unwrap();
    assert!(
        reason.starts_with("gave up after 3 attempts: marketplace configuration problem: product prod-b is not configured"),
        "{reason}"
    );
}

/// The directory a provider asks for known subscriptions is our database: when it fails, the
/// message is retried, never dropped or marked applied.
#[tokio::test]
async fn a_directory_lookup_that_fails_is_retried() {
    use sqlx::{Connection, Executor};
    let h = harness(ChangePolicy::default()).await;
    let test = Marketplace::parse("test").unwrap();
    h.deliver(message(
        "a",
        vec![event("s", T0, lifecycle(Lifecycle::Activate))],
    ))
    .await;
    h.drain().await;
    let sub = h
        .engine
        .store
        .find_subscription(&test, "s")
        .await
        .unwrap()
        .unwrap();
    let agreement = marketlink_core::Alias::new("agreement", "agmt-1");
    h.engine
        .store
        .record_aliases(sub.id, &test, std::slice::from_ref(&agreement), T0)
        .await
        .unwrap();
    // The cancellation names the subscription only by its agreement.
    let mut cancel = message(
        "ended",
        vec![event(
            "unknown",
            T0 + Duration::hours(1),
            lifecycle(Lifecycle::Cancel),
        )],
    );
    let mut body: serde_json::Value = serde_json::from_slice(&cancel.body).unwrap();
    body["find"] = serde_json::to_value(&agreement).unwrap();
    cancel.body = serde_json::to_vec(&body).unwrap();
    h.deliver(cancel).await;

    // The table the lookup reads goes missing, as in a database failure.
    let url = format!("sqlite:{}", h._dir.path().join("e.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    db.execute("ALTER TABLE subscription_aliases RENAME TO aliases_away")
        .await
        .unwrap();
    let run = h.drain().await;
    assert_eq!((run.processed, run.retried, run.buried), (0, 1, 0));
    let waiting = h
        .engine
        .store
        .inbox_list(QueueState::Pending, 10)
        .await
        .unwrap();
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot read known subscriptions"),
        "{waiting:?}"
    );
    assert_eq!(h.status("s").await, SubscriptionStatus::Active);

    db.execute("ALTER TABLE aliases_away RENAME TO subscription_aliases")
        .await
        .unwrap();
    h.clock.advance(Duration::minutes(1));
    assert_eq!(h.drain().await.processed, 1);
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
    assert!(
        h.engine
            .store
            .find_subscription(&test, "unknown")
            .await
            .unwrap()
            .is_none(),
        "found by its alias, not created under another name"
    );
}
