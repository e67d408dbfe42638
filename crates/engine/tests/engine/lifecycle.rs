//! Lifecycle events in time: late and out-of-order deliveries change nothing, a buyer who
//! subscribes again after cancelling is active again (same subscription, tenant and
//! history), and a licence change moves the subscription once.

use marketlink_core::{
    Clock, EventKind, Lifecycle, Marketplace, ProductId, Subscription, SubscriptionStatus, Tenant,
};
use marketlink_engine::{ChangePolicy, entitlements::Reason, webhooks::WebhookSettings};
use marketlink_store::QueueState;
use time::{Duration, OffsetDateTime};

use crate::harness::{Harness, T0, event, harness, lifecycle, message};

fn at(hours: i64) -> OffsetDateTime {
    T0 + Duration::hours(hours)
}

impl Harness {
    /// Delivers one event as its own message (`key` is the marketplace's message id) and
    /// applies it. Our clock runs a minute behind the latest event.
    async fn one(&self, key: &str, id: &str, when: OffsetDateTime, kind: EventKind) {
        if when + Duration::minutes(1) > self.clock.now() {
            self.clock.set(when + Duration::minutes(1));
        }
        self.deliver(message(key, vec![event(id, when, kind)]))
            .await;
        let run = self.drain().await;
        assert_eq!((run.processed, run.retried, run.buried), (1, 0, 0), "{key}");
    }

    async fn subscription(&self, id: &str) -> Subscription {
        self.engine
            .store
            .find_subscription(&Marketplace::parse("test").unwrap(), id)
            .await
            .unwrap()
            .unwrap()
    }

    /// `(kind, outcome)` of every marketplace event in the timeline, oldest first.
    async fn history(&self, id: &str) -> Vec<(String, String)> {
        let sub = self.subscription(id).await;
        self.engine
            .store
            .timeline(sub.id, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.source.starts_with("inbox:"))
            .filter(|e| e.kind != "entitlements_read")
            .map(|e| (e.kind, e.outcome))
            .collect()
    }
}

fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, o)| (k.to_string(), o.to_string()))
        .collect()
}

/// SQS and SNS deliver at least once and out of order: the subscribe-success of t1 arriving
/// after the cancellation of t3 must not bring the subscription back.
#[tokio::test]
async fn a_late_activation_after_the_cancellation_is_stale() {
    let h = harness(ChangePolicy::default()).await;
    h.one("a", "s", at(1), lifecycle(Lifecycle::Activate)).await;
    h.one("c", "s", at(3), lifecycle(Lifecycle::Cancel)).await;
    // The first subscribe-success again, under another message id (a redelivery).
    h.one("a-again", "s", at(1), lifecycle(Lifecycle::Activate))
        .await;
    // An unsubscribe-pending of t2 that lost its race with the cancellation.
    h.one("p", "s", at(2), lifecycle(Lifecycle::BeginCancel))
        .await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
    assert_eq!(
        h.history("s").await,
        entries(&[
            ("lifecycle:activate", "applied"),
            ("lifecycle:cancel", "applied"),
            ("lifecycle:activate", "stale"),
            ("lifecycle:begin_cancel", "stale"),
        ])
    );
}

/// Every delivery twice, and an old event that repeats the current state: no-ops, never
/// stale (the state is what the event says).
#[tokio::test]
async fn duplicates_are_unchanged_whatever_their_age() {
    let h = harness(ChangePolicy::default()).await;
    h.one("a", "s", at(1), lifecycle(Lifecycle::Activate)).await;
    h.one("a2", "s", at(1), lifecycle(Lifecycle::Activate))
        .await;
    h.one("s", "s", at(2), lifecycle(Lifecycle::Suspend)).await;
    h.one("r", "s", at(3), lifecycle(Lifecycle::Reinstate))
        .await;
    // Active again since t3; the activation of t1 says "active" too.
    h.one("a3", "s", at(1), lifecycle(Lifecycle::Activate))
        .await;
    h.one("r2", "s", at(3), lifecycle(Lifecycle::Reinstate))
        .await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Active);
    assert_eq!(
        h.history("s").await,
        entries(&[
            ("lifecycle:activate", "applied"),
            ("lifecycle:activate", "unchanged"),
            ("lifecycle:suspend", "applied"),
            ("lifecycle:reinstate", "applied"),
            ("lifecycle:activate", "unchanged"),
            ("lifecycle:reinstate", "unchanged"),
        ])
    );
    // The same message id twice is stored once.
    assert!(matches!(
        h.deliver(message("a", vec![])).await,
        marketlink_engine::Received::Duplicate(_)
    ));
}

