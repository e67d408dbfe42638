//! Capped hours: where a marketplace takes at most so much for one hour (AWS: a record's
//! `Quantity` is at most 2,147,483,647), ingest keeps the hour's accepted total in
//! `usage_capped_hours` and refuses a batch that would take an hour past its cap, in the
//! batch's own transaction. The ledger alone cannot answer "how much has this hour taken"
//! cheaply: its events are summed only when a claim folds them (ADR 0010).
//!
//! Concurrent requests for one hour take turns on its row: on SQLite the writer is single; on
//! PostgreSQL the upsert locks the row until its transaction ends, and the next upsert adds to
//! the committed total. So of two requests that together pass the cap, the second is refused.
//! A group commit that holds several batches locks all its capped hours first, in key order
//! ([`postgres_lock`]), so two groups never wait for each other in a circle.
//!
//! Only events with a cap (`NewUsageEvent::hour_cap`) are counted; other marketplaces' usage
//! never touches the table.
//!
//! The cost is the turn-taking ADR 0010 removed from the totals: requests for the same hours
//! wait for each other's commit. On the metering benchmark with every batch capped (each batch
//! touches the same few hundred hours; one run each, release build, shared 2-core machine),
//! SQLite went from 66k to 60k events/s with one client and 79k to 61k with four; PostgreSQL
//! from 48k to 42k with one client and 88k to 27k with four. Requests for different
//! subscriptions or hours do not wait for each other.

use std::collections::BTreeMap;

use sqlx::{PgConnection, SqliteConnection};
use uuid::Uuid;

use super::types::NewUsageEvent;
use crate::{
    StoreError,
    bind_lists::{anonymous_rows, array_column, sqlite_chunks},
    from_millis, millis,
};

/// One capped hour a batch adds to: `(subscription, dimension, hour in ms)`, then the
/// batch's addition and the cap, both in micro-units.
type Capped<'a> = ((Uuid, &'a str, i64), (i64, i64));

/// The capped hours of `events` with what they add, in key order. A batch that alone goes past
/// an hour's cap is refused here, before any statement.
fn capped<'a>(
    events: impl Iterator<Item = &'a NewUsageEvent>,
) -> Result<Vec<Capped<'a>>, StoreError> {
    let mut hours: BTreeMap<(Uuid, &str, i64), (i64, i64)> = BTreeMap::new();
    for event in events {
        let Some(cap) = event.hour_cap else { continue };
        let key = (
            event.subscription_id.0,
            event.dimension.as_str(),
            millis(event.hour),
        );
        let (added, hour_cap) = hours.entry(key).or_insert((0, cap.micros()));
        *added = added.saturating_add(event.quantity.micros());
        *hour_cap = (*hour_cap).min(cap.micros());
    }
    if let Some(((sub, dimension, hour), (added, cap))) =
        hours.iter().find(|(_, (added, cap))| added > cap)
    {
        return Err(over_cap(*sub, dimension, *hour, 0, *added, *cap));
    }
    Ok(hours.into_iter().collect())
}

fn over_cap(
    subscription: Uuid,
    dimension: &str,
    hour: i64,
    accepted: i64,
    adding: i64,
    cap: i64,
) -> StoreError {
    match from_millis(hour) {
        Ok(hour) => StoreError::HourCapExceeded {
            subscription_id: subscription,
            dimension: dimension.to_owned(),
            hour,
            accepted_micros: accepted,
            adding_micros: adding,
            cap_micros: cap,
        },
        Err(e) => e,
    }
}

/// The upsert that adds to a capped hour (and takes the latest cap).
const ADD: &str = " ON CONFLICT (subscription_id, dimension, hour) DO UPDATE SET \
    quantity_micros = usage_capped_hours.quantity_micros + excluded.quantity_micros, \
    cap_micros = excluded.cap_micros";

const INSERT: &str = "INSERT INTO usage_capped_hours \
    (subscription_id, dimension, hour, quantity_micros, cap_micros) ";

