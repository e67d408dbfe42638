//! A subscription's other names (aliases) and its licence, and its lifecycle in time: names
//! never move to another subscription, repeats are no-ops, and older statements are stale.

use marketlink_core::{
    Alias, Lifecycle, Marketplace, Subscription, SubscriptionStatus, Transition,
};
use marketlink_store::{Backend, LicenseChange, Store, StoreError, TimelineEntry};
use sqlx::migrate::Migrator;
use time::Duration;

use crate::{T0, aws_ref, common::TestDb, story};

async fn stored(store: &Store, customer: &str) -> Subscription {
    store
        .upsert_subscription(&Subscription::pending(aws_ref(customer, "prod-a"), T0))
        .await
        .unwrap()
}

async fn names_never_move_and_repeats_are_no_ops(store: &Store) {
    let aws = Marketplace::AWS;
    let (s1, s2) = (stored(store, "cust-a").await, stored(store, "cust-b").await);
    let agreement = Alias::new("agreement", "agmt-1");
    let licence = Alias::new("license", "arn:aws:license-manager::1:license/l-1");
    store
        .record_aliases(s1.id, &aws, &[agreement.clone(), licence.clone()], T0)
        .await
        .unwrap();
    for alias in [&agreement, &licence] {
        let found = store.find_subscription_by_alias(&aws, alias).await.unwrap();
        assert_eq!(found.map(|s| s.id), Some(s1.id), "{alias:?}");
    }
    // The same names again (a redelivered message): nothing new.
    store
        .record_aliases(
            s1.id,
            &aws,
            &[licence.clone(), agreement.clone()],
            T0 + Duration::hours(1),
        )
        .await
        .unwrap();
    // Another subscription claiming s1's agreement does not take it; its own name is kept.
    let renewal = Alias::new("agreement", "agmt-2");
    store
        .record_aliases(
            s2.id,
            &aws,
            &[agreement.clone(), renewal.clone()],
            T0 + Duration::hours(2),
        )
        .await
        .unwrap();
    let marketplace = &aws;
    let owner = |alias: Alias| async move {
        store
            .find_subscription_by_alias(marketplace, &alias)
            .await
            .unwrap()
            .map(|s| s.id)
    };
    assert_eq!(owner(agreement.clone()).await, Some(s1.id));
    assert_eq!(owner(renewal.clone()).await, Some(s2.id));
    assert_eq!(owner(Alias::new("agreement", "agmt-unknown")).await, None);
    // The kind is part of the name, and so is the marketplace.
    assert_eq!(owner(Alias::new("license", "agmt-1")).await, None);
    assert!(
        store
            .find_subscription_by_alias(&Marketplace::AZURE, &agreement)
            .await
            .unwrap()
            .is_none()
    );
    // Each subscription lists its own names, oldest first.
    let later = Alias::new("agreement", "agmt-0-renewed-later");
    store
        .record_aliases(
            s1.id,
            &aws,
            std::slice::from_ref(&later),
            T0 + Duration::hours(3),
        )
        .await
        .unwrap();
    assert_eq!(
        store.subscription_aliases(s1.id).await.unwrap(),
        vec![agreement, licence, later]
    );
    assert_eq!(
        store.subscription_aliases(s2.id).await.unwrap(),
        vec![renewal]
    );
    // A subscription we do not have cannot be given names.
    let missing = store
        .record_aliases(
            marketlink_core::SubscriptionId::new(),
            &aws,
            &[Alias::new("agreement", "agmt-9")],
            T0,
        )
        .await;
    assert!(missing.is_err(), "{missing:?}");
}
story!(alias_names, names_never_move_and_repeats_are_no_ops);

async fn a_licence_moves_forward_once(store: &Store) {
    let sub = stored(store, "cust-l").await;
    let at = |h: i64| T0 + Duration::hours(h);
    let set = |arn: &'static str, h: i64| async move {
        store
            .set_license_arn(sub.id, arn, at(h), at(h) + Duration::minutes(1))
            .await
            .unwrap()
    };
    assert_eq!(set("arn-2", 2).await, LicenseChange::Changed);
    let moved = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(moved.external.license_arn.as_deref(), Some("arn-2"));
    assert_eq!(
        moved.updated_at,
        at(2) + Duration::minutes(1),
        "readers see the change"
    );
    assert_eq!(moved.external.external_id, sub.external.external_id);
    assert_eq!(set("arn-2", 2).await, LicenseChange::Unchanged);
    assert_eq!(set("arn-2", 5).await, LicenseChange::Unchanged);
    // A late copy of an older renewal never moves it back.
    assert_eq!(set("arn-1", 1).await, LicenseChange::Stale);
    assert_eq!(set("arn-3", 4).await, LicenseChange::Changed);
    assert_eq!(set("arn-2", 3).await, LicenseChange::Stale);
    let now = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(now.external.license_arn.as_deref(), Some("arn-3"));
    let missing = store
        .set_license_arn(marketlink_core::SubscriptionId::new(), "arn", T0, T0)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}
story!(licence, a_licence_moves_forward_once);

