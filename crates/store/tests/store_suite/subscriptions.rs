//! Tenants and subscriptions: upserts, bindings, the lifecycle, terms, the timeline and
//! entitlements, and paging by change.

use marketlink_core::{
    Lifecycle, Marketplace, PlanId, Subscription, SubscriptionStatus, Term, Transition,
};
use marketlink_store::{Store, StoreError, SubscriptionFilter};
use time::Duration;

use crate::{T0, aws_ref, story, tenant};

async fn migrations_are_idempotent(store: &Store) {
    store.migrate().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    store.ping().await.unwrap();
}
story!(migrations, migrations_are_idempotent);

async fn tenants_round_trip_and_paginate(store: &Store) {
    let a = tenant("Alpha");
    let b = tenant("Beta");
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    assert_eq!(store.get_tenant(a.id).await.unwrap(), a);
    let first = store.list_tenants(None, 1).await.unwrap();
    assert_eq!(first, vec![a.clone()]);
    let next = store.list_tenants(Some(a.id), 10).await.unwrap();
    assert_eq!(next, vec![b]);
    assert!(matches!(
        store.create_tenant(&a).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.get_tenant(marketlink_core::TenantId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}
story!(tenants, tenants_round_trip_and_paginate);

async fn upsert_returns_the_existing_subscription(store: &Store) {
    let mut first = Subscription::pending(aws_ref("cust-1", "prod-a"), T0);
    first.free_trial = true;
    first.plan_id = Some(PlanId::new("basic"));
    first.term = Some(Term {
        start: Some(T0),
        end: Some(T0 + Duration::days(30)),
        unit: Some("P1M".into()),
    });
    let stored = store.upsert_subscription(&first).await.unwrap();
    assert_eq!(stored, first);
    // Same marketplace id again (landing page reloaded): the first row wins.
    let again = Subscription::pending(aws_ref("cust-1", "prod-a"), T0 + Duration::minutes(5));
    let stored_again = store.upsert_subscription(&again).await.unwrap();
    assert_eq!(stored_again.id, first.id);
    assert!(stored_again.free_trial);
    // Same customer, other product: a second subscription (seed 003).
    let other = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-1", "prod-b"), T0))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let found = store
        .find_subscription(&Marketplace::AWS, "cust-1/prod-b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, other.id);
    assert!(
        store
            .find_subscription(&Marketplace::AZURE, "cust-1/prod-b")
            .await
            .unwrap()
            .is_none()
    );
}
story!(upsert, upsert_returns_the_existing_subscription);

async fn binding_is_exclusive_to_one_tenant(store: &Store) {
    let a = tenant("Alpha");
    let b = tenant("Beta");
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-2", "prod-a"), T0))
        .await
        .unwrap();
    let bound = store.bind_subscription(sub.id, a.id, T0).await.unwrap();
    assert_eq!(bound.tenant_id, Some(a.id));
    // Binding again to the same tenant is harmless; to another is refused.
    store.bind_subscription(sub.id, a.id, T0).await.unwrap();
    let refused = store.bind_subscription(sub.id, b.id, T0).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.get_subscription(sub.id).await.unwrap().tenant_id,
        Some(a.id)
    );
    let missing = store
        .bind_subscription(marketlink_core::SubscriptionId::new(), a.id, T0)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
    let of_a = store
        .list_subscriptions(&SubscriptionFilter {
            tenant_id: Some(a.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_a.len(), 1);
    let of_b = store
        .list_subscriptions(&SubscriptionFilter {
            tenant_id: Some(b.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(of_b.is_empty());
}
story!(binding, binding_is_exclusive_to_one_tenant);

async fn lifecycle_goes_through_the_state_machine(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-3", "prod-a"), T0))
        .await
        .unwrap();
    let t1 = T0 + Duration::hours(1);
    let (active, transition) = store
        .apply_lifecycle(sub.id, Lifecycle::Activate, t1)
        .await
        .unwrap();
    assert_eq!(active.status, SubscriptionStatus::Active);
    assert_eq!(
        transition,
        Transition::Changed {
            from: SubscriptionStatus::Pending,
            to: SubscriptionStatus::Active
        }
    );
    // A duplicate delivery changes nothing.
    let (_, again) = store
        .apply_lifecycle(sub.id, Lifecycle::Activate, t1 + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(again, Transition::Unchanged(SubscriptionStatus::Active));
    let reread = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(reread.updated_at, t1);
    // Illegal: activate -> fail.
    assert!(matches!(
        store.apply_lifecycle(sub.id, Lifecycle::Fail, t1).await,
        Err(StoreError::Domain(_))
    ));
    store
        .apply_lifecycle(sub.id, Lifecycle::BeginCancel, t1)
        .await
        .unwrap();
    store
        .apply_lifecycle(sub.id, Lifecycle::Cancel, t1)
        .await
        .unwrap();
    let cancelled = store
        .list_subscriptions(&SubscriptionFilter {
            status: Some(SubscriptionStatus::Cancelled),
            marketplace: Some(Marketplace::AWS),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
}
story!(lifecycle, lifecycle_goes_through_the_state_machine);

async fn concurrent_lifecycle_updates_apply_once(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-4", "prod-a"), T0))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.apply_lifecycle(sub.id, Lifecycle::Activate, T0).await
        }));
    }
    let mut changed = 0;
    for task in tasks {
        if let (_, Transition::Changed { .. }) = task.await.unwrap().unwrap() {
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "exactly one writer performs the transition");
}
story!(
    concurrent_lifecycle,
    concurrent_lifecycle_updates_apply_once
);

async fn terms_are_updated(store: &Store) {
    let mut sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-5", "prod-a"), T0))
        .await
        .unwrap();
    sub.plan_id = Some(PlanId::new("pro"));
    sub.quantity = Some(25);
    sub.product_id = Some(marketlink_core::ProductId::new("analytics"));
    let as_of = T0 + Duration::minutes(10);
    assert!(
        store
            .update_subscription_terms(&sub, as_of, T0)
            .await
            .unwrap()
    );
    let reread = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(reread.plan_id, sub.plan_id);
    assert_eq!(reread.quantity, Some(25));
    assert_eq!(reread.product_id, sub.product_id);
    // An older statement arriving late is stale and ignored.
    let mut stale = reread.clone();
    stale.quantity = Some(5);
    assert!(
        !store
            .update_subscription_terms(&stale, as_of - Duration::minutes(1), T0)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_subscription(sub.id).await.unwrap().quantity,
        Some(25)
    );
    let mut missing = reread;
    missing.id = marketlink_core::SubscriptionId::new();
    assert!(matches!(
        store.update_subscription_terms(&missing, as_of, T0).await,
        Err(StoreError::NotFound(_))
    ));
}
story!(terms, terms_are_updated);

async fn timeline_and_entitlements(store: &Store) {
    use marketlink_core::{Entitlement, EntitlementValue};
    use marketlink_store::TimelineEntry;

    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("cust-6", "prod-a"), T0))
        .await
        .unwrap();
    for (i, kind) in ["lifecycle:activate", "entitlements_changed"]
        .iter()
        .enumerate()
    {
        store
            .record_timeline(&TimelineEntry {
                id: uuid::Uuid::now_v7(),
                subscription_id: sub.id,
                source: "inbox:1".into(),
                kind: (*kind).into(),
                outcome: "applied".into(),
                detail: serde_json::json!({ "i": i }),
                occurred_at: T0,
                recorded_at: T0,
            })
            .await
            .unwrap();
    }
    let timeline = store.timeline(sub.id, 10).await.unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0].kind, "lifecycle:activate");
    assert_eq!(timeline[1].detail["i"], 1);

    let first = vec![
        Entitlement {
            dimension: "seats".into(),
            value: EntitlementValue::Integer(10),
            expires_at: Some(T0 + Duration::days(365)),
        },
        Entitlement {
            dimension: "premium".into(),
            value: EntitlementValue::Boolean(true),
            expires_at: None,
        },
    ];
    store
        .replace_entitlements(sub.id, &first, T0)
        .await
        .unwrap();
    let read = store.entitlements(sub.id).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1], first[0], "sorted by dimension");
    // The marketplace's new full set replaces the old one.
    let second = vec![Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(20),
        expires_at: None,
    }];
    store
        .replace_entitlements(sub.id, &second, T0)
        .await
        .unwrap();
    assert_eq!(store.entitlements(sub.id).await.unwrap(), second);
    // A duplicate dimension is refused and leaves the previous set intact.
    let dup = vec![second[0].clone(), second[0].clone()];
    assert!(matches!(
        store.replace_entitlements(sub.id, &dup, T0).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.entitlements(sub.id).await.unwrap(), second);
}
story!(timeline, timeline_and_entitlements);

async fn changed_grants_page_by_time_and_id(store: &Store) {
    use marketlink_core::{Entitlement, EntitlementValue};

    let acme = tenant("Acme");
    store.create_tenant(&acme).await.unwrap();
    let mut ids = Vec::new();
    // Three subscriptions changed in the same millisecond, and one never bound (not loaded).
    for i in 0..3 {
        let mut s = Subscription::pending(aws_ref(&format!("c{i}"), "prod"), T0);
        s.tenant_id = Some(acme.id);
        store
            .insert_subscriptions_bulk(std::slice::from_ref(&s))
            .await
            .unwrap();
        ids.push(s.id);
    }
    store
        .upsert_subscription(&Subscription::pending(aws_ref("unbound", "prod"), T0))
        .await
        .unwrap();
    let seats = Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(3),
        expires_at: None,
    };
    store
        .replace_entitlements(ids[2], std::slice::from_ref(&seats), T0)
        .await
        .unwrap();

    let first = store.changed_grants(0, None, 2).await.unwrap();
    assert_eq!(first.rows.len(), 2);
    let (since, after) = first.last.unwrap();
    let rest = store.changed_grants(since, Some(after), 10).await.unwrap();
    assert_eq!(
        rest.rows.len(),
        1,
        "the page boundary loses and repeats nothing"
    );
    let (since, after) = rest.last.unwrap();
    let caught_up = store.changed_grants(since, Some(after), 10).await.unwrap();
    assert!(caught_up.rows.is_empty() && caught_up.last.is_none());
    let mut all: Vec<_> = first
        .rows
        .iter()
        .chain(rest.rows.iter())
        .map(|g| g.subscription_id)
        .collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);
    let with_seats = first
        .rows
        .iter()
        .chain(rest.rows.iter())
        .find(|g| g.subscription_id == ids[2])
        .unwrap();
    assert_eq!(with_seats.entitlements, vec![seats.clone()]);
    assert_eq!(with_seats.tenant_id, acme.id);

    // One tenant's, read directly (checks while the index loads): the same rows.
    let mut direct = store.tenant_grants(acme.id).await.unwrap();
    direct.sort_by_key(|g| g.subscription_id);
    let mut paged: Vec<_> = first.rows.into_iter().chain(rest.rows).collect();
    paged.sort_by_key(|g| g.subscription_id);
    assert_eq!(direct, paged);
    assert!(
        store
            .tenant_grants(tenant("Nobody").id)
            .await
            .unwrap()
            .is_empty()
    );
}
story!(changed_grants, changed_grants_page_by_time_and_id);
