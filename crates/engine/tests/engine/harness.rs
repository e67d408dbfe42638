//! The engine on a fresh SQLite database with the scripted provider, and message helpers.

use std::sync::Arc;

use marketlink_core::{
    Catalog, EventKind, ExternalRef, InboundMessage, Lifecycle, Listing, ManualClock, Marketplace,
    MarketplaceEvent, Plan, PlanId, Product, ProductId, SubscriptionStatus,
};
use marketlink_engine::{ChangePolicy, Engine, Providers, Received, backoff::Backoff};
use marketlink_store::{Store, StoreOptions};
use serde_json::json;
use time::{OffsetDateTime, macros::datetime};

use crate::fake::Scripted;

pub(crate) const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

pub(crate) fn external(id: &str) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::parse("test").unwrap(),
        external_id: id.into(),
        product_code: "prod-a".into(),
        customer_id: "cust".into(),
        customer_account_id: None,
        license_arn: None,
    }
}

pub(crate) fn event(id: &str, at: OffsetDateTime, kind: EventKind) -> serde_json::Value {
    serde_json::to_value(MarketplaceEvent {
        subscription: external(id),
        occurred_at: at,
        kind,
        free_trial: None,
        aliases: Vec::new(),
    })
    .unwrap()
}

pub(crate) fn lifecycle(event: Lifecycle) -> EventKind {
    EventKind::Lifecycle {
        event,
        reason: None,
    }
}

pub(crate) fn message(key: &str, events: Vec<serde_json::Value>) -> InboundMessage {
    InboundMessage {
        channel: "http".into(),
        headers: vec![("x-signature".into(), "valid".into())],
        body: serde_json::to_vec(&json!({ "key": key, "kind": "script", "events": events }))
            .unwrap(),
    }
}

pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) provider: Arc<Scripted>,
    pub(crate) clock: ManualClock,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) async fn harness(policy: ChangePolicy) -> Harness {
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
    pub(crate) async fn deliver(&self, msg: InboundMessage) -> Received {
        self.engine.receive("test", &msg).await.unwrap()
    }

    pub(crate) async fn drain(&self) -> marketlink_engine::InboxRun {
        self.engine
            .process_inbox(50, &Backoff::default())
            .await
            .unwrap()
    }

    pub(crate) async fn status(&self, id: &str) -> SubscriptionStatus {
        self.engine
            .store
            .find_subscription(&Marketplace::parse("test").unwrap(), id)
            .await
            .unwrap()
            .unwrap()
            .status
    }
}
