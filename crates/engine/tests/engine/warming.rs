//! Checks while the entitlement index loads (ADR 0022): answered from the database until the
//! index is warm, and a subscription changed during the load is answered correctly throughout
//! and is in the index when the load ends.

use std::sync::Arc;

use marketlink_core::{
    Lifecycle, PlanId, ProductId, Subscription, SubscriptionId, SubscriptionStatus, Tenant,
    TenantId,
};
use marketlink_engine::{
    ChangePolicy,
    checks::Source,
    entitlements::{EntitlementIndex, Reason},
};
use time::Duration;

use crate::harness::{Harness, T0, external, harness};

/// `count` active subscriptions to "analytics", one per tenant, all last changed at T0.
async fn seeded(h: &Harness, count: usize) -> Vec<(TenantId, SubscriptionId)> {
    let tenants: Vec<Tenant> = (0..count)
        .map(|i| Tenant::new(&format!("T{i}"), None, &format!("t{i}@x.example"), T0).unwrap())
        .collect();
    let subscriptions: Vec<Subscription> = tenants
        .iter()
        .enumerate()
        .map(|(i, tenant)| {
            let mut s = Subscription::pending(external(&format!("s{i}")), T0);
            s.tenant_id = Some(tenant.id);
            s.product_id = Some(ProductId::new("analytics"));
            s.plan_id = Some(PlanId::new("basic"));
            s.status = SubscriptionStatus::Active;
            s
        })
        .collect();
    let store = &h.engine.store;
    store.insert_tenants_bulk(&tenants).await.unwrap();
    store
        .insert_subscriptions_bulk(&subscriptions)
        .await
        .unwrap();
    tenants
        .iter()
        .zip(&subscriptions)
        .map(|(t, s)| (t.id, s.id))
        .collect()
}

async fn answer(h: &Harness, tenant: TenantId) -> (Reason, Source) {
    let (decision, source) = h
        .engine
        .check_entitlement(tenant, &ProductId::new("analytics"), None, None, T0)
        .await
        .unwrap();
    (decision.reason, source)
}

#[tokio::test]
async fn checks_are_answered_from_the_database_until_the_index_is_warm() {
    let h = harness(ChangePolicy::default()).await;
    let subs = seeded(&h, 3).await;
    let (tenant, sub) = subs[1];
    let index = &h.engine.entitlements;
    assert!(!index.is_warm());
    // The index alone has not loaded anything: it would deny.
    let unloaded = index.check(tenant, &ProductId::new("analytics"), None, None, T0);
    assert_eq!(unloaded.reason, Reason::NotSubscribed);
    assert_eq!(
        answer(&h, tenant).await,
        (Reason::Allowed, Source::Database)
    );
    let grants = h.engine.tenant_grants(tenant).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].subscription_id, sub);

    // A change is answered at once while loading.
    h.engine
        .store
        .apply_lifecycle(sub, Lifecycle::Suspend, T0 + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        answer(&h, tenant).await,
        (Reason::Suspended, Source::Database)
    );

    assert_eq!(index.sync(&h.engine.store).await.unwrap(), 3);
    assert!(index.is_warm());
    assert_eq!(answer(&h, tenant).await, (Reason::Suspended, Source::Index));
    assert_eq!(
        answer(&h, subs[0].0).await,
        (Reason::Allowed, Source::Index)
    );
}

#[tokio::test]
async fn a_subscription_changed_while_the_index_loads_is_answered_correctly_throughout() {
    let mut h = harness(ChangePolicy::default()).await;
    // Small pages: a load of many queries, so the change lands in the middle of it.
    h.engine.entitlements =
        Arc::new(EntitlementIndex::new(h.engine.catalog.clone()).with_page_size(20));
    let subs = seeded(&h, 4_000).await;
    let index = h.engine.entitlements.clone();
    let store = h.engine.store.clone();
    let load = index.sync(&store);
    let during = async {
        // Wait until some subscription is in the index: the load is under way.
        let (tenant, sub) = loop {
            if let Some(loaded) = subs
                .iter()
                .find(|(t, _)| !index.subscriptions(*t).is_empty())
            {
                break *loaded;
            }
            tokio::task::yield_now().await;
        };
        assert!(!index.is_warm(), "the load ended before the change");
        store
            .apply_lifecycle(sub, Lifecycle::Suspend, T0 + Duration::seconds(1))
            .await
            .unwrap();
        let mut answered_while_loading = 0;
        let others = subs.iter().filter(|(t, _)| *t != tenant).step_by(97);
        for (i, (other, _)) in others.enumerate() {
            let (reason, source) = answer(&h, tenant).await;
            if source == Source::Database {
                answered_while_loading += 1;
            }
            assert_eq!(reason, Reason::Suspended, "after {i} checks ({source:?})");
            assert_eq!(answer(&h, *other).await.0, Reason::Allowed);
        }
        assert!(
            answered_while_loading > 0,
            "no check was made while loading"
        );
        tenant
    };
    let (loaded, tenant) = tokio::join!(load, during);
    // The load itself picked up the change: no further sync.
    assert!(loaded.unwrap() > subs.len());
    assert!(index.is_warm());
    assert_eq!(answer(&h, tenant).await, (Reason::Suspended, Source::Index));
    assert_eq!(index.len(), subs.len());
}
