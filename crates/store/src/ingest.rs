//! Usage ingest (ADR 0005): a batch of events is stored in `usage_events` and folded into its
//! hourly totals in `usage_hours`, in one transaction, so an event is either stored and
//! counted or not at all.
//!
//! The statements are shaped per backend for throughput (ADR 0008): PostgreSQL takes a whole
//! batch as one `INSERT … SELECT FROM UNNEST(arrays)` per table, one bind per column, so its
//! plan is prepared once whatever the batch size; SQLite takes multi-row `VALUES` lists with
//! anonymous `?` parameters (a `$N` parameter is looked up by name, a cost that grows with the
//! statement's width), in a few fixed widths so that the statement cache serves every batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Arguments, PgConnection, SqliteConnection, sqlite::SqliteArguments};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    IngestOutcome, NewUsageEvent, Pool, Store, StoreError, from_millis, millis,
    usage::{HourKey, tags_key},
};

/// Up to this many events a statement, SQLite ingest reads the new ids back directly; wider
/// statements are counted instead (see [`sqlite_batch`]).
const READ_BACK_ROWS: usize = 16;

/// The widest SQLite statement, in rows; narrower chunks are powers of two.
const SQLITE_ROWS: usize = 256;

/// `items` in chunks of [`SQLITE_ROWS`] and then powers of two: at most nine statement shapes
/// per table serve every batch size, each prepared once per connection.
pub(crate) fn sqlite_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= SQLITE_ROWS {
            SQLITE_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// `prefix row,row,…,row suffix` with `rows` copies of `row` (written with `?` parameters).
pub(crate) fn rows_sql(prefix: &str, row: &str, rows: usize, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + (row.len() + 1) * rows + suffix.len());
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(suffix);
    sql
}

/// One column of a PostgreSQL array bind: `f` of every item.
pub(crate) fn column<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(f).collect()
}

/// The new events of a batch, summed per subscription, dimension and hour: `(marketplace,
/// quantity, allocated quantity per tag set)`.
type Group<'a> = (&'a str, i64, BTreeMap<String, i64>);

/// Sums the events that were stored (not duplicates) per hourly total, in key order (so
/// concurrent writers upsert in the same order and cannot deadlock).
fn aggregate<'a>(
    stored: impl Iterator<Item = &'a NewUsageEvent>,
) -> Result<Vec<(HourKey, Group<'a>)>, StoreError> {
    let mut groups: BTreeMap<HourKey, Group<'a>> = BTreeMap::new();
    for e in stored {
        let entry = groups
            .entry((e.subscription_id.0, e.dimension.clone(), millis(e.hour)))
            .or_insert((e.marketplace.as_str(), 0, BTreeMap::new()));
        entry.1 = entry.1.checked_add(e.quantity.micros()).ok_or_else(|| {
            StoreError::Conflict("usage quantity overflows an hourly total".into())
        })?;
        for a in &e.allocations {
            *entry.2.entry(tags_key(&a.tags)).or_insert(0) += a.quantity.micros();
        }
    }
    Ok(groups.into_iter().collect())
}

