//! Reconciliation against a provider whose survey the test scripts: every drift kind, what is
//! repaired, what is only reported, and that a dry run changes nothing.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, Catalog, ChangeOutcome, Entitlement, EntitlementValue,
    ExternalRef, InboundMessage, LandingToken, Lifecycle, Listing, ManualClock, Marketplace,
    MarketplaceEvent, MarketplaceProvider, MarketplaceView, Plan, PlanId, Product, ProductId,
    ProviderError, ResolvedPurchase, Subscription, SubscriptionStatus, Tenant, UsageOutcome,
    UsageRecord,
};
use marketlink_engine::{
    ChangePolicy, Engine, Providers,
    backoff::Backoff,
    reconcile::{Action, Drift, EntitlementDifference, ReconcileSettings},
};
use marketlink_store::{QueueState, Store, StoreOptions};
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

fn test_marketplace() -> Marketplace {
    Marketplace::parse("test").unwrap()
}

/// A marketplace that waits for our activation (like Microsoft) and reports `views`.
#[derive(Default)]
struct Surveyed {
    views: Mutex<Vec<MarketplaceView>>,
    activation_fails: AtomicBool,
    activations: AtomicUsize,
}

fn unsupported(operation: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        marketplace: test_marketplace(),
        operation,
    }
}

#[async_trait]
impl MarketplaceProvider for Surveyed {
    fn marketplace(&self) -> Marketplace {
        test_marketplace()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vendor_activates: true,
            vendor_changes_plan: false,
            vendor_cancels: false,
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
        self.activations.fetch_add(1, Ordering::SeqCst);
        if self.activation_fails.load(Ordering::SeqCst) {
            return Err(ProviderError::Configuration(
                "401 from the marketplace".into(),
            ));
        }
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
    async fn cancel(&self, _: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        Err(unsupported("cancel"))
    }
    async fn report_usage(&self, _: &[UsageRecord]) -> Result<Vec<UsageOutcome>, ProviderError> {
        Err(unsupported("report_usage"))
    }
    async fn entitlements(&self, _: &ExternalRef) -> Result<Vec<Entitlement>, ProviderError> {
        Ok(vec![])
    }
    async fn authenticate(
        &self,
        _: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        Err(ProviderError::Unauthenticated("not used".into()))
    }
    async fn interpret(
        &self,
        _: &AuthenticatedMessage,
        _directory: &dyn marketlink_core::SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        Ok(vec![])
    }
    async fn survey(&self, _: &[ExternalRef]) -> Result<Vec<MarketplaceView>, ProviderError> {
        Ok(self.views.lock().unwrap().clone())
    }
}

fn external(id: &str) -> ExternalRef {
    ExternalRef {
        marketplace: test_marketplace(),
        external_id: id.into(),
        product_code: "prod-a".into(),
        customer_id: "cust".into(),
        customer_account_id: None,
        license_arn: None,
    }
}

fn view(id: &str, status: Option<SubscriptionStatus>) -> MarketplaceView {
    let mut v = MarketplaceView::of(external(id));
    v.status = status;
    v
}

fn seats(n: i64) -> Entitlement {
    Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(n),
        expires_at: None,
    }
}

