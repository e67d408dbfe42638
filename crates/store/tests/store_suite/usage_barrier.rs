//! The PostgreSQL claim's barrier (ADR 0026): a claim marks its hours before it folds the last
//! events and freezes them, so it must wait for the requests that were inserting meanwhile;
//! and a claim that died between the two is taken over whole. Both reach the database
//! beside the store (a request held open, a claimer that stopped), so PostgreSQL only: SQLite
//! claims under its single writer lock and has no such window.

use marketlink_core::{Quantity, Subscription};
use marketlink_store::{Store, StoreError, UsageHourState};
use sqlx::{Connection, Executor, PgConnection};
use time::{Duration, OffsetDateTime};

use crate::{T0, aws_ref, common, usage_event};

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Waits up to 5 s until `n` sessions of the database wait for a lock.
async fn lock_waiters(probe: &mut PgConnection, n: i64) -> bool {
    for _ in 0..250 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *probe)
        .await
        .unwrap();
        if waiting >= n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

async fn subscription(store: &Store, customer: &str) -> Subscription {
    store
        .upsert_subscription(&Subscription::pending(aws_ref(customer, "prod-a"), T0))
        .await
        .unwrap()
}

/// A request inserts usage for an open hour and passes its frozen-hour check; before it
/// commits, a claim marks the hour. The claim must wait for it at its barrier and freeze the
/// hour with that usage in it; without the barrier it would freeze the hour short and the
/// accepted usage would reach it afterwards (a later fold fails on it).
#[tokio::test]
async fn a_request_in_flight_across_the_mark_is_in_the_frozen_hour() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let store = &db.store;
    let sub = subscription(store, "barrier").await;
    let now = T0 + Duration::hours(2);
    store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 1, None)], now)
        .await
        .unwrap();
    store.usage_fold().await.unwrap();
    let connect = || PgConnection::connect(&db.url);
    let (mut folds, mut request, mut probe) = (
        connect().await.unwrap(),
        connect().await.unwrap(),
        connect().await.unwrap(),
    );
    // Hold the claim after its first barrier: its fold waits for the fold row.
    folds.execute("BEGIN").await.unwrap();
    folds
        .execute("SELECT 1 FROM usage_fold WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let claim = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .usage_claim(now, now, Duration::minutes(5), 10, |_| true)
                .await
        }
    });
    assert!(lock_waiters(&mut probe, 1).await, "the claim never waited");
    // The request: its events, then its check, which finds 10:00 open.
    request.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO usage_events (id, subscription_id, dimension, hour, occurred_at, \
         quantity_micros, received_at) VALUES ($1, $2, 'api_calls', $3, $3, 5000000, $4)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(sub.id.0)
    .bind(millis(T0))
    .bind(millis(now))
    .execute(&mut request)
    .await
    .unwrap();
    let frozen: Option<String> = sqlx::query_scalar(
        "SELECT state FROM usage_hours WHERE subscription_id = $1 AND hour = $2 \
         AND state NOT IN ('open', 'mismatch')",
    )
    .bind(sub.id.0)
    .bind(millis(T0))
    .fetch_optional(&mut request)
    .await
    .unwrap();
    assert_eq!(frozen, None);
    // The claim marks 10:00, then waits for the request at its barrier.
    folds.execute("COMMIT").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        lock_waiters(&mut probe, 1).await && !claim.is_finished(),
        "the claim did not wait for the request in flight"
    );
    request.execute("COMMIT").await.unwrap();
    let claim = claim.await.unwrap().unwrap();
    let six = Some(Quantity::from_units(6));
    let claimed: Vec<_> = claim
        .hours
        .iter()
        .map(|h| (Some(h.quantity), h.sent_quantity))
        .collect();
    assert_eq!(
        claimed,
        vec![(six, six)],
        "frozen without the request's usage"
    );
    // Nothing is left over for a later fold to add to the frozen hour.
    assert_eq!(store.usage_fold().await.unwrap(), 0);
    let hours = store.usage_hours_of(sub.id).await.unwrap();
    assert_eq!(
        (Some(hours[0].quantity), hours[0].sent_quantity),
        (six, six)
    );
    db.destroy().await;
}

/// A claimer died after marking an hour and before freezing it. Requests for the hour are
/// refused from the mark on; a fold still adds what was accepted before it; once the lease
/// runs out, the next claim takes the hour and freezes it with all of it, and a fold then
/// treats it as frozen.
#[tokio::test]
async fn an_hour_marked_by_a_claimer_that_died_is_claimed_again_and_frozen_whole() {
    let Some(db) = common::postgres().await else {
        return;
    };
    let store = &db.store;
    let sub = subscription(store, "died").await;
    let now = T0 + Duration::hours(2);
    store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 2, None)], now)
        .await
        .unwrap();
    store.usage_fold().await.unwrap();
    // Accepted before the mark, not folded yet.
    store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 3, None)], now)
        .await
        .unwrap();
    // The dead claimer's mark: sending under its lease for a minute (due again then), the
    // lease listed as pending; then it stopped.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let (lease, until) = (uuid::Uuid::now_v7(), millis(now + Duration::minutes(1)));
    sqlx::query(
        "UPDATE usage_hours SET state = 'sending', lease_id = $1, locked_until = $2, \
         next_attempt_at = $2, attempts = attempts + 1, first_sent_at = $3, updated_at = $3, \
         sent_quantity_micros = quantity_micros WHERE subscription_id = $4",
    )
    .bind(lease)
    .bind(until)
    .bind(millis(now))
    .bind(sub.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO usage_pending_claims (lease_id, locked_until) VALUES ($1, $2)")
        .bind(lease)
        .bind(until)
        .execute(&mut conn)
        .await
        .unwrap();
    let late = store
        .usage_ingest(&[usage_event(&sub, "api_calls", T0, 7, None)], now)
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    // A reader's fold adds the accepted usage to the marked hour, still pending.
    assert_eq!(store.usage_fold().await.unwrap(), 1);
    let hour = &store.usage_hours_of(sub.id).await.unwrap()[0];
    assert_eq!(hour.state, UsageHourState::Sending);
    let five = Some(Quantity::from_units(5));
    assert_eq!((Some(hour.quantity), hour.sent_quantity), (five, five));
    let lease = Duration::minutes(5);
    let held = store
        .usage_claim(now, now, lease, 10, |_| true)
        .await
        .unwrap();
    assert!(held.hours.is_empty(), "taken while the lease held");
    let later = now + Duration::minutes(2);
    let taken = store
        .usage_claim(later, later, lease, 10, |_| true)
        .await
        .unwrap();
    let claimed: Vec<_> = taken
        .hours
        .iter()
        .map(|h| (Some(h.quantity), h.sent_quantity, h.attempts))
        .collect();
    assert_eq!(claimed, vec![(five, five, 2)]);
    // Frozen now: usage that reached it anyway would be refused loudly by a fold.
    sqlx::query(
        "INSERT INTO usage_events (id, subscription_id, dimension, hour, occurred_at, \
         quantity_micros, received_at) VALUES ($1, $2, 'api_calls', $3, $3, 1000000, $3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(sub.id.0)
    .bind(millis(T0))
    .execute(&mut conn)
    .await
    .unwrap();
    let broken = store.usage_fold().await;
    assert!(matches!(broken, Err(StoreError::Corrupt(_))), "{broken:?}");
    db.destroy().await;
}
