//! The store's conformance suite: every story runs on SQLite and on PostgreSQL.

mod common;

use marketlink_core::{
    AuthenticatedMessage, ExternalRef, Lifecycle, Marketplace, PlanId, Subscription,
    SubscriptionStatus, Tenant, Term, Transition,
};
use marketlink_store::{InboxInsert, NewJob, QueueState, Store, StoreError, SubscriptionFilter};
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

fn aws_ref(customer: &str, product: &str) -> ExternalRef {
    ExternalRef {
        marketplace: Marketplace::AWS,
        external_id: ExternalRef::aws_classic_id(customer, product),
        product_code: product.into(),
        customer_id: customer.into(),
        customer_account_id: Some("111122223333".into()),
        license_arn: None,
    }
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name, Some("Acme Corp"), "ops@acme.example", T0).unwrap()
}

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

fn message(key: &str) -> AuthenticatedMessage {
    AuthenticatedMessage {
        marketplace: Marketplace::AWS,
        dedup_key: key.into(),
        kind: "subscribe-success".into(),
        received_at: T0,
        payload: serde_json::json!({"action": "subscribe-success", "customer-identifier": "c"}),
    }
}

async fn inbox_deduplicates_and_leases(store: &Store) {
    let first = store.inbox_insert(&message("msg-1"), T0).await.unwrap();
    assert!(matches!(first, InboxInsert::Inserted(_)));
    let dup = store.inbox_insert(&message("msg-1"), T0).await.unwrap();
    assert_eq!(dup, InboxInsert::Duplicate(first.id()));
    store.inbox_insert(&message("msg-2"), T0).await.unwrap();

    let lease = Duration::seconds(30);
    let claimed = store.inbox_claim(T0, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let stored: AuthenticatedMessage = serde_json::from_value(claimed[0].payload.clone()).unwrap();
    assert_eq!(stored, message("msg-1"));
    // Leased items are not handed out twice.
    assert!(store.inbox_claim(T0, lease, 10).await.unwrap().is_empty());

    store.inbox_complete(&claimed[0], T0).await.unwrap();
    let retry_at = T0 + Duration::minutes(1);
    store
        .inbox_retry(&claimed[1], "GetEntitlements throttled", retry_at, T0)
        .await
        .unwrap();
    assert!(store.inbox_claim(T0, lease, 10).await.unwrap().is_empty());
    let again = store.inbox_claim(retry_at, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("GetEntitlements throttled")
    );
    store
        .inbox_bury(&again[0], "gave up", retry_at)
        .await
        .unwrap();
    let dead = store.inbox_list(QueueState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        store.inbox_backlog(retry_at).await.unwrap().0,
        0,
        "dead items are not backlog"
    );
    store.inbox_requeue(dead[0].id, retry_at).await.unwrap();
    assert_eq!(store.inbox_backlog(retry_at).await.unwrap().0, 1);
}
story!(inbox, inbox_deduplicates_and_leases);

async fn expired_leases_are_taken_over(store: &Store) {
    store
        .outbox_enqueue(
            &NewJob {
                marketplace: "azure".into(),
                kind: "activate".into(),
                dedup_key: "sub-1".into(),
                payload: serde_json::json!({"subscription": "sub-1"}),
                run_at: T0,
            },
            T0,
        )
        .await
        .unwrap();
    let lease = Duration::seconds(30);
    let stalled = store
        .outbox_claim(T0, lease, 10, Some("activate"))
        .await
        .unwrap();
    assert_eq!(stalled.len(), 1);
    assert!(
        store
            .outbox_claim(T0, lease, 10, Some("usage"))
            .await
            .unwrap()
            .is_empty()
    );
    // The first worker stalls past its lease; a second takes the job over.
    let later = T0 + Duration::seconds(31);
    let taken = store.outbox_claim(later, lease, 10, None).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].lease_id, stalled[0].lease_id);
    // The stalled worker can no longer complete it.
    assert!(matches!(
        store.outbox_complete(&stalled[0], later).await,
        Err(StoreError::Conflict(_))
    ));
    store.outbox_complete(&taken[0], later).await.unwrap();
    assert_eq!(
        store.outbox_list(QueueState::Done, 10).await.unwrap().len(),
        1
    );
}
story!(leases, expired_leases_are_taken_over);