struct Harness {
    engine: Engine,
    provider: Arc<Surveyed>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("r.db").display());
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let provider = Arc::new(Surveyed::default());
        let clock = ManualClock::new(T0);
        let catalog = Catalog {
            products: vec![Product {
                id: ProductId::new("analytics"),
                name: "Analytics".into(),
                listings: vec![Listing {
                    marketplace: test_marketplace(),
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
            ChangePolicy::default(),
        );
        Self {
            engine,
            provider,
            clock,
            _dir: dir,
        }
    }

    /// A subscription we hold in `status`, with plan basic and 5 seats.
    async fn ours(&self, id: &str, status: SubscriptionStatus) -> Subscription {
        let mut sub = Subscription::pending(external(id), T0);
        sub.plan_id = Some(PlanId::new("basic"));
        sub.quantity = Some(5);
        let sub = self.engine.store.upsert_subscription(&sub).await.unwrap();
        let path: &[Lifecycle] = match status {
            SubscriptionStatus::Pending => &[],
            SubscriptionStatus::Active => &[Lifecycle::Activate],
            SubscriptionStatus::Cancelled => &[Lifecycle::Activate, Lifecycle::Cancel],
            other => panic!("not needed: {other}"),
        };
        for step in path {
            self.engine
                .store
                .apply_lifecycle(sub.id, *step, T0)
                .await
                .unwrap();
        }
        self.get(id).await
    }

    async fn get(&self, id: &str) -> Subscription {
        self.engine
            .store
            .find_subscription(&test_marketplace(), id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn timeline_sources(&self, sub: &Subscription) -> Vec<(String, String)> {
        self.engine
            .store
            .timeline(sub.id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.source, e.kind))
            .collect()
    }
}

#[tokio::test]
async fn each_drift_is_found_and_the_safe_ones_repaired() {
    let h = Harness::new().await;
    let suspended = h.ours("suspended-there", SubscriptionStatus::Active).await;
    let changed = h.ours("changed-there", SubscriptionStatus::Active).await;
    let contract = h.ours("contract", SubscriptionStatus::Active).await;
    let ended = h.ours("ended-here", SubscriptionStatus::Cancelled).await;
    let in_sync = h.ours("in-sync", SubscriptionStatus::Active).await;
    let mut plan = view("changed-there", Some(SubscriptionStatus::Active));
    plan.plan_id = Some(PlanId::new("pro"));
    plan.quantity = Some(10);
    let mut ents = view("contract", None);
    ents.entitlements = Some(vec![seats(10)]);
    let mut same = view("in-sync", Some(SubscriptionStatus::Active));
    same.plan_id = Some(PlanId::new("basic"));
    same.quantity = Some(5);
    *h.provider.views.lock().unwrap() = vec![
        view("suspended-there", Some(SubscriptionStatus::Suspended)),
        plan,
        ents,
        view("ended-here", Some(SubscriptionStatus::Active)),
        view("never-seen", Some(SubscriptionStatus::Active)),
        same,
    ];

    // A dry run reports the same drift and changes nothing.
    let dry = h
        .engine
        .reconcile(&ReconcileSettings {
            dry_run: true,
            ..ReconcileSettings::default()
        })
        .await
        .unwrap();
    assert_eq!(dry.surveyed, 6);
    assert_eq!(dry.items.len(), 6, "{:#?}", dry.items);
    assert_eq!(dry.repaired, 0);
    assert!(
        dry.items
            .iter()
            .filter(|i| i.subscription_id.is_some() && i.external_id != "ended-here")
            .all(|i| matches!(i.action, Action::WouldRepair(_))),
        "{:#?}",
        dry.items
    );
    assert_eq!(
        h.get("suspended-there").await.status,
        SubscriptionStatus::Active
    );
    assert!(
        h.engine
            .store
            .entitlements(contract.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.timeline_sources(&suspended).await.is_empty());

    let report = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    let drift_of = |id: &str| -> Vec<(Drift, Action)> {
        report
            .items
            .iter()
            .filter(|i| i.external_id == id)
            .map(|i| (i.drift.clone(), i.action.clone()))
            .collect()
    };
    // Status mismatch: applied through the event path, recorded as reconciliation.
    let d = drift_of("suspended-there");
    assert_eq!(
        d[0].0,
        Drift::StatusMismatch {
            ours: SubscriptionStatus::Active,
            theirs: SubscriptionStatus::Suspended
        }
    );
    assert!(matches!(d[0].1, Action::Repaired(_)));
    assert_eq!(
        h.get("suspended-there").await.status,
        SubscriptionStatus::Suspended
    );
    assert_eq!(
        h.timeline_sources(&suspended).await,
        [("reconcile".to_owned(), "lifecycle:suspend".to_owned())]
    );
    // Plan and quantity.
    let d = drift_of("changed-there");
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|(_, a)| matches!(a, Action::Repaired(_))));
    let now = h.get("changed-there").await;
    assert_eq!(now.plan_id, Some(PlanId::new("pro")));
    assert_eq!(now.quantity, Some(10));
    // Both changes, each followed by the entitlements re-read from the marketplace.
    let kinds: Vec<String> = h
        .timeline_sources(&changed)
        .await
        .into_iter()
        .map(|(_, kind)| kind)
        .filter(|kind| kind != "entitlements_read")
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    // Entitlements replaced with the marketplace's.
    let d = drift_of("contract");
    assert_eq!(
        d[0].0,
        Drift::EntitlementsDiffer {
            ours: 0,
            theirs: 1,
            differences: vec![EntitlementDifference {
                dimension: "seats".into(),
                ours: None,
                theirs: Some(seats(10)),
            }],
        }
    );
    assert_eq!(
        h.engine.store.entitlements(contract.id).await.unwrap(),
        vec![seats(10)]
    );
    // Never brought back from cancelled.
    let d = drift_of("ended-here");
    assert!(matches!(d[0].1, Action::ReportOnly(_)), "{d:?}");
    assert_eq!(
        h.get("ended-here").await.status,
        SubscriptionStatus::Cancelled
    );
    assert!(h.timeline_sources(&ended).await.is_empty());
    // Never seen: reported, not created.
    let d = drift_of("never-seen");
    assert_eq!(
        d[0].0,
        Drift::UnknownToUs {
            theirs: Some(SubscriptionStatus::Active)
        }
    );
    assert!(matches!(d[0].1, Action::ReportOnly(_)));
    assert!(
        h.engine
            .store
            .find_subscription(&test_marketplace(), "never-seen")
            .await
            .unwrap()
            .is_none()
    );
    assert!(drift_of("in-sync").is_empty());
    assert!(h.timeline_sources(&in_sync).await.is_empty());
    assert_eq!(report.repaired, 4);
    assert_eq!(report.report_only, 2);

    // A second run finds nothing left to repair.
    let again = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    assert_eq!(again.repaired, 0, "{:#?}", again.items);
}

#[tokio::test]
async fn a_stuck_activation_runs_again() {
    let h = Harness::new().await;
    let tenant = Tenant::new("Acme", None, "ops@acme.example", T0).unwrap();
    h.engine.store.create_tenant(&tenant).await.unwrap();
    let purchase = |id: &str| ResolvedPurchase {
        subscription: external(id),
        plan_id: Some(PlanId::new("basic")),
        quantity: None,
        free_trial: false,
        term: None,
        display_name: None,
        buyer_email: None,
        aliases: Vec::new(),
        parties: Vec::new(),
    };
    // "dead": its activation job was given up without running (a crash, an operator).
    h.engine
        .claim_purchase(&purchase("dead"), tenant.id)
        .await
        .unwrap();
    let jobs = h
        .engine
        .store
        .outbox_claim(T0, Duration::minutes(2), 10, None)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    h.engine
        .store
        .outbox_bury(&jobs[0], "worker stopped", T0)
        .await
        .unwrap();
    // "lost": claimed, but no activation job at all.
    let lost = h.ours("lost", SubscriptionStatus::Pending).await;
    h.engine
        .store
        .bind_subscription(lost.id, tenant.id, T0)
        .await
        .unwrap();
    // "unclaimed": nobody signed up yet; not ours to activate.
    h.ours("unclaimed", SubscriptionStatus::Pending).await;
    *h.provider.views.lock().unwrap() = ["dead", "lost", "unclaimed"]
        .into_iter()
        .map(|id| view(id, Some(SubscriptionStatus::Pending)))
        .collect();

    // Not stuck yet.
    let early = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    assert!(early.items.is_empty(), "{:#?}", early.items);

    h.clock.advance(Duration::hours(1));
    let report = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    assert_eq!(report.items.len(), 2, "{:#?}", report.items);
    let action = |id: &str| {
        report
            .items
            .iter()
            .find(|i| i.external_id == id)
            .map(|i| (i.drift.clone(), i.action.clone()))
            .unwrap()
    };
    assert_eq!(action("dead").0, Drift::StuckPending { since: T0 });
    assert!(
        matches!(&action("dead").1, Action::Repaired(a) if a.contains("requeued")),
        "{:?}",
        action("dead")
    );
    assert!(
        matches!(&action("lost").1, Action::Repaired(a) if a.contains("queued an activation")),
        "{:?}",
        action("lost")
    );
    assert_eq!(
        h.engine
            .store
            .outbox_list(QueueState::Pending, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // While they are queued, reconciliation leaves them alone.
    let queued = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    assert_eq!(queued.repaired, 0);
    assert!(
        queued
            .items
            .iter()
            .all(|i| matches!(i.action, Action::ReportOnly(_)))
    );

    h.engine
        .process_outbox(10, &Backoff::default())
        .await
        .unwrap();
    assert_eq!(h.get("dead").await.status, SubscriptionStatus::Active);
    assert_eq!(h.get("lost").await.status, SubscriptionStatus::Active);
    assert_eq!(h.get("unclaimed").await.status, SubscriptionStatus::Pending);
    assert_eq!(h.provider.activations.load(Ordering::SeqCst), 2);
    let sources = h.timeline_sources(&h.get("dead").await).await;
    assert!(
        sources.contains(&("reconcile".to_owned(), "activation_requeued".to_owned())),
        "{sources:?}"
    );
}

#[tokio::test]
async fn an_activation_that_gave_up_is_reported_not_revived() {
    let h = Harness::new().await;
    let tenant = Tenant::new("Acme", None, "ops@acme.example", T0).unwrap();
    h.engine.store.create_tenant(&tenant).await.unwrap();
    let purchase = ResolvedPurchase {
        subscription: external("refused"),
        plan_id: Some(PlanId::new("basic")),
        quantity: None,
        free_trial: false,
        term: None,
        display_name: None,
        buyer_email: None,
        aliases: Vec::new(),
        parties: Vec::new(),
    };
    h.engine.claim_purchase(&purchase, tenant.id).await.unwrap();
    h.provider.activation_fails.store(true, Ordering::SeqCst);
    let run = h
        .engine
        .process_outbox(10, &Backoff::default())
        .await
        .unwrap();
    assert_eq!(run.buried, 1);
    *h.provider.views.lock().unwrap() = vec![view("refused", Some(SubscriptionStatus::Pending))];
    h.clock.advance(Duration::hours(1));
    let report = h
        .engine
        .reconcile(&ReconcileSettings::default())
        .await
        .unwrap();
    assert_eq!(
        report.items[0].drift,
        Drift::StatusMismatch {
            ours: SubscriptionStatus::Failed,
            theirs: SubscriptionStatus::Pending
        }
    );
    assert!(
        matches!(&report.items[0].action, Action::ReportOnly(r) if r.contains("activation gave up")),
        "{:?}",
        report.items[0].action
    );
    assert_eq!(h.get("refused").await.status, SubscriptionStatus::Failed);
}
