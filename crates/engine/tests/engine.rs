//! The engine against a scripted provider: the fulfillment rules, independent of any
//! marketplace's wire format (the real providers are tested against the sandbox).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, Catalog, ChangeOutcome, Clock, Entitlement,
    EntitlementValue, EventKind, ExternalRef, InboundMessage, LandingToken, Lifecycle, Listing,
    ManualClock, Marketplace, MarketplaceEvent, MarketplaceProvider, Plan, PlanId, Product,
    ProductId, ProviderError, PulledMessage, ResolvedPurchase, SubscriptionStatus, UsageOutcome,
    UsageRecord,
};
use marketlink_engine::{
    ChangePolicy, Engine, Providers, ReceiveError, Received, backoff::Backoff,
};
use marketlink_store::{QueueState, Store, StoreOptions};
use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

/// A provider whose messages are JSON scripts: `{"key", "kind", "events": [...], "fail"}`.
#[derive(Default)]
struct Scripted {
    /// Interpret failures still to produce, per message key: ("retry" | "permanent", count).
    failures: Mutex<Vec<(String, &'static str, usize)>>,
    responses: Mutex<Vec<(String, bool)>>,
    queue: Mutex<Vec<PulledMessage>>,
    acked: Mutex<Vec<String>>,
    interpret_calls: AtomicUsize,
    cancelled: Mutex<Vec<String>>,
}

fn unsupported(operation: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        marketplace: Marketplace::parse("test").unwrap(),
        operation,
    }
}

#[async_trait]
impl MarketplaceProvider for Scripted {
    fn marketplace(&self) -> Marketplace {
        Marketplace::parse("test").unwrap()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: false,
            vendor_changes_plan: false,
            vendor_cancels: true,
        }
    }
    async fn resolve(&self, _: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        Err(unsupported("resolve"))
    }
    async fn activate(
        &self,
        _: &ExternalRef,
        _: Option<&PlanId>,
        _: Option<u32>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn change_plan(
        &self,
        _: &ExternalRef,
        _: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported("change_plan"))
    }
    async fn change_quantity(
        &self,
        _: &ExternalRef,
        _: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported("change_quantity"))
    }
    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        self.cancelled
            .lock()
            .unwrap()
            .push(subscription.external_id.clone());
        Ok(ChangeOutcome::Done)
    }
    async fn report_usage(&self, _: &[UsageRecord]) -> Result<Vec<UsageOutcome>, ProviderError> {
        Err(unsupported("report_usage"))
    }
    async fn entitlements(&self, _: &ExternalRef) -> Result<Vec<Entitlement>, ProviderError> {
        Ok(vec![])
    }
    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        if message.header("x-signature") != Some("valid") {
            return Err(ProviderError::Unauthenticated("bad signature".into()));
        }
        let payload: serde_json::Value = serde_json::from_slice(&message.body)
            .map_err(|e| ProviderError::Unauthenticated(e.to_string()))?;
        Ok(AuthenticatedMessage {
            marketplace: self.marketplace(),
            dedup_key: payload["key"].as_str().unwrap_or_default().to_owned(),
            kind: payload["kind"].as_str().unwrap_or_default().to_owned(),
            received_at: T0,
            payload,
        })
    }
    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        self.interpret_calls.fetch_add(1, Ordering::SeqCst);
        let mut failures = self.failures.lock().unwrap();
        if let Some(entry) = failures
            .iter_mut()
            .find(|(key, _, left)| *key == message.dedup_key && *left > 0)
        {
            entry.2 -= 1;
            return Err(match entry.1 {
                "retry" => ProviderError::retryable("marketplace throttled"),
                _ => ProviderError::NotFound("operation".into()),
            });
        }
        Ok(serde_json::from_value(message.payload["events"].clone()).unwrap())
    }
    async fn respond_to_change(
        &self,
        _: &ExternalRef,
        operation_id: &str,
        accept: bool,
    ) -> Result<(), ProviderError> {
        if operation_id == "late" {
            return Err(ProviderError::Rejected {
                code: "conflict".into(),
                message: "operation already Succeeded".into(),
            });
        }
        self.responses
            .lock()
            .unwrap()
            .push((operation_id.into(), accept));
        Ok(())
    }
    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        let mut queue = self.queue.lock().unwrap();
        let n = queue.len().min(max as usize);
        Ok(queue.drain(..n).collect())
    }
    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        self.acked.lock().unwrap().push(receipt.into());
        Ok(())
    }
}