async fn concurrent_claimers_never_share_a_job(store: &Store) {
    for i in 0..40 {
        store
            .outbox_enqueue(
                &NewJob {
                    marketplace: "aws".into(),
                    kind: "usage".into(),
                    dedup_key: format!("batch-{i}"),
                    payload: serde_json::json!({ "i": i }),
                    run_at: T0,
                },
                T0,
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .outbox_claim(T0, Duration::minutes(5), 3, None)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break mine;
                }
                for item in batch {
                    store.outbox_complete(&item, T0).await.unwrap();
                    mine.push(item.dedup_key);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 40, "every job claimed exactly once");
    assert_eq!(all.len(), 40);
}
story!(concurrent_claims, concurrent_claimers_never_share_a_job);

async fn outbox_backlog_counts_waiting_and_dead_jobs_by_kind(store: &Store) {
    for (kind, key) in [
        ("webhook", "w1"),
        ("webhook", "w2"),
        ("webhook", "w3"),
        ("activate", "a1"),
    ] {
        store
            .outbox_enqueue(
                &NewJob {
                    marketplace: "aws".into(),
                    kind: kind.into(),
                    dedup_key: key.into(),
                    payload: serde_json::json!({}),
                    run_at: T0,
                },
                T0,
            )
            .await
            .unwrap();
    }
    let claimed = store
        .outbox_claim(T0, Duration::minutes(5), 10, None)
        .await
        .unwrap();
    for item in &claimed {
        match item.dedup_key.as_str() {
            "w1" => store.outbox_complete(item, T0).await.unwrap(),
            "a1" => store.outbox_bury(item, "refused", T0).await.unwrap(),
            _ => {}
        }
    }
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        vec![
            ("activate".to_string(), "dead".to_string(), 1),
            ("webhook".to_string(), "pending".to_string(), 2),
        ]
    );
}
story!(
    outbox_backlog,
    outbox_backlog_counts_waiting_and_dead_jobs_by_kind
);

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

