//! When a `sending` hour is due again (ADR 0025): a claim sets its next attempt to its lease's
//! end, so retries and expired leases are both found by time. Claimed again once the lease
//! ends and not a millisecond before; a retry at its time and not before; the claim order
//! stays (hour, id) whichever became due first; and an hour leased the old way (next attempt
//! before the lease's end, as a release before ADR 0025 leaves it) is still left alone.

use marketlink_core::Subscription;
use marketlink_store::{Store, UsageClaim, UsageHour, UsageHourState, UsageSettlement};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{T0, aws_ref, common, story, usage_event};

const LEASE: Duration = Duration::minutes(5);
const MS: Duration = Duration::milliseconds(1);

/// Three closed hours of one subscription (10:00, 11:00, 12:00), folded and open.
async fn three_closed_hours(store: &Store, customer: &str) -> Subscription {
    let sub = store
        .upsert_subscription(&Subscription::pending(aws_ref(customer, "prod-a"), T0))
        .await
        .unwrap();
    let events: Vec<_> = (0..3)
        .map(|h| usage_event(&sub, "api_calls", T0 + Duration::hours(h), 1, None))
        .collect();
    store.usage_ingest(&events, T0).await.unwrap();
    sub
}

async fn claim(store: &Store, now: OffsetDateTime, limit: u32) -> UsageClaim {
    store
        .usage_claim(now, T0 + Duration::hours(2), LEASE, limit, |_| false)
        .await
        .unwrap()
}

/// The hours of a claim, as offsets from T0 in whole hours.
fn hours(claim: &UsageClaim) -> Vec<i64> {
    claim
        .hours
        .iter()
        .map(|h| (h.hour - T0).whole_hours())
        .collect()
}

async fn row(store: &Store, sub: &Subscription, id: Uuid) -> UsageHour {
    let rows = store.usage_hours_of(sub.id).await.unwrap();
    rows.into_iter().find(|r| r.id == id).unwrap()
}

