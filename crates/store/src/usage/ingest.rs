//! Usage ingest (ADR 0005, 0010): a batch of events is appended to the ledger
//! (`usage_events`) in one transaction, all or nothing, after checking that none of its hours
//! has been claimed for sending. The events reach their hourly totals when the next claim
//! folds them ([`super::fold`]).
//!
//! The statements are shaped per backend for throughput (ADR 0008): PostgreSQL takes a whole
//! batch as one `INSERT … SELECT FROM UNNEST(arrays)` per table, one bind per column, so its
//! plan is prepared once whatever the batch size; SQLite takes multi-row `VALUES` lists with
//! anonymous `?` parameters (a `$N` parameter is looked up by name, a cost that grows with the
//! statement's width), in a few fixed widths so that the statement cache serves every batch.

use std::collections::{BTreeSet, HashSet};

use sqlx::{Arguments, PgConnection, SqliteConnection, sqlite::SqliteArguments};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    cap,
    fold::{REOPENS, hour_already_sent},
    types::{IngestOutcome, NewUsageEvent},
};
use crate::{
    Pool, Store, StoreError,
    bind_lists::{anonymous_rows, array_column, sqlite_chunks},
    millis,
};

/// Up to this many events a statement, SQLite ingest reads the new ids back directly; wider
/// statements are counted instead (see [`sqlite_batch`]).
const READ_BACK_ROWS: usize = 16;

const EVENT_COLUMNS: &str = "id, subscription_id, dimension, hour, occurred_at, quantity_micros, \
    idempotency_key, allocations, received_at";

/// The distinct hours of the events that were stored (not duplicates), in key order.
fn hours_of<'a>(stored: impl Iterator<Item = &'a NewUsageEvent>) -> Vec<(Uuid, &'a str, i64)> {
    let hours: BTreeSet<(Uuid, &str, i64)> = stored
        .map(|e| (e.subscription_id.0, e.dimension.as_str(), millis(e.hour)))
        .collect();
    hours.into_iter().collect()
}

fn allocations_json(event: &NewUsageEvent) -> Option<String> {
    (!event.allocations.is_empty())
        .then(|| serde_json::to_string(&event.allocations).unwrap_or_default())
}