async fn users_belong_to_one_tenant_and_emails_are_unique(store: &Store) {
    use marketlink_core::{Role, User};

    let acme = tenant("Acme");
    let owner = User::new(acme.id, " Ops@Acme.Example ", Some("Ops"), Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, Some("$argon2id$hash"))
        .await
        .unwrap();
    let (found, hash) = store
        .find_user_by_email("OPS@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, owner);
    assert_eq!(found.email, "ops@acme.example");
    assert_eq!(hash.as_deref(), Some("$argon2id$hash"));

    // A second tenant whose owner reuses the email is refused as a whole: no orphan tenant.
    let other = tenant("Other");
    let clash = User::new(other.id, "ops@acme.example", None, Role::Owner, T0).unwrap();
    assert!(matches!(
        store.create_tenant_with_owner(&other, &clash, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.get_tenant(other.id).await,
        Err(StoreError::NotFound(_))
    ));

    let member = User::new(acme.id, "dev@acme.example", None, Role::Member, T0).unwrap();
    store.create_user(&member, None).await.unwrap();
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 2);
    assert_eq!(store.get_user(member.id).await.unwrap().role, Role::Member);
}
story!(users, users_belong_to_one_tenant_and_emails_are_unique);

async fn roles_change_and_people_leave_but_one_owner_stays(store: &Store) {
    use marketlink_core::{Role, User};

    let acme = tenant("Acme");
    let owner = User::new(acme.id, "owner@acme.example", None, Role::Owner, T0).unwrap();
    store
        .create_tenant_with_owner(&acme, &owner, None)
        .await
        .unwrap();
    let dev = User::new(acme.id, "dev@acme.example", None, Role::Member, T0).unwrap();
    store.create_user(&dev, None).await.unwrap();

    // The only owner can neither step down nor leave.
    for change in [Some(Role::Admin), Some(Role::Member), None] {
        assert!(matches!(
            store.change_user(acme.id, owner.id, change).await,
            Err(StoreError::Conflict(m)) if m.contains("at least one owner")
        ));
    }
    // A second owner makes it possible.
    let promoted = store
        .change_user(acme.id, dev.id, Some(Role::Owner))
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Owner);
    assert_eq!(store.get_user(dev.id).await.unwrap().role, Role::Owner);
    store
        .change_user(acme.id, owner.id, Some(Role::Admin))
        .await
        .unwrap();
    // Another tenant's id does not reach this user.
    let other = tenant("Other");
    store.create_tenant(&other).await.unwrap();
    assert!(matches!(
        store.change_user(other.id, owner.id, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.change_user(acme.id, owner.id, None).await.unwrap();
    assert!(matches!(
        store.get_user(owner.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_users(acme.id).await.unwrap().len(), 1);
    // The email is free again.
    assert!(
        store
            .find_user_by_email("owner@acme.example")
            .await
            .unwrap()
            .is_none()
    );
}
story!(people, roles_change_and_people_leave_but_one_owner_stays);

// ---- Metering (ADR 0005) ----

fn usage_event(
    sub: &Subscription,
    dimension: &str,
    at: OffsetDateTime,
    units: u32,
    key: Option<&str>,
) -> marketlink_store::NewUsageEvent {
    marketlink_store::NewUsageEvent {
        id: uuid::Uuid::now_v7(),
        subscription_id: sub.id,
        dimension: dimension.into(),
        occurred_at: at,
        hour: at.replace_minute(0).unwrap().replace_second(0).unwrap(),
        quantity: marketlink_core::Quantity::from_units(units),
        idempotency_key: key.map(str::to_owned),
        allocations: vec![],
    }
}

async fn usage_is_aggregated_hourly_and_idempotent(store: &Store) {
    use marketlink_store::UsageHourState;
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-1", "prod-a"), T0))
        .await
        .unwrap();
    let h10 = T0; // 10:00
    let batch = vec![
        usage_event(&sub, "api_calls", h10 + Duration::minutes(1), 2, Some("k1")),
        usage_event(
            &sub,
            "api_calls",
            h10 + Duration::minutes(59),
            3,
            Some("k2"),
        ),
        // The same key twice in one batch is stored once.
        usage_event(&sub, "api_calls", h10 + Duration::minutes(5), 3, Some("k2")),
        usage_event(&sub, "api_calls", h10 + Duration::minutes(61), 7, None),
        usage_event(&sub, "storage_gb", h10, 1, None),
    ];
    let outcome = store.usage_ingest(&batch, T0).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (4, 1));
    // The whole batch again: every keyed event is a duplicate, the unkeyed ones count again.
    let again = store.usage_ingest(&batch[..3], T0).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 4);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let summary: Vec<(String, i64, String)> = hours
        .iter()
        .map(|h| {
            (
                h.dimension.clone(),
                (h.hour - h10).whole_hours(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api_calls".into(), 0, "5".into()),
            ("storage_gb".into(), 0, "1".into()),
            ("api_calls".into(), 1, "7".into()),
        ]
    );
    assert!(hours.iter().all(|h| h.state == UsageHourState::Open));
}
story!(usage_ingest, usage_is_aggregated_hourly_and_idempotent);

async fn a_group_commit_keeps_each_batch_all_or_nothing(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-g", "prod-a"), T0))
        .await
        .unwrap();
    // Freeze 10:00 by claiming it.
    store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 1, None)], T0)
        .await
        .unwrap();
    let claim = store
        .usage_claim(
            T0 + Duration::hours(2),
            T0,
            Duration::minutes(5),
            10,
            |_| false,
        )
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let first = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
    ];
    // A new hour and the frozen one: refused as a whole.
    let refused = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 50, Some("g2")),
        usage_event(
            &sub,
            "api_calls",
            T0 + Duration::minutes(10),
            50,
            Some("g3"),
        ),
    ];
    // The same key as the first batch: a duplicate of what the group already stored.
    let third = vec![
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 2, Some("g1")),
        usage_event(&sub, "storage_gb", T0 + Duration::hours(1), 3, None),
    ];
    let results = store
        .usage_ingest_group(&[(&first, T0), (&refused, T0), (&third, T0)])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    let outcome = |i: usize| match &results[i] {
        Ok(o) => (o.accepted, o.duplicates),
        Err(e) => panic!("batch {i}: {e}"),
    };
    assert_eq!(outcome(0), (1, 1));
    assert!(
        matches!(results[1], Err(marketlink_store::StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    assert_eq!(outcome(2), (1, 1));
    // Nothing of the refused batch is stored: its key is free and 11:00 holds 2 only.
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 3);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let summary: Vec<(String, i64, String)> = hours
        .iter()
        .map(|h| {
            (
                h.dimension.clone(),
                (h.hour - T0).whole_hours(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api_calls".into(), 0, "1".into()),
            ("api_calls".into(), 1, "2".into()),
            ("storage_gb".into(), 1, "3".into()),
        ]
    );
    let retried = store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                50,
                Some("g2"),
            )],
            T0,
        )
        .await
        .unwrap();
    assert_eq!((retried.accepted, retried.duplicates), (1, 0));
}
story!(
    usage_group_commit,
    a_group_commit_keeps_each_batch_all_or_nothing
);