fn external(id: &str) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::parse("test").unwrap(),
        external_id: id.into(),
        product_code: "prod-a".into(),
        customer_id: "cust".into(),
        customer_account_id: None,
        license_arn: None,
    }
}

fn event(id: &str, at: OffsetDateTime, kind: EventKind) -> serde_json::Value {
    serde_json::to_value(MarketplaceEvent {
        subscription: external(id),
        occurred_at: at,
        kind,
        free_trial: None,
    })
    .unwrap()
}

fn lifecycle(event: Lifecycle) -> EventKind {
    EventKind::Lifecycle {
        event,
        reason: None,
    }
}

fn message(key: &str, events: Vec<serde_json::Value>) -> InboundMessage {
    InboundMessage {
        channel: "http".into(),
        headers: vec![("x-signature".into(), "valid".into())],
        body: serde_json::to_vec(&json!({ "key": key, "kind": "script", "events": events }))
            .unwrap(),
    }
}

struct Harness {
    engine: Engine,
    provider: Arc<Scripted>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn harness(policy: ChangePolicy) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("e.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let provider = Arc::new(Scripted::default());
    let clock = ManualClock::new(T0);
    let catalog = Catalog {
        products: vec![Product {
            id: ProductId::new("analytics"),
            name: "Analytics".into(),
            listings: vec![Listing {
                marketplace: Marketplace::parse("test").unwrap(),
                product_code: "prod-a".into(),
                listing_url: None,
            }],
            plans: ["basic", "pro"]
                .into_iter()
                .map(|id| Plan {
                    id: PlanId::new(id),
                    name: None,
                    features: vec![],
                    dimensions: vec![],
                })
                .collect(),
        }],
    };
    let engine = Engine::new(
        store,
        Providers::new().with(provider.clone()),
        Arc::new(clock.clone()),
        Arc::new(catalog),
        policy,
    );
    Harness {
        engine,
        provider,
        clock,
        _dir: dir,
    }
}

impl Harness {
    async fn deliver(&self, msg: InboundMessage) -> Received {
        self.engine.receive("test", &msg).await.unwrap()
    }

    async fn drain(&self) -> marketlink_engine::InboxRun {
        self.engine
            .process_inbox(50, &Backoff::default())
            .await
            .unwrap()
    }

    async fn status(&self, id: &str) -> SubscriptionStatus {
        self.engine
            .store
            .find_subscription(&Marketplace::parse("test").unwrap(), id)
            .await
            .unwrap()
            .unwrap()
            .status
    }
}

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
async fn entitlements_are_replaced_with_the_marketplace_view() {
    let h = harness(ChangePolicy::default()).await;
    let seats = |n| Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(n),
        expires_at: None,
    };
    h.deliver(message(
        "a",
        vec![event(
            "s",
            T0,
            EventKind::EntitlementsChanged {
                entitlements: vec![seats(5)],
            },
        )],
    ))
    .await;
    h.deliver(message(
        "b",
        vec![event(
            "s",
            T0,
            EventKind::EntitlementsChanged {
                entitlements: vec![seats(9)],
            },
        )],
    ))
    .await;
    h.drain().await;
    let sub = h
        .engine
        .store
        .find_subscription(&Marketplace::parse("test").unwrap(), "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h.engine.store.entitlements(sub.id).await.unwrap(),
        vec![seats(9)]
    );
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