/// Adds the capped hours of the stored `events` on SQLite, inside the batch's transaction;
/// refuses with [`StoreError::HourCapExceeded`] if one went past its cap.
pub(super) async fn sqlite_add(
    tx: &mut SqliteConnection,
    events: &[&NewUsageEvent],
) -> Result<(), StoreError> {
    let hours = capped(events.iter().copied())?;
    for chunk in sqlite_chunks(&hours) {
        let sql = anonymous_rows(
            &format!("{INSERT} VALUES "),
            "(?,?,?,?,?)",
            chunk.len(),
            ADD,
        );
        let mut query = sqlx::query(&sql);
        for ((sub, dimension, hour), (added, cap)) in chunk {
            query = query
                .bind(*sub)
                .bind(*dimension)
                .bind(*hour)
                .bind(*added)
                .bind(*cap);
        }
        query.execute(&mut *tx).await?;
        // Nothing comes back unless an hour went past its cap.
        let sql = anonymous_rows(
            "SELECT subscription_id, dimension, hour, quantity_micros, cap_micros \
             FROM usage_capped_hours WHERE quantity_micros > cap_micros \
             AND (subscription_id, dimension, hour) IN (VALUES ",
            "(?,?,?)",
            chunk.len(),
            ") LIMIT 1",
        );
        let mut query = sqlx::query_as::<_, (Uuid, String, i64, i64, i64)>(&sql);
        for ((sub, dimension, hour), _) in chunk {
            query = query.bind(*sub).bind(*dimension).bind(*hour);
        }
        if let Some(over) = query.fetch_optional(&mut *tx).await? {
            return Err(refusal(chunk, over));
        }
    }
    Ok(())
}

/// Adds the capped hours of the stored `events` on PostgreSQL, inside the batch's transaction
/// (or savepoint); refuses with [`StoreError::HourCapExceeded`] if one went past its cap. One
/// statement: the upsert, and only a row past its cap comes back.
pub(super) async fn postgres_add(
    tx: &mut PgConnection,
    events: &[&NewUsageEvent],
) -> Result<(), StoreError> {
    let hours = capped(events.iter().copied())?;
    if hours.is_empty() {
        return Ok(());
    }
    let over: Option<(Uuid, String, i64, i64, i64)> = sqlx::query_as(&format!(
        "WITH added AS ({INSERT} SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], \
         $4::int8[], $5::int8[]) {ADD} \
         RETURNING subscription_id, dimension, hour, quantity_micros, cap_micros) \
         SELECT * FROM added WHERE quantity_micros > cap_micros LIMIT 1"
    ))
    .bind(array_column(&hours, |((sub, _, _), _)| *sub))
    .bind(array_column(&hours, |((_, dim, _), _)| *dim))
    .bind(array_column(&hours, |((_, _, hour), _)| *hour))
    .bind(array_column(&hours, |(_, (added, _))| *added))
    .bind(array_column(&hours, |(_, (_, cap))| *cap))
    .fetch_optional(&mut *tx)
    .await?;
    match over {
        Some(over) => Err(refusal(&hours, over)),
        None => Ok(()),
    }
}

/// The refusal for the hour read back past its cap; what was accepted before is its total less
/// this batch's addition.
fn refusal(
    hours: &[Capped<'_>],
    (sub, dimension, hour, total, cap): (Uuid, String, i64, i64, i64),
) -> StoreError {
    let adding = hours
        .iter()
        .find(|((s, d, h), _)| *s == sub && *d == dimension && *h == hour)
        .map_or(0, |(_, (added, _))| *added);
    over_cap(sub, &dimension, hour, total - adding, adding, cap)
}

/// Locks every capped hour of a group's batches, in key order, before the batches run
/// (PostgreSQL): each batch's own upsert locks its hours in order, but a group holds several
/// batches, and two groups taking the same hours batch by batch could wait on each other. A
/// row is created at zero if new; all of this is rolled back with the group.
pub(super) async fn postgres_lock<'a>(
    tx: &mut PgConnection,
    batches: impl Iterator<Item = &'a [NewUsageEvent]>,
) -> Result<(), StoreError> {
    let mut keys: BTreeMap<(Uuid, &str, i64), i64> = BTreeMap::new();
    for event in batches.flatten() {
        if let Some(cap) = event.hour_cap {
            keys.entry((
                event.subscription_id.0,
                event.dimension.as_str(),
                millis(event.hour),
            ))
            .or_insert(cap.micros());
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<((Uuid, &str, i64), i64)> = keys.into_iter().collect();
    sqlx::query(&format!(
        "{INSERT} SELECT sub, dim, hour, 0, cap FROM UNNEST($1::uuid[], $2::text[], $3::int8[], \
         $4::int8[]) AS k (sub, dim, hour, cap) ORDER BY sub, dim COLLATE \"C\", hour \
         ON CONFLICT (subscription_id, dimension, hour) DO UPDATE \
         SET quantity_micros = usage_capped_hours.quantity_micros"
    ))
    .bind(array_column(&keys, |((sub, _, _), _)| *sub))
    .bind(array_column(&keys, |((_, dim, _), _)| *dim))
    .bind(array_column(&keys, |((_, _, hour), _)| *hour))
    .bind(array_column(&keys, |(_, cap)| *cap))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