/// ADR 0010: a request only stores its events; they reach their hourly totals (and tags) when
/// the next claim folds them, before it freezes any hour. Later usage for a frozen hour is
/// refused; usage for other hours is folded by the next claim.
async fn usage_reaches_its_hours_when_a_claim_folds_it(store: &Store) {
    use marketlink_core::{Quantity, UsageAllocation};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-f", "prod-a"), T0))
        .await
        .unwrap();
    let tagged = |units: u32, team: &str| {
        let mut e = usage_event(&sub, "api_calls", T0 + Duration::minutes(7), units, None);
        e.allocations = vec![UsageAllocation {
            quantity: Quantity::from_units(units),
            tags: vec![("team".into(), team.into())],
        }];
        e
    };
    store
        .usage_ingest(&[tagged(2, "red"), tagged(3, "blue"), tagged(4, "red")], T0)
        .await
        .unwrap();
    store
        .usage_ingest(&[usage_event(&sub, "storage_gb", T0, 1, None)], T0)
        .await
        .unwrap();
    // Two hourly totals to fold, then nothing left.
    assert_eq!(store.usage_fold().await.unwrap(), 2);
    assert_eq!(store.usage_fold().await.unwrap(), 0);
    store
        .usage_ingest(&[tagged(1, "blue")], T0 + Duration::minutes(30))
        .await
        .unwrap();
    // The claim folds the last event before it freezes 10:00.
    let claim = store
        .usage_claim(
            T0 + Duration::hours(2),
            T0,
            Duration::minutes(5),
            10,
            |_| false,
        )
        .await
        .unwrap();
    type Claimed = (String, String, Vec<(String, String)>);
    let mut claimed: Vec<Claimed> = claim
        .hours
        .iter()
        .map(|h| {
            let mut tags: Vec<(String, String)> = h
                .allocations
                .iter()
                .map(|a| (a.tags[0].1.clone(), a.quantity.to_string()))
                .collect();
            tags.sort();
            (h.dimension.clone(), h.quantity.to_string(), tags)
        })
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        vec![
            (
                "api_calls".into(),
                "10".into(),
                vec![("blue".into(), "4".into()), ("red".into(), "6".into())]
            ),
            ("storage_gb".into(), "1".into(), vec![]),
        ]
    );
    // 10:00 is frozen: refused whole, nothing stored; 11:00 is folded by the next read.
    let late = store
        .usage_ingest(
            &[
                usage_event(&sub, "api_calls", T0 + Duration::hours(1), 5, None),
                usage_event(&sub, "api_calls", T0 + Duration::minutes(50), 5, None),
            ],
            T0 + Duration::hours(2),
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                5,
                None,
            )],
            T0 + Duration::hours(2),
        )
        .await
        .unwrap();
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 6);
    let hours: Vec<(i64, String, String)> = store
        .usage_hours_of(sub.id)
        .await
        .unwrap()
        .iter()
        .map(|h| {
            (
                (h.hour - T0).whole_hours(),
                h.dimension.clone(),
                h.quantity.to_string(),
            )
        })
        .collect();
    assert_eq!(
        hours,
        vec![
            (0, "api_calls".into(), "10".into()),
            (0, "storage_gb".into(), "1".into()),
            (1, "api_calls".into(), "5".into()),
        ]
    );
}
story!(usage_fold, usage_reaches_its_hours_when_a_claim_folds_it);