async fn sending_hours_are_due_by_time(store: &Store) {
    let sub = three_closed_hours(store, "meter-due").await;
    let t0 = T0 + Duration::hours(4);
    // Flusher A takes 10:00; the hour is due again when A's lease ends.
    let a = claim(store, t0, 1).await;
    assert_eq!(hours(&a), vec![0]);
    let h10 = a.hours[0].id;
    assert_eq!(a.hours[0].next_attempt_at, t0 + LEASE);
    let stored = row(store, &sub, h10).await;
    assert_eq!(
        (stored.state, stored.next_attempt_at, stored.lease_id),
        (UsageHourState::Sending, t0 + LEASE, Some(a.lease_id))
    );
    // Flusher B, a minute later, takes the open hours and leaves A's.
    let b = claim(store, t0 + Duration::minutes(1), 10).await;
    assert_eq!(hours(&b), vec![1, 2]);
    let (h11, h12) = (b.hours[0].id, b.hours[1].id);
    // 11:00 is throttled (again in a minute), 12:00 delivered.
    let retry_at = t0 + Duration::minutes(2);
    let settled = store
        .usage_settle(
            b.lease_id,
            &[
                (
                    h11,
                    UsageSettlement::Retry {
                        error: "throttled".into(),
                        at: retry_at,
                    },
                ),
                (
                    h12,
                    UsageSettlement::Delivered {
                        marketplace_id: Some("mr-12".into()),
                        outcome: "accepted".into(),
                    },
                ),
            ],
            t0 + Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(settled, 2);
    assert_eq!(row(store, &sub, h11).await.next_attempt_at, retry_at);
    // Nothing before the retry's time, nor before A's lease ends.
    assert!(claim(store, retry_at - MS, 10).await.hours.is_empty());
    // From the retry's time on, 11:00 alone (A's lease still holds); claimed, it too is due
    // again only when its new lease ends.
    let c = claim(store, retry_at, 10).await;
    assert_eq!(hours(&c), vec![1]);
    assert_eq!(c.hours[0].next_attempt_at, retry_at + LEASE);
    assert_eq!(c.hours[0].attempts, 2);
    assert!(claim(store, t0 + LEASE - MS, 10).await.hours.is_empty());
    // A's lease has ended: 10:00 is claimed again, the identical record, by D.
    let d = claim(store, t0 + LEASE, 10).await;
    assert_eq!(hours(&d), vec![0]);
    assert_eq!(d.hours[0].id, h10);
    assert_eq!(d.hours[0].attempts, 2);
    assert_eq!(d.hours[0].sent_quantity, a.hours[0].sent_quantity);
    // A's late bookkeeping is refused.
    let delivered = UsageSettlement::Delivered {
        marketplace_id: Some("mr-10".into()),
        outcome: "accepted".into(),
    };
    let late = store
        .usage_settle(a.lease_id, &[(h10, delivered.clone())], t0 + LEASE)
        .await
        .unwrap();
    assert_eq!(late, 0);
    // Both leases run out unsettled: the older hour goes first, though 11:00 was due first.
    let both = t0 + LEASE + LEASE;
    assert!(retry_at + LEASE < both);
    let first = claim(store, both, 1).await;
    assert_eq!(hours(&first), vec![0]);
    let second = claim(store, both, 1).await;
    assert_eq!(hours(&second), vec![1]);
    assert!(claim(store, both, 10).await.hours.is_empty());
    let backlog = store.usage_backlog(T0 + Duration::hours(2)).await.unwrap();
    assert_eq!((backlog.due, backlog.by_state["delivered"]), (2, 1));
}
story!(usage_due_by_time, sending_hours_are_due_by_time);

/// A requeued dead hour is due at once, and a claim of several flushers at once (on
/// PostgreSQL, separate connections) hands each due hour to one of them.
async fn requeued_and_concurrent_claims(store: &Store) {
    let sub = three_closed_hours(store, "meter-due-2").await;
    let now = T0 + Duration::hours(4);
    let first = claim(store, now, 1).await;
    let dead = first.hours[0].id;
    store
        .usage_settle(
            first.lease_id,
            &[(
                dead,
                UsageSettlement::Dead {
                    reason: "refused".into(),
                },
            )],
            now,
        )
        .await
        .unwrap();
    let requeued_at = now + Duration::minutes(1);
    store.usage_requeue(dead, requeued_at).await.unwrap();
    // The requeued hour and the two open ones, to three flushers claiming at once.
    let later = requeued_at + MS;
    let (x, y, z) = tokio::join!(
        claim(store, later, 1),
        claim(store, later, 1),
        claim(store, later, 1)
    );
    let mut claimed: Vec<i64> = [&x, &y, &z].iter().flat_map(|c| hours(c)).collect();
    claimed.sort_unstable();
    assert_eq!(claimed, vec![0, 1, 2]);
    let again = row(store, &sub, dead).await;
    assert_eq!(again.state, UsageHourState::Sending);
    assert_eq!(again.next_attempt_at, later + LEASE);
    assert!(claim(store, later + LEASE - MS, 10).await.hours.is_empty());
    assert_eq!(hours(&claim(store, later + LEASE, 10).await), vec![0, 1, 2]);
}
story!(
    usage_due_requeued_and_concurrent,
    requeued_and_concurrent_claims
);

/// An hour leased by a release before ADR 0025 (during a rolling upgrade): its next attempt is
/// earlier than its lease's end. It is not claimed until the lease ends.
async fn a_lease_of_the_previous_release_holds(db: &common::TestDb) {
    let store = &db.store;
    let sub = three_closed_hours(store, "meter-due-3").await;
    let now = T0 + Duration::hours(4);
    let held = claim(store, now, 1).await;
    let id = held.hours[0].id;
    // What the previous release's claim left: the next attempt where it was (the fold's time).
    let sql = "UPDATE usage_hours SET next_attempt_at = $1 WHERE id = $2";
    let before = (T0 - Duration::hours(1)).unix_timestamp() * 1000;
    if db.url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let done = sqlx::query(sql).bind(before).bind(id).execute(&mut conn);
        assert_eq!(done.await.unwrap().rows_affected(), 1);
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let done = sqlx::query(sql).bind(before).bind(id).execute(&mut conn);
        assert_eq!(done.await.unwrap().rows_affected(), 1);
    }
    assert_eq!(hours(&claim(store, now + LEASE - MS, 10).await), vec![1, 2]);
    assert!(claim(store, now + LEASE - MS, 10).await.hours.is_empty());
    let taken = claim(store, now + LEASE, 10).await;
    assert_eq!(hours(&taken), vec![0]);
    assert_eq!(taken.hours[0].next_attempt_at, now + LEASE + LEASE);
    assert_eq!(row(store, &sub, id).await.lease_id, Some(taken.lease_id));
}

mod usage_due_previous_release_lease {
    #[tokio::test]
    async fn sqlite() {
        let db = crate::common::sqlite().await;
        super::a_lease_of_the_previous_release_holds(&db).await;
        db.destroy().await;
    }

    #[tokio::test]
    async fn postgres() {
        if let Some(db) = crate::common::postgres().await {
            super::a_lease_of_the_previous_release_holds(&db).await;
            db.destroy().await;
        }
    }
}