/// AWS classic listings give a buyer who subscribes again the same CustomerIdentifier, so
/// the same subscription: a subscribe-success newer than the cancellation makes it active
/// again, for the same tenant, with its history, usable and announced to the vendor.
#[tokio::test]
async fn a_buyer_who_subscribes_again_is_active_again_with_history_and_tenant() {
    let mut h = harness(ChangePolicy::default()).await;
    h.engine.webhooks = Some(WebhookSettings {
        url: "http://127.0.0.1:9/hooks".into(),
        secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3".into(),
    });
    h.one("a", "s", at(1), lifecycle(Lifecycle::Activate)).await;
    let tenant = Tenant::new("Acme", None, "ops@acme.example", T0).unwrap();
    h.engine.store.create_tenant(&tenant).await.unwrap();
    let sub = h.subscription("s").await;
    h.engine
        .store
        .bind_subscription(sub.id, tenant.id, h.clock.now())
        .await
        .unwrap();
    let index = &h.engine.entitlements;
    let may_use = || index.check(tenant.id, &ProductId::new("analytics"), None, None, at(5));
    index.sync(&h.engine.store).await.unwrap();
    assert!(may_use().allowed);

    h.one("c", "s", at(3), lifecycle(Lifecycle::Cancel)).await;
    index.sync(&h.engine.store).await.unwrap();
    assert_eq!(may_use().reason, Reason::Cancelled);

    h.one("again", "s", at(4), lifecycle(Lifecycle::Activate))
        .await;
    let back = h.subscription("s").await;
    assert_eq!(back.status, SubscriptionStatus::Active);
    assert_eq!((back.id, back.tenant_id), (sub.id, Some(tenant.id)));
    assert_eq!(
        h.history("s").await,
        entries(&[
            ("lifecycle:activate", "applied"),
            ("lifecycle:cancel", "applied"),
            ("lifecycle:activate", "resubscribed (was cancelled)"),
        ])
    );
    index.sync(&h.engine.store).await.unwrap();
    assert!(may_use().allowed, "{:?}", may_use());

    // The vendor hears `subscription.activated` again, marked as a re-subscription.
    let hooks: Vec<serde_json::Value> = h
        .engine
        .store
        .outbox_list(QueueState::Pending, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.payload)
        .filter(|p| p["type"] == "subscription.activated")
        .collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let (again, first): (Vec<_>, Vec<_>) = hooks
        .iter()
        .partition(|p| p["data"].get("resubscribed").is_some());
    assert_eq!((again.len(), first.len()), (1, 1), "{hooks:?}");
    assert_eq!(again[0]["data"]["resubscribed"], true);
    assert_eq!(again[0]["data"]["subscription"]["status"], "active");

    // Its own first subscribe-success, delivered once more, changes nothing.
    h.one("a-late", "s", at(1), lifecycle(Lifecycle::Activate))
        .await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Active);
    // And it can end again.
    h.one("c2", "s", at(6), lifecycle(Lifecycle::Cancel)).await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Cancelled);
}

/// A purchase the marketplace refused (subscribe-fail) that the buyer retries later is the
/// same re-subscription; at the very instant of the failure it is not.
#[tokio::test]
async fn a_newer_activation_after_a_failure_activates() {
    let h = harness(ChangePolicy::default()).await;
    h.one("f", "s", at(1), lifecycle(Lifecycle::Fail)).await;
    h.one("same", "s", at(1), lifecycle(Lifecycle::Activate))
        .await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Failed);
    h.one("later", "s", at(2), lifecycle(Lifecycle::Activate))
        .await;
    assert_eq!(h.status("s").await, SubscriptionStatus::Active);
    let history = h.history("s").await;
    assert!(
        history[1].1.starts_with("refused: cannot activate"),
        "{history:?}"
    );
    assert_eq!(history[2].1, "resubscribed (was failed)");
}

/// A renewal with a new licence moves the subscription once: repeated, it is unchanged; a
/// late copy of an older move is stale and never moves it back.
#[tokio::test]
async fn a_licence_change_applies_once_and_never_goes_back() {
    let h = harness(ChangePolicy::default()).await;
    let relicensed = |arn: &str| EventKind::Relicensed {
        license_arn: arn.into(),
    };
    h.one("a", "s", at(1), lifecycle(Lifecycle::Activate)).await;
    // The renewal's message also teaches the new licence's name (an alias).
    let mut renewal = event("s", at(2), relicensed("arn-2"));
    renewal["aliases"] = serde_json::json!([{ "kind": "license", "value": "l-2" }]);
    h.deliver(message("l2", vec![renewal.clone()])).await;
    h.deliver(message("l2-again", vec![renewal])).await;
    assert_eq!(h.drain().await.processed, 2);
    h.one("l3", "s", at(4), relicensed("arn-3")).await;
    h.one("l2-late", "s", at(2), relicensed("arn-2")).await;
    let sub = h.subscription("s").await;
    assert_eq!(sub.external.license_arn.as_deref(), Some("arn-3"));
    assert_eq!(
        sub.external.external_id, "s",
        "the subscription keeps its name"
    );
    assert_eq!(
        h.history("s").await,
        entries(&[
            ("lifecycle:activate", "applied"),
            ("relicensed", "applied"),
            ("relicensed", "unchanged"),
            ("relicensed", "applied"),
            ("relicensed", "stale"),
        ])
    );
    // Operators see the names on the subscription's admin page, each once.
    let history = h.engine.subscription_history(sub.id).await.unwrap();
    assert_eq!(
        history.aliases,
        vec![marketlink_core::Alias::new("license", "l-2")]
    );
}