/// Requests and claims racing on the same hours (on PostgreSQL, on separate connections): every
/// accepted event ends up in its hour, and no hour takes usage after it was frozen (its sent
/// quantity is its quantity). A fold that met a frozen hour would fail the last fold.
async fn usage_racing_claims_is_never_lost_or_added_after_freezing(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-r", "prod-a"), T0))
        .await
        .unwrap();
    let now = T0 + Duration::hours(6);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, sub) = (store.clone(), sub.clone());
            tokio::spawn(async move {
                let mut accepted = 0u32;
                for i in 0..40 {
                    let at = T0 + Duration::hours((w + i) % 5) + Duration::minutes(i);
                    let units = 1 + (i % 3) as u32;
                    match store
                        .usage_ingest(&[usage_event(&sub, "api_calls", at, units, None)], now)
                        .await
                    {
                        Ok(o) => {
                            assert_eq!(o.accepted, 1);
                            accepted += units;
                        }
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => panic!("ingest: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                accepted
            })
        })
        .collect();
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut claimed = 0;
            for _ in 0..20 {
                let claim = store
                    .usage_claim(now, now, Duration::minutes(5), 2, |_| true)
                    .await
                    .unwrap();
                claimed += claim.hours.len();
                tokio::task::yield_now().await;
            }
            claimed
        })
    };
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.unwrap();
    }
    claimer.await.unwrap();
    store.usage_fold().await.unwrap();
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    let total: i64 = hours.iter().map(|h| h.quantity.micros()).sum();
    assert_eq!(total, i64::from(accepted) * 1_000_000);
    for h in &hours {
        if let Some(sent) = h.sent_quantity {
            assert_eq!(
                sent, h.quantity,
                "hour {} took usage after freezing",
                h.hour
            );
        }
    }
}
story!(
    usage_race,
    usage_racing_claims_is_never_lost_or_added_after_freezing
);