/// One batch on SQLite, inside the open transaction or savepoint `tx`. No statement returns
/// rows on the usual path: the driver hands each returned row from its worker thread to the
/// caller one message at a time, which cost more than the inserts themselves. Row counts tell
/// whether anything was a duplicate or frozen; only then is a chunk of events written again
/// (from a savepoint) returning the new ones, or the frozen hours looked up.
async fn sqlite_batch(
    tx: &mut SqliteConnection,
    events: &[NewUsageEvent],
    now: OffsetDateTime,
) -> Result<IngestOutcome, StoreError> {
    let now_ms = millis(now);
    // 1. The raw events; a known idempotency key inserts nothing.
    let mut stored: Vec<&NewUsageEvent> = Vec::with_capacity(events.len());
    for chunk in sqlite_chunks(events) {
        if chunk.len() <= READ_BACK_ROWS {
            // A few rows: reading them back costs less than two more statements.
            stored.extend(sqlite_insert_new_events(tx, chunk, now_ms).await?);
            continue;
        }
        sqlx::query("SAVEPOINT usage_events_chunk")
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query_with(
            &sqlite_events_insert(chunk.len(), ""),
            sqlite_event_args(chunk, now_ms)?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == chunk.len() as u64 {
            stored.extend(chunk);
        } else {
            // Some were known: write the chunk again, this time told which rows were new.
            sqlx::query("ROLLBACK TO usage_events_chunk")
                .execute(&mut *tx)
                .await?;
            stored.extend(sqlite_insert_new_events(tx, chunk, now_ms).await?);
        }
        sqlx::query("RELEASE usage_events_chunk")
            .execute(&mut *tx)
            .await?;
    }
    // 2. None of their hours may have been claimed for sending (frozen), unless the
    // marketplace refused it as another quantity (it reopens). Nothing comes back
    // unless one has: `|| ''` keeps SQLite on the key index, off the state one.
    let hours = hours_of(stored.iter().copied());
    for chunk in sqlite_chunks(&hours) {
        let sql = anonymous_rows(
            &format!(
                "SELECT dimension, hour FROM usage_hours WHERE state || '' NOT IN ('open', \
                 {REOPENS}) AND (subscription_id, dimension, hour) IN (VALUES "
            ),
            "(?,?,?)",
            chunk.len(),
            ") LIMIT 1",
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for (sub, dimension, hour) in chunk {
            query = query.bind(*sub).bind(*dimension).bind(*hour);
        }
        if let Some((dimension, hour)) = query.fetch_optional(&mut *tx).await? {
            return Err(hour_already_sent(&dimension, hour));
        }
    }
    // 3. No capped hour may go past its cap.
    cap::sqlite_add(tx, &stored).await?;
    Ok(IngestOutcome {
        accepted: stored.len(),
        duplicates: events.len() - stored.len(),
    })
}

/// The multi-row insert of `rows` events, skipping known ones, then `returning`.
fn sqlite_events_insert(rows: usize, returning: &str) -> String {
    anonymous_rows(
        &format!("INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES "),
        "(?,?,?,?,?,?,?,?,?)",
        rows,
        &format!(" ON CONFLICT DO NOTHING{returning}"),
    )
}

/// The parameters of [`sqlite_events_insert`] for `chunk`.
fn sqlite_event_args(
    chunk: &[NewUsageEvent],
    now_ms: i64,
) -> Result<SqliteArguments<'_>, StoreError> {
    let mut args = SqliteArguments::default();
    for e in chunk {
        args.add(e.id).map_err(sqlx::Error::Encode)?;
        args.add(e.subscription_id.0).map_err(sqlx::Error::Encode)?;
        args.add(e.dimension.as_str())
            .map_err(sqlx::Error::Encode)?;
        args.add(millis(e.hour)).map_err(sqlx::Error::Encode)?;
        args.add(millis(e.occurred_at))
            .map_err(sqlx::Error::Encode)?;
        args.add(e.quantity.micros()).map_err(sqlx::Error::Encode)?;
        args.add(e.idempotency_key.as_deref())
            .map_err(sqlx::Error::Encode)?;
        args.add(allocations_json(e)).map_err(sqlx::Error::Encode)?;
        args.add(now_ms).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// Inserts a chunk of events and returns those that were new (their ids read back).
async fn sqlite_insert_new_events<'e>(
    tx: &mut SqliteConnection,
    chunk: &'e [NewUsageEvent],
    now_ms: i64,
) -> Result<Vec<&'e NewUsageEvent>, StoreError> {
    let ids: HashSet<Uuid> = sqlx::query_scalar_with(
        &sqlite_events_insert(chunk.len(), " RETURNING id"),
        sqlite_event_args(chunk, now_ms)?,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    Ok(chunk.iter().filter(|e| ids.contains(&e.id)).collect())
}

/// One batch on PostgreSQL, inside the open transaction or savepoint `tx`: one statement per
/// table, the batch bound as one array per column.
async fn postgres_batch(
    tx: &mut PgConnection,
    events: &[NewUsageEvent],
    now: OffsetDateTime,
) -> Result<IngestOutcome, StoreError> {
    let now_ms = millis(now);
    // 1. The raw events; a known idempotency key inserts nothing.
    let inserted: HashSet<Uuid> = sqlx::query_scalar(&format!(
        "INSERT INTO usage_events ({EVENT_COLUMNS}) \
         SELECT id, sub, dim, hour, occurred, qty, key, alloc::jsonb, $9::int8 \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[], $6::int8[], \
         $7::text[], $8::text[]) AS e (id, sub, dim, hour, occurred, qty, key, alloc) \
         ON CONFLICT DO NOTHING RETURNING id"
    ))
    .bind(array_column(events, |e| e.id))
    .bind(array_column(events, |e| e.subscription_id.0))
    .bind(array_column(events, |e| e.dimension.as_str()))
    .bind(array_column(events, |e| millis(e.hour)))
    .bind(array_column(events, |e| millis(e.occurred_at)))
    .bind(array_column(events, |e| e.quantity.micros()))
    .bind(array_column(events, |e| e.idempotency_key.as_deref()))
    .bind(events.iter().map(allocations_json).collect::<Vec<_>>())
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    // 2. None of their hours may have been claimed for sending (frozen), unless mismatched.
    let hours = hours_of(events.iter().filter(|e| inserted.contains(&e.id)));
    if !hours.is_empty() {
        let frozen: Option<(String, i64)> = sqlx::query_as(&format!(
            "SELECT h.dimension, h.hour \
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) AS k (sub, dim, hour) \
             JOIN usage_hours h ON h.subscription_id = k.sub AND h.dimension = k.dim \
             AND h.hour = k.hour WHERE h.state NOT IN ('open', {REOPENS}) LIMIT 1"
        ))
        .bind(array_column(&hours, |(sub, _, _)| *sub))
        .bind(array_column(&hours, |(_, dim, _)| *dim))
        .bind(array_column(&hours, |(_, _, hour)| *hour))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((dimension, hour)) = frozen {
            return Err(hour_already_sent(&dimension, hour));
        }
    }
    // 3. No capped hour may go past its cap.
    let stored: Vec<&NewUsageEvent> = events.iter().filter(|e| inserted.contains(&e.id)).collect();
    cap::postgres_add(tx, &stored).await?;
    Ok(IngestOutcome {
        accepted: inserted.len(),
        duplicates: events.len() - inserted.len(),
    })
}

/// The group commit of [`Store::usage_ingest_group`] on one backend: `$batch` is that
/// backend's batch writer.
/// `$lock`, if given, runs first when the group holds several batches, with the transaction
/// and every batch's events.
macro_rules! group_commit {
    ($pool:expr, $batch:ident, $batches:expr $(, $lock:path)?) => {{
        let batches = $batches;
        let mut results = Vec::with_capacity(batches.len());
        let mut tx = $pool.begin().await?;
        if let [(events, now)] = batches {
            match $batch(&mut tx, events, *now).await {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(e) => {
                    // Roll back now: on PostgreSQL the batch holds the ledger's write lock
                    // until then, which would hold off the next fold's barrier (ADR 0026).
                    tx.rollback().await?;
                    return Ok(vec![Err(e)]);
                }
            }
        } else {
            $($lock(&mut tx, batches.iter().map(|(events, _)| *events)).await?;)?
            for (events, now) in batches {
                let mut savepoint = sqlx::Acquire::begin(&mut tx).await?;
                match $batch(&mut savepoint, events, *now).await {
                    Ok(outcome) => {
                        savepoint.commit().await?;
                        results.push(Ok(outcome));
                    }
                    Err(e) => {
                        savepoint.rollback().await?;
                        results.push(Err(e));
                    }
                }
            }
        }
        tx.commit().await?;
        results
    }};
}

impl Store {
    /// Stores a batch of events in one transaction; the next claim adds them to their hourly
    /// totals. Events whose idempotency key is already stored are skipped. Refused as a whole
    /// with [`StoreError::Conflict`] when a new event belongs to an hour already sent.
    pub async fn usage_ingest(
        &self,
        events: &[NewUsageEvent],
        now: OffsetDateTime,
    ) -> Result<IngestOutcome, StoreError> {
        self.usage_ingest_group(&[(events, now)])
            .await?
            .pop()
            .unwrap_or(Ok(IngestOutcome::default()))
    }

    /// Group commit: stores several independent batches in one transaction, so concurrent
    /// requests share one commit (and one writer: SQLite takes one at a time). Each batch is
    /// still all or nothing on its own — a savepoint each when there are several — and gets its
    /// own result, as [`Store::usage_ingest`] would give it. The outer error means nothing was
    /// stored (the transaction could not begin or commit).
    pub async fn usage_ingest_group(
        &self,
        batches: &[(&[NewUsageEvent], OffsetDateTime)],
    ) -> Result<Vec<Result<IngestOutcome, StoreError>>, StoreError> {
        if batches.iter().all(|(events, _)| events.is_empty()) {
            return Ok(batches
                .iter()
                .map(|_| Ok(IngestOutcome::default()))
                .collect());
        }
        let _turn = self.write_turn().await;
        Ok(match &self.pool {
            Pool::Sqlite(pool) => group_commit!(pool, sqlite_batch, batches),
            Pool::Postgres(pool) => {
                group_commit!(pool, postgres_batch, batches, cap::postgres_lock)
            }
        })
    }
}