/// An hour missing from `hour_ids` (the open hours the upsert returned or a lookup found) is
/// frozen, claimed for sending: the batch is refused.
fn refuse_frozen(
    groups: &[(HourKey, Group<'_>)],
    hour_ids: &HashMap<HourKey, Uuid>,
) -> Result<(), StoreError> {
    match groups.iter().find(|(key, _)| !hour_ids.contains_key(key)) {
        Some(((_, dimension, hour), _)) => Err(StoreError::Conflict(format!(
            "usage of `{dimension}` for the hour starting {} has already been sent to the \
             marketplace; report it in a later hour",
            from_millis(*hour)?
        ))),
        None => Ok(()),
    }
}

/// Allocation tags (rare): `(hour id, tag set, quantity)` to add to `usage_allocations`.
fn allocation_rows(
    groups: &[(HourKey, Group<'_>)],
    hour_ids: &HashMap<HourKey, Uuid>,
) -> Vec<(Uuid, String, i64)> {
    let mut rows = Vec::new();
    for (key, (_, _, allocations)) in groups {
        if let Some(id) = hour_ids.get(key) {
            rows.extend(allocations.iter().map(|(tags, q)| (*id, tags.clone(), *q)));
        }
    }
    rows
}

const EVENT_COLUMNS: &str = "id, subscription_id, dimension, hour, occurred_at, quantity_micros, \
    idempotency_key, allocations, received_at";
const HOUR_INSERT: &str = "INSERT INTO usage_hours (id, subscription_id, marketplace, dimension, \
    hour, quantity_micros, next_attempt_at, created_at, updated_at, state, attempts) ";
const HOUR_UPSERT: &str = " ON CONFLICT (subscription_id, dimension, hour) DO UPDATE \
    SET quantity_micros = usage_hours.quantity_micros + excluded.quantity_micros, \
    updated_at = excluded.updated_at WHERE usage_hours.state = 'open'";
const ALLOCATION_UPSERT: &str = " ON CONFLICT (usage_hour_id, tags) DO UPDATE \
    SET quantity_micros = usage_allocations.quantity_micros + excluded.quantity_micros";

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
    // 2. The new ones folded into their hourly totals.
    let groups = aggregate(stored.iter().copied())?;
    for chunk in sqlite_chunks(&groups) {
        let sql = rows_sql(
            &format!("{HOUR_INSERT} VALUES "),
            "(?,?,?,?,?,?,?,?,?,'open',0)",
            chunk.len(),
            HOUR_UPSERT,
        );
        let mut query = sqlx::query(&sql);
        for ((sub, dimension, hour), (marketplace, quantity, _)) in chunk {
            query = query
                .bind(Uuid::now_v7())
                .bind(*sub)
                .bind(*marketplace)
                .bind(dimension.as_str())
                .bind(*hour)
                .bind(*quantity)
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms);
        }
        // An upsert counts each row it inserted or added to; a frozen hour is not counted.
        if query.execute(&mut *tx).await?.rows_affected() < chunk.len() as u64 {
            refuse_frozen(chunk, &sqlite_hour_ids(tx, chunk).await?)?;
        }
    }
    // 3. Allocation tags (rare), summed per tag set.
    let tagged: Vec<(HourKey, Group<'_>)> = groups
        .iter()
        .filter(|(_, (_, _, allocations))| !allocations.is_empty())
        .cloned()
        .collect();
    let allocations = allocation_rows(&tagged, &sqlite_hour_ids(tx, &tagged).await?);
    for chunk in sqlite_chunks(&allocations) {
        let sql = rows_sql(
            "INSERT INTO usage_allocations (usage_hour_id, tags, quantity_micros) VALUES ",
            "(?,?,?)",
            chunk.len(),
            ALLOCATION_UPSERT,
        );
        let mut query = sqlx::query(&sql);
        for (id, tags, quantity) in chunk {
            query = query.bind(*id).bind(tags.as_str()).bind(*quantity);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(IngestOutcome {
        accepted: stored.len(),
        duplicates: events.len() - stored.len(),
    })
}

/// The multi-row insert of `rows` events, skipping known ones, then `returning`.
fn sqlite_events_insert(rows: usize, returning: &str) -> String {
    rows_sql(
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

/// The ids of these hourly totals that are still open.
async fn sqlite_hour_ids(
    tx: &mut SqliteConnection,
    groups: &[(HourKey, Group<'_>)],
) -> Result<HashMap<HourKey, Uuid>, StoreError> {
    let mut ids = HashMap::with_capacity(groups.len());
    for chunk in sqlite_chunks(groups) {
        let sql = rows_sql(
            "SELECT id, subscription_id, dimension, hour FROM usage_hours \
             WHERE state = 'open' AND (subscription_id, dimension, hour) IN (VALUES ",
            "(?,?,?)",
            chunk.len(),
            ")",
        );
        let mut query = sqlx::query_as::<_, (Uuid, Uuid, String, i64)>(&sql);
        for ((sub, dimension, hour), _) in chunk {
            query = query.bind(*sub).bind(dimension.as_str()).bind(*hour);
        }
        for (id, sub, dimension, hour) in query.fetch_all(&mut *tx).await? {
            ids.insert((sub, dimension, hour), id);
        }
    }
    Ok(ids)
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
    .bind(column(events, |e| e.id))
    .bind(column(events, |e| e.subscription_id.0))
    .bind(column(events, |e| e.dimension.as_str()))
    .bind(column(events, |e| millis(e.hour)))
    .bind(column(events, |e| millis(e.occurred_at)))
    .bind(column(events, |e| e.quantity.micros()))
    .bind(column(events, |e| e.idempotency_key.as_deref()))
    .bind(events.iter().map(allocations_json).collect::<Vec<_>>())
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    // 2. The new ones folded into their hourly totals.
    let groups = aggregate(events.iter().filter(|e| inserted.contains(&e.id)))?;
    let mut hour_ids: HashMap<HourKey, Uuid> = HashMap::with_capacity(groups.len());
    if !groups.is_empty() {
        let rows: Vec<(Uuid, Uuid, String, i64)> = sqlx::query_as(&format!(
            "{HOUR_INSERT} SELECT id, sub, marketplace, dim, hour, qty, $7::int8, $7::int8, $7::int8, 'open', 0 \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[], \
             $6::int8[]) AS h (id, sub, marketplace, dim, hour, qty) {HOUR_UPSERT} \
             RETURNING id, subscription_id, dimension, hour"
        ))
        .bind(column(&groups, |_| Uuid::now_v7()))
        .bind(column(&groups, |((sub, _, _), _)| *sub))
        .bind(column(&groups, |(_, (m, _, _))| *m))
        .bind(column(&groups, |((_, d, _), _)| d.as_str()))
        .bind(column(&groups, |((_, _, h), _)| *h))
        .bind(column(&groups, |(_, (_, q, _))| *q))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        for (id, sub, dimension, hour) in rows {
            hour_ids.insert((sub, dimension, hour), id);
        }
    }
    refuse_frozen(&groups, &hour_ids)?;
    // 3. Allocation tags, summed per tag set.
    let allocations = allocation_rows(&groups, &hour_ids);
    if !allocations.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO usage_allocations (usage_hour_id, tags, quantity_micros) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) {ALLOCATION_UPSERT}"
        ))
        .bind(column(&allocations, |(id, _, _)| *id))
        .bind(column(&allocations, |(_, t, _)| t.as_str()))
        .bind(column(&allocations, |(_, _, q)| *q))
        .execute(&mut *tx)
        .await?;
    }
    Ok(IngestOutcome {
        accepted: inserted.len(),
        duplicates: events.len() - inserted.len(),
    })
}

/// The group commit of [`Store::usage_ingest_group`] on one backend: `$batch` is that
/// backend's batch writer.
macro_rules! group_commit {
    ($pool:expr, $batch:ident, $batches:expr) => {{
        let batches = $batches;
        let mut results = Vec::with_capacity(batches.len());
        let mut tx = $pool.begin().await?;
        if let [(events, now)] = batches {
            match $batch(&mut tx, events, *now).await {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(e) => {
                    // Roll back now: on PostgreSQL a refused upsert holds the frozen row's
                    // lock until then, which would hide it from flushers.
                    tx.rollback().await?;
                    return Ok(vec![Err(e)]);
                }
            }
        } else {
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
    /// Stores a batch of events and adds them to their hourly totals, in one transaction.
    /// Events whose idempotency key is already stored are skipped. Refused as a whole with
    /// [`StoreError::Conflict`] when an event belongs to an hour already sent.
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
            Pool::Postgres(pool) => group_commit!(pool, postgres_batch, batches),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_chunks_use_few_widths() {
        let items: Vec<u32> = (0..600).collect();
        let widths: Vec<usize> = sqlite_chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(widths, vec![256, 256, 64, 16, 8]);
        assert_eq!(sqlite_chunks(&items[..1]).count(), 1);
        assert_eq!(sqlite_chunks(&items[..0]).count(), 0);
    }

    #[test]
    fn rows_repeat_the_row_shape() {
        assert_eq!(rows_sql("V ", "(?,?)", 3, ";"), "V (?,?),(?,?),(?,?);");
    }
}