async fn lifecycle_events_apply_in_marketplace_time(store: &Store) {
    use Lifecycle::*;
    use SubscriptionStatus::*;
    let sub = stored(store, "cust-t").await;
    let at = |h: i64| T0 + Duration::hours(h);
    let apply = |event: Lifecycle, h: i64| async move {
        store
            .apply_lifecycle_at(sub.id, event, at(h), at(h) + Duration::minutes(1))
            .await
            .map(|(s, t)| (s.status, t))
    };
    let changed = |from, to| Transition::Changed { from, to };
    assert_eq!(
        apply(Activate, 1).await.unwrap(),
        (Active, changed(Pending, Active))
    );
    assert_eq!(
        apply(Cancel, 3).await.unwrap(),
        (Cancelled, changed(Active, Cancelled))
    );
    // Out of order: older than the cancellation, so stale, whatever it says.
    assert_eq!(
        apply(Activate, 1).await.unwrap(),
        (Cancelled, Transition::Stale(Cancelled))
    );
    assert_eq!(
        apply(BeginCancel, 2).await.unwrap(),
        (Cancelled, Transition::Stale(Cancelled))
    );
    // A repeat of the current state, however old, is a no-op.
    assert_eq!(
        apply(Cancel, 0).await.unwrap(),
        (Cancelled, Transition::Unchanged(Cancelled))
    );
    // At the cancellation's own instant an activation proves nothing: refused.
    assert!(matches!(
        apply(Activate, 3).await,
        Err(StoreError::Domain(_))
    ));
    // Newer: the buyer subscribed again.
    let (status, transition) = apply(Activate, 4).await.unwrap();
    assert_eq!((status, transition), (Active, changed(Cancelled, Active)));
    assert!(transition.is_resubscription());
    let back = store.get_subscription(sub.id).await.unwrap();
    assert_eq!(
        (back.status, back.updated_at),
        (Active, at(4) + Duration::minutes(1))
    );
    // Our own changes (no marketplace time) are dated by our clock, and order with the rest.
    let (_, ours) = store.apply_lifecycle(sub.id, Suspend, at(6)).await.unwrap();
    assert_eq!(ours, changed(Active, Suspended));
    assert_eq!(
        apply(Reinstate, 5).await.unwrap(),
        (Suspended, Transition::Stale(Suspended))
    );
}
story!(
    lifecycle_in_time,
    lifecycle_events_apply_in_marketplace_time
);

async fn a_resubscription_resumes_zero_hours_where_it_starts(store: &Store) {
    let sub = stored(store, "cust-z").await;
    let dims = &["api_calls".to_owned()][..];
    let at = |h: i64| T0 + Duration::hours(h);
    let fill = |through: i64| async move {
        store
            .usage_fill_zero_hours(
                sub.id,
                "aws",
                dims,
                at(0),
                at(through),
                at(0),
                at(through + 1),
            )
            .await
            .unwrap()
    };
    assert_eq!(fill(2).await, 3);
    store.usage_resume_zero_fill(sub.id, at(6)).await.unwrap();
    assert_eq!(fill(7).await, 2, "hours 6 and 7 only");
    // Never back.
    store.usage_resume_zero_fill(sub.id, at(1)).await.unwrap();
    assert_eq!(fill(8).await, 1);
    let hours: Vec<_> = store
        .usage_hours_of(sub.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.hour)
        .collect();
    assert_eq!(hours, vec![at(0), at(1), at(2), at(6), at(7), at(8)]);
}
story!(
    zero_fill_resumes,
    a_resubscription_resumes_zero_hours_where_it_starts
);

/// The migration that adds the lifecycle and licence times fills them in for existing
/// subscriptions from their timeline (applied events only), so a cancelled subscription is not
/// revived by a late copy of its first activation after an upgrade.
async fn existing_subscriptions_get_their_times_from_the_timeline(db: &TestDb) {
    use sqlx::Connection;
    let store = &db.store;
    let dialect = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let mut before = Migrator::new(std::path::Path::new(&format!("../../migrations/{dialect}")))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < LIFECYCLE_TIMES)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let cancel = "UPDATE subscriptions SET status = 'cancelled'";
    let sub = match store.backend() {
        Backend::Sqlite => {
            let mut raw = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            before.run(&mut raw).await.unwrap();
            let sub = stored(store, "cust-m").await;
            sqlx::query(cancel).execute(&mut raw).await.unwrap();
            sub
        }
        Backend::Postgres => {
            let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
            before.run(&mut raw).await.unwrap();
            let sub = stored(store, "cust-m").await;
            sqlx::query(cancel).execute(&mut raw).await.unwrap();
            sub
        }
    };
    let at = |h: i64| T0 + Duration::hours(h);
    for (kind, outcome, h) in [
        ("lifecycle:activate", "applied", 1),
        ("relicensed", "applied", 2),
        ("lifecycle:cancel", "applied", 3),
        ("lifecycle:activate", "refused: cannot activate", 5),
    ] {
        store
            .record_timeline(&TimelineEntry {
                id: uuid::Uuid::now_v7(),
                subscription_id: sub.id,
                source: "inbox:1".into(),
                kind: kind.into(),
                outcome: outcome.into(),
                detail: serde_json::json!({}),
                occurred_at: at(h),
                recorded_at: at(h),
            })
            .await
            .unwrap();
    }
    store.migrate().await.unwrap();
    let apply = |h: i64| store.apply_lifecycle_at(sub.id, Lifecycle::Activate, at(h), at(h));
    let (_, late) = apply(2).await.unwrap();
    assert_eq!(late, Transition::Stale(SubscriptionStatus::Cancelled));
    let (_, again) = apply(4).await.unwrap();
    assert!(again.is_resubscription(), "{again:?}");
    let old = store.set_license_arn(sub.id, "arn-old", at(1), at(6)).await;
    assert_eq!(old.unwrap(), LicenseChange::Stale);
}

const LIFECYCLE_TIMES: i64 = 20261207000050;

#[tokio::test]
async fn lifecycle_times_are_backfilled_on_sqlite() {
    let db = crate::common::sqlite_unmigrated().await;
    existing_subscriptions_get_their_times_from_the_timeline(&db).await;
    db.destroy().await;
}

#[tokio::test]
async fn lifecycle_times_are_backfilled_on_postgres() {
    if let Some(db) = crate::common::postgres_unmigrated().await {
        existing_subscriptions_get_their_times_from_the_timeline(&db).await;
        db.destroy().await;
    }
}
