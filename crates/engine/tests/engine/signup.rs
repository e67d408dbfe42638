//! Sign-up claims the purchase all or nothing: the tenant, its owner, the subscription and
//! the binding are one transaction, and the vendor hears of it only after the commit. A
//! refused claim leaves no tenant, no user and no webhook behind. On SQLite, and on
//! PostgreSQL unless `MARKETLINK_TEST_SKIP_POSTGRES=1`.

use std::sync::Arc;

use marketlink_core::{
    Catalog, ExternalRef, ManualClock, Marketplace, PlanId, ResolvedPurchase, SubscriptionStatus,
};
use marketlink_engine::{
    ChangePolicy, ClaimError, Engine, NewAccount, Providers, SignUpError, webhooks::WebhookSettings,
};
use marketlink_store::{QueueState, Store, StoreOptions};
use uuid::Uuid;

use crate::{fake::Scripted, harness::T0};

fn purchase(id: &str) -> ResolvedPurchase {
    ResolvedPurchase {
        subscription: ExternalRef {
            marketplace: Marketplace::parse("test").unwrap(),
            external_id: id.into(),
            product_code: "prod-a".into(),
            customer_id: format!("cust-{id}"),
            customer_account_id: None,
            license_arn: None,
        },
        plan_id: Some(PlanId::new("basic")),
        quantity: Some(3),
        free_trial: false,
        term: None,
        display_name: None,
        buyer_email: Some("buyer@example.com".into()),
        aliases: Vec::new(),
        parties: Vec::new(),
    }
}

fn engine(store: Store) -> Engine {
    Engine::new(
        store,
        Providers::new().with(Arc::new(Scripted {
            vendor_activates: true,
            ..Scripted::default()
        })),
        Arc::new(ManualClock::new(T0)),
        Arc::new(Catalog { products: vec![] }),
        ChangePolicy::default(),
    )
    .with_webhooks(Some(WebhookSettings {
        url: "http://127.0.0.1:9/hooks".into(),
        secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3".into(),
    }))
}

/// The outbox's waiting jobs by kind (webhooks and activations).
async fn queued(engine: &Engine) -> Vec<String> {
    let mut kinds: Vec<String> = engine
        .store
        .outbox_list(QueueState::Pending, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| match job.payload["type"].as_str() {
            Some(event) => format!("{}:{event}", job.kind),
            None => job.kind,
        })
        .collect();
    kinds.sort();
    kinds
}

async fn sign_up(
    engine: &Engine,
    email: &str,
    bought: &ResolvedPurchase,
) -> Result<marketlink_core::Subscription, SignUpError> {
    let (tenant, owner) = engine
        .new_account(NewAccount {
            name: "Ada Lovelace",
            company: "",
            email,
        })
        .unwrap();
    engine
        .sign_up_and_claim(&tenant, &owner, "$argon2id$not-checked-here", bought)
        .await
}

/// The whole contract, on whichever backend `store` is.
async fn a_failed_claim_leaves_nothing_behind(store: Store) {
    let engine = engine(store);
    let bought = purchase("sub-1");

    let first = sign_up(&engine, "first@example.com", &bought)
        .await
        .unwrap();
    assert_eq!(first.status, SubscriptionStatus::Pending);
    assert_eq!(first.plan_id, Some(PlanId::new("basic")));
    let tenant = first.tenant_id.unwrap();
    let owner = engine
        .sign_in_candidate("first@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.user.tenant_id, tenant);
    assert_eq!(engine.store.tenant_count().await.unwrap(), 1);
    let after_first = queued(&engine).await;
    assert_eq!(after_first.len(), 3, "{after_first:?}");
    assert!(
        after_first.contains(&"activate".to_owned()),
        "{after_first:?}"
    );

    // The same purchase again, by someone else: refused, and nothing of theirs is stored.
    let refused = sign_up(&engine, "second@example.com", &bought).await;
    assert!(
        matches!(refused, Err(SignUpError::AlreadyLinked(ref m)) if m == "test"),
        "{refused:?}"
    );
    assert_eq!(
        engine.store.tenant_count().await.unwrap(),
        1,
        "no orphan tenant"
    );
    assert!(
        engine
            .sign_in_candidate("second@example.com")
            .await
            .unwrap()
            .is_none(),
        "no user"
    );
    assert_eq!(
        queued(&engine).await,
        after_first,
        "no webhook, no activation"
    );
    let stored = engine
        .store
        .find_subscription(&bought.subscription.marketplace, "sub-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tenant_id, Some(tenant), "still the first account's");

    // A taken email is refused the same way: nothing stored, nothing sent.
    let taken = sign_up(&engine, "First@Example.com", &purchase("sub-2")).await;
    assert!(
        matches!(taken, Err(SignUpError::EmailTaken(_))),
        "{taken:?}"
    );
    assert_eq!(engine.store.tenant_count().await.unwrap(), 1);
    assert!(
        engine
            .store
            .find_subscription(&bought.subscription.marketplace, "sub-2")
            .await
            .unwrap()
            .is_none(),
        "the claim rolled back with the account"
    );
    assert_eq!(queued(&engine).await, after_first);

    // The owner links a second purchase to the account they have.
    let linked = engine
        .link_purchase(&owner.user, &purchase("sub-3"))
        .await
        .unwrap();
    assert_eq!(linked.tenant_id, Some(tenant));
    // Nobody else can link the first one.
    let (other_tenant, other_owner) = engine
        .new_account(NewAccount {
            name: "Grace Hopper",
            company: "Navy",
            email: "grace@example.com",
        })
        .unwrap();
    engine
        .store
        .create_tenant_with_owner(&other_tenant, &other_owner, None)
        .await
        .unwrap();
    let stolen = engine.link_purchase(&other_owner, &bought).await;
    assert!(
        matches!(stolen, Err(ClaimError::AlreadyLinked(_))),
        "{stolen:?}"
    );
    // A member of the account cannot bind a bill to it; nothing is stored.
    let member = marketlink_core::User::new(
        tenant,
        "dev@example.com",
        None,
        marketlink_core::Role::Member,
        engine.clock.now(),
    )
    .unwrap();
    engine.store.create_user(&member, None).await.unwrap();
    let refused = engine.link_purchase(&member, &purchase("sub-4")).await;
    assert!(
        matches!(refused, Err(ClaimError::NotPermitted)),
        "{refused:?}"
    );
    assert!(
        engine
            .store
            .find_subscription(&bought.subscription.marketplace, "sub-4")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_claim_leaves_no_tenant_and_sends_no_webhook_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("signup.db").display());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    a_failed_claim_leaves_nothing_behind(store).await;
}

#[tokio::test]
async fn a_failed_claim_leaves_no_tenant_and_sends_no_webhook_on_postgres() {
    use sqlx::{Connection, Executor};
    if std::env::var("MARKETLINK_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        return;
    }
    let admin = std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("marketlink_signup_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    a_failed_claim_leaves_nothing_behind(store.clone()).await;
    store.close().await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