async fn claimed_hours_are_frozen_leased_and_settled_once(store: &Store) {
    use marketlink_store::{UsageHourState, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-2", "prod-a"), T0))
        .await
        .unwrap();
    let now = T0 + Duration::hours(3);
    store
        .usage_ingest(
            &[
                usage_event(&sub, "api_calls", T0, 4, None),
                usage_event(&sub, "api_calls", T0 + Duration::hours(2), 1, None),
            ],
            now,
        )
        .await
        .unwrap();
    // Only the closed hour (10:00, closed through 11:00) is claimed; 12:00 is still open.
    let lease = Duration::minutes(5);
    let claim = store
        .usage_claim(now, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let hour = &claim.hours[0];
    assert_eq!(hour.state, UsageHourState::Sending);
    assert_eq!(
        hour.sent_quantity,
        Some(marketlink_core::Quantity::from_units(4))
    );
    assert_eq!(claim.subscriptions[&sub.id].id, sub.id);
    // A second flusher gets nothing while the lease holds.
    let other = store
        .usage_claim(now, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert!(other.hours.is_empty());
    // Late usage for the frozen hour is refused, and the whole batch with it.
    let late = store
        .usage_ingest(
            &[
                usage_event(
                    &sub,
                    "api_calls",
                    T0 + Duration::hours(2),
                    1,
                    Some("late-ok"),
                ),
                usage_event(
                    &sub,
                    "api_calls",
                    T0 + Duration::minutes(30),
                    1,
                    Some("late"),
                ),
            ],
            now,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(store.usage_event_count(sub.id).await.unwrap(), 2);
    // The holder crashed: after the lease, another flusher takes the identical record over.
    let later = now + lease + Duration::seconds(1);
    let taken = store
        .usage_claim(later, T0 + Duration::hours(1), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(taken.hours.len(), 1);
    assert_eq!(taken.hours[0].id, hour.id);
    assert_eq!(taken.hours[0].attempts, 2);
    assert_eq!(taken.hours[0].sent_quantity, hour.sent_quantity);
    // The first holder's late bookkeeping is refused; the new holder's counts.
    let delivered = |id| {
        vec![(
            id,
            UsageSettlement::Delivered {
                marketplace_id: Some("mr-1".into()),
                outcome: "accepted".into(),
            },
        )]
    };
    assert_eq!(
        store
            .usage_settle(claim.lease_id, &delivered(hour.id), later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .usage_settle(taken.lease_id, &delivered(hour.id), later)
            .await
            .unwrap(),
        1
    );
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(rows[0].state, UsageHourState::Delivered);
    assert_eq!(rows[0].marketplace_record_id.as_deref(), Some("mr-1"));
    // Retry keeps it frozen and due later; dead letters keep the reason.
    let much_later = T0 + Duration::hours(4);
    let claim = store
        .usage_claim(much_later, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(claim.hours.len(), 1);
    let retry_at = much_later + Duration::minutes(1);
    store
        .usage_settle(
            claim.lease_id,
            &[(
                claim.hours[0].id,
                UsageSettlement::Retry {
                    error: "throttled".into(),
                    at: retry_at,
                },
            )],
            much_later,
        )
        .await
        .unwrap();
    let not_yet = store
        .usage_claim(much_later, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert!(not_yet.hours.is_empty());
    let due = store
        .usage_claim(retry_at, T0 + Duration::hours(2), lease, 10, |_| false)
        .await
        .unwrap();
    assert_eq!(due.hours.len(), 1);
    store
        .usage_settle(
            due.lease_id,
            &[(
                due.hours[0].id,
                UsageSettlement::Dead {
                    reason: "InvalidUsageDimension".into(),
                },
            )],
            retry_at,
        )
        .await
        .unwrap();
    let dead = store
        .usage_hours_in(UsageHourState::Dead, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("InvalidUsageDimension"));
    let backlog = store.usage_backlog(T0 + Duration::hours(5)).await.unwrap();
    assert_eq!(backlog.due, 0);
    assert_eq!(backlog.by_state["dead"], 1);
}
story!(
    usage_claims,
    claimed_hours_are_frozen_leased_and_settled_once
);

async fn zero_hours_fill_from_first_sight(store: &Store) {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-3", "prod-a"), T0))
        .await
        .unwrap();
    let dims = vec!["api_calls".to_owned(), "storage_gb".to_owned()];
    // First sight at 10:xx: nothing closed since.
    let created = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            T0,
            T0 - Duration::hours(1),
            T0 - Duration::hours(20),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(created, 0);
    store
        .usage_ingest(
            &[usage_event(
                &sub,
                "api_calls",
                T0 + Duration::hours(1),
                3,
                None,
            )],
            T0,
        )
        .await
        .unwrap();
    // At 13:xx, hours 10, 11 and 12 have closed: zeros wherever no usage was reported.
    let now = T0 + Duration::hours(3);
    let created = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            now,
            T0 + Duration::hours(2),
            T0 - Duration::hours(20),
            now,
        )
        .await
        .unwrap();
    assert_eq!(created, 5);
    let again = store
        .usage_fill_zero_hours(
            sub.id,
            "aws",
            &dims,
            now,
            T0 + Duration::hours(2),
            T0 - Duration::hours(20),
            now,
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(hours.len(), 6);
    let reported: Vec<_> = hours
        .iter()
        .filter(|h| h.quantity != marketlink_core::Quantity::ZERO)
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].quantity.to_string(), "3");
}
story!(usage_zero_hours, zero_hours_fill_from_first_sight);

async fn changed_subscriptions_page_by_time_and_id(store: &Store) {
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

    let first = store.changed_subscriptions(0, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let last = &first[1].0;
    let since = i64::try_from(last.updated_at.unix_timestamp_nanos() / 1_000_000).unwrap();
    let rest = store
        .changed_subscriptions(since, Some(last.id.0), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "the page boundary loses and repeats nothing");
    let mut all: Vec<_> = first.iter().chain(rest.iter()).map(|(s, _)| s.id).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected);
    let with_seats = first
        .iter()
        .chain(rest.iter())
        .find(|(s, _)| s.id == ids[2])
        .unwrap();
    assert_eq!(with_seats.1, vec![seats]);
}
story!(
    changed_subscriptions,
    changed_subscriptions_page_by_time_and_id
);

async fn usage_is_counted_per_hour_for_operators(store: &Store) {
    use marketlink_store::{UsageHourSummary, UsageSettlement};
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref("meter-9", "prod-a"), T0))
        .await
        .unwrap();
    let batch = vec![
        usage_event(&sub, "api_calls", T0, 2, None),
        usage_event(&sub, "storage_gb", T0, 1, None),
        usage_event(&sub, "api_calls", T0 + Duration::hours(1), 1, None),
        usage_event(&sub, "api_calls", T0 - Duration::hours(5), 1, None),
    ];
    store.usage_ingest(&batch, T0).await.unwrap();
    // The two totals of 10:00 are sent: one delivered, one dead.
    let claim = store
        .usage_claim(
            T0 + Duration::hours(2),
            T0,
            Duration::minutes(5),
            10,
            |_| false,
        )
        .await
        .unwrap();
    let at_ten: Vec<_> = claim.hours.iter().filter(|h| h.hour == T0).collect();
    assert_eq!(at_ten.len(), 2);
    let settlements = vec![
        (
            at_ten[0].id,
            UsageSettlement::Delivered {
                marketplace_id: None,
                outcome: "Success".into(),
            },
        ),
        (
            at_ten[1].id,
            UsageSettlement::Dead {
                reason: "refused".into(),
            },
        ),
    ];
    store
        .usage_settle(claim.lease_id, &settlements, T0 + Duration::hours(2))
        .await
        .unwrap();
    let summary = store.usage_by_hour(T0 - Duration::hours(1)).await.unwrap();
    let row = |hour, delivered, waiting, failed| UsageHourSummary {
        hour,
        marketplace: "aws".into(),
        delivered,
        waiting,
        failed,
        skipped: 0,
    };
    // Newest first; 05:00 is before `since`; 11:00 is still open.
    assert_eq!(
        summary,
        vec![row(T0 + Duration::hours(1), 0, 1, 0), row(T0, 1, 0, 1)]
    );
}
story!(usage_by_hour, usage_is_counted_per_hour_for_operators);

// ---- Periodic jobs (ADR 0007) ----

async fn each_periodic_run_goes_to_one_replica(store: &Store) {
    let hour = Duration::hours(1);
    assert!(
        store
            .take_periodic_run("reconcile", T0, hour)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_periodic_run("reconcile", T0, hour)
            .await
            .unwrap()
    );
    let almost = T0 + Duration::minutes(59);
    assert!(
        !store
            .take_periodic_run("reconcile", almost, hour)
            .await
            .unwrap()
    );
    // Another job keeps its own schedule.
    assert!(
        store
            .take_periodic_run("other", almost, hour)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_periodic_run("reconcile", T0 + hour, hour)
            .await
            .unwrap()
    );
    // Replicas asking at once: one of them gets the run.
    let due = T0 + Duration::hours(3);
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_periodic_run("reconcile", due, hour).await })
        })
        .collect();
    let mut taken = 0;
    for asker in askers {
        taken += usize::from(asker.await.unwrap().unwrap());
    }
    assert_eq!(taken, 1);
}
story!(periodic_runs, each_periodic_run_goes_to_one_replica);
