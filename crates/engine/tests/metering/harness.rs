//! The engine on a fresh database, a catalog with one metered product, and usage helpers.

use std::sync::Arc;

use marketlink_core::{
    Catalog, Dimension, DimensionKind, ExternalRef, Lifecycle, Listing, ManualClock, Marketplace,
    Plan, PlanId, Product, ProductId, Subscription, SubscriptionId, Tenant,
};
use marketlink_engine::{
    ChangePolicy, Engine, Providers,
    backoff::Backoff,
    metering::{MeteringSettings, UsageInput},
};
use marketlink_store::{Store, StoreOptions};
use time::{Duration, OffsetDateTime, macros::datetime};
use uuid::Uuid;

use crate::fake::Counting;

/// 2026-11-25 10:00 UTC, the start of an hour.
pub(crate) const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

pub(crate) fn catalog() -> Catalog {
    let dim = |id: &str, kind| Dimension {
        id: id.into(),
        name: None,
        kind,
    };
    Catalog {
        products: vec![Product {
            id: ProductId::new("analytics"),
            name: "Analytics".into(),
            listings: vec![
                Listing {
                    marketplace: Marketplace::AWS,
                    product_code: "prod-a".into(),
                    listing_url: None,
                },
                Listing {
                    marketplace: Marketplace::AZURE,
                    product_code: "offer-a".into(),
                    listing_url: None,
                },
            ],
            plans: vec![Plan {
                id: PlanId::new("pro"),
                name: None,
                features: vec![],
                dimensions: vec![
                    dim("api_calls", DimensionKind::Metered),
                    dim("storage_gb", DimensionKind::Metered),
                    dim("seats", DimensionKind::Contract),
                ],
            }],
        }],
    }
}

pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) clock: ManualClock,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

pub(crate) fn settings() -> MeteringSettings {
    MeteringSettings {
        api_key_hashes: vec![],
        settle: Duration::minutes(5),
        lease: Duration::minutes(5),
        backoff: Backoff {
            base: Duration::seconds(10),
            max: Duration::minutes(10),
            max_attempts: 5,
        },
        ..MeteringSettings::default()
    }
}

pub(crate) async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("m.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

pub(crate) fn engine_on(store: Store, clock: &ManualClock, providers: Providers) -> Engine {
    Engine::new(
        store,
        providers,
        Arc::new(clock.clone()),
        Arc::new(catalog()),
        ChangePolicy::default(),
    )
    .with_metering(settings())
}

pub(crate) async fn harness(provider: Arc<Counting>, start: OffsetDateTime) -> Harness {
    let (store, dir) = sqlite_store().await;
    let clock = ManualClock::new(start);
    Harness {
        engine: engine_on(store, &clock, Providers::new().with(provider)),
        clock,
        _dir: Some(dir),
    }
}

pub(crate) async fn subscription(
    store: &Store,
    marketplace: Marketplace,
    customer: &str,
) -> Subscription {
    let code = if marketplace == Marketplace::AWS {
        "prod-a"
    } else {
        "offer-a"
    };
    let tenant = Tenant::new("Acme", None, "ops@acme.example", T0).unwrap();
    store.create_tenant(&tenant).await.unwrap();
    let mut sub = Subscription::pending(
        ExternalRef {
            marketplace,
            external_id: format!("{customer}/{code}"),
            product_code: code.into(),
            customer_id: customer.into(),
            customer_account_id: None,
            license_arn: None,
        },
        T0 - Duration::days(1),
    );
    sub.plan_id = Some(PlanId::new("pro"));
    let sub = store.upsert_subscription(&sub).await.unwrap();
    store
        .bind_subscription(sub.id, tenant.id, T0)
        .await
        .unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Activate, T0 - Duration::days(1))
        .await
        .unwrap();
    store.get_subscription(sub.id).await.unwrap()
}

pub(crate) fn input(
    sub: SubscriptionId,
    dimension: &str,
    qty: &str,
    at: OffsetDateTime,
) -> UsageInput {
    UsageInput {
        subscription_id: Some(sub),
        tenant_id: None,
        product: None,
        dimension: dimension.into(),
        quantity: qty.parse().unwrap(),
        timestamp: at,
        idempotency_key: None,
        allocations: vec![],
    }
}

/// A fresh database on the PostgreSQL server of the test suite.
pub(crate) async fn postgres_store() -> Option<(Store, String)> {
    use sqlx::{Connection, Executor};
    if std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        return None;
    }
    let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("marketlink_meter_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((store, name))
}
