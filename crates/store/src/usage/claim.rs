//! Claiming due hours for sending (ADR 0005, 0010, 0026): each claim first folds the usage
//! stored since the last one, then reads the due hours and marks them `sending` under a lease
//! with their quantities frozen — on SQLite in the same transaction, on PostgreSQL after a
//! barrier and a second fold (ADR 0026) — and finally loads what the flusher needs to send
//! them (their cost-allocation tags and subscriptions).

use std::collections::{HashMap, HashSet};

use marketlink_core::{SubscriptionId, UsageAllocation};
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::MutexGuard;
use uuid::Uuid;

use super::{
    fold::{postgres_fold_stored, sqlite_fold},
    hour_row::{SQLITE_HOUR_JSON, UsageHourRow, quantity},
    types::{UsageClaim, UsageHour, UsageHourState},
};
use crate::{
    Backend, Pool, Store, StoreError,
    bind_lists::{array_column, json_id_list},
    millis,
};

mod postgres;

/// The parameters every claim statement binds, in order: `$1` the lease, `$2` the lease's
/// end (also the hour's next attempt: ADR 0025), `$3` now, `$4` the last closed hour, `$5` the
/// limit.
struct ClaimParams {
    lease_id: Uuid,
    locked_until: i64,
    now: i64,
    closed_through: i64,
    limit: i64,
}

/// Marks hours claimed (its `WHERE` follows): sending, leased, quantity frozen, and due again
/// when the lease ends, should its holder never settle it (ADR 0025: the third kind of due
/// hour in [`due_ids_sql`] is then one range of `usage_hours_sending_due`).
const MARK: &str = "UPDATE usage_hours SET state = 'sending', lease_id = $1, \
    locked_until = $2, next_attempt_at = $2, attempts = attempts + 1, updated_at = $3, \
    sent_quantity_micros = quantity_micros, first_sent_at = COALESCE(first_sent_at, $3)";

impl Store {
    /// Claims up to `limit` hours to send: open hours that have closed (start at or before
    /// `closed_through`, or any open hour of a subscription in its unsubscribe-pending window:
    /// its final usage), and hours already sending whose retry is due or whose lease expired.
    /// Claimed hours are `sending`, quantity frozen, leased until `now + lease`.
    ///
    /// The claim carries what the records of its hours are sent with ([`crate::UsageTarget`]) for
    /// their subscriptions but those `known` to the caller (from an earlier claim).
    pub async fn usage_claim(
        &self,
        now: OffsetDateTime,
        closed_through: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        known: impl Fn(SubscriptionId) -> bool,
    ) -> Result<UsageClaim, StoreError> {
        let params = ClaimParams {
            lease_id: Uuid::now_v7(),
            locked_until: millis(now + lease),
            now: millis(now),
            closed_through: millis(closed_through),
            limit: i64::from(limit),
        };
        let due_ids = due_ids_sql(self.backend());
        let turn = self.write_turn().await;
        let rows = match &self.pool {
            Pool::Sqlite(pool) => sqlite_claim(pool, turn, &due_ids, &params).await?,
            Pool::Postgres(pool) => postgres_claim(pool, turn, &due_ids, &params).await?,
        };
        // A claimed hour is frozen: its allocations no longer change.
        let allocations = self.usage_allocations_of(&rows).await?;
        let mut missing: Vec<SubscriptionId> = rows
            .iter()
            .map(|r| SubscriptionId(r.subscription_id))
            .filter(|id| !known(*id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        missing.sort_unstable_by_key(|id| id.0);
        let targets = self.usage_targets(&missing).await?;
        let mut hours = rows
            .into_iter()
            .map(UsageHour::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        attach_allocations(&mut hours, allocations)?;
        hours.sort_by_key(|h| (h.hour, h.id));
        Ok(UsageClaim {
            lease_id: params.lease_id,
            hours,
            targets,
        })
    }

    /// The cost-allocation tags of these hours: `(hour id, tags JSON, micros)`.
    async fn usage_allocations_of(
        &self,
        rows: &[UsageHourRow],
    ) -> Result<Vec<(Uuid, String, i64)>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        const COLUMNS: &str = "SELECT usage_hour_id, tags, quantity_micros FROM usage_allocations";
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_as(&format!(
                    "{COLUMNS} WHERE usage_hour_id IN (SELECT unhex(value) FROM json_each($1))"
                ))
                .bind(json_id_list(rows.iter().map(|r| r.id))?)
                .fetch_all(pool)
                .await?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(&format!("{COLUMNS} WHERE usage_hour_id = ANY($1)"))
                    .bind(array_column(rows, |r| r.id))
                    .fetch_all(pool)
                    .await?
            }
        })
    }
}

/// The ids of the due hours, in claim order, at most `$5` of them.
///
/// Three kinds of due hours, each read from an index in claim order (the third sorted: only
/// those whose time has come are read) and cut at `limit`, so a claim costs O(limit) however
/// much history the table holds; the first `limit` of their union are the first `limit` due
/// hours overall. On PostgreSQL each kind locks its rows with
/// SKIP LOCKED (re-checking its condition on the latest row version), so concurrent flushers
/// never claim the same hour and each goes on to the next free ones.
fn due_ids_sql(backend: Backend) -> String {
    // Final usage: every open hour of a subscription in its unsubscribe-pending window. From
    // those few subscriptions to their hours by `usage_hours_key`, `|| ''` keeping it off the
    // state index: on SQLite CROSS JOIN fixes the join order; PostgreSQL takes their ids as
    // an array, since without statistics it would hash the join and scan every hour.
    let (lock, pending_from, pending) = match backend {
        Backend::Postgres => (
            "FOR UPDATE OF h SKIP LOCKED",
            "usage_hours h",
            "h.subscription_id = ANY(ARRAY(SELECT id FROM subscriptions \
             WHERE status = 'unsubscribe_pending')) AND h.state || '' = 'open'",
        ),
        Backend::Sqlite => (
            "",
            "subscriptions s CROSS JOIN usage_hours h",
            "s.status = 'unsubscribe_pending' AND h.subscription_id = s.id \
             AND h.state || '' = 'open'",
        ),
    };
    let due = |from: &str, condition: &str| {
        format!(
            "SELECT id, hour FROM (SELECT h.id, h.hour FROM {from} WHERE {condition} \
             AND (h.locked_until IS NULL OR h.locked_until <= $3) \
             ORDER BY h.hour, h.id LIMIT $5 {lock}) AS d"
        )
    };
    format!(
        "SELECT id FROM ({} UNION {} UNION {}) AS due ORDER BY hour, id LIMIT $5",
        // Closed hours.
        due("usage_hours h", "h.state = 'open' AND h.hour <= $4"),
        due(pending_from, pending),
        // Retries due, and hours whose flusher's lease expired: a claim sets the next attempt
        // to its lease's end, so both are the `sending` hours whose time has come, a range of
        // `usage_hours_sending_due`; the few found are sorted. `|| ''` is that index's
        // predicate, and keeps both planners off `usage_hours_due`, whose (hour, id) order
        // would have them walk every hour in flight to find none due (ADR 0025). The lease
        // check above stays: an hour leased by a release before this one has an earlier next
        // attempt.
        due(
            "usage_hours h",
            "h.state || '' = 'sending' AND h.next_attempt_at <= $3"
        ),
    )
}

/// The claim on SQLite: read the due hours, then mark the same ones, in one transaction that
/// holds the write lock from its start. The rows come back as one JSON row rather than a
/// message per row from the driver's thread (`RETURNING`), which cost more than the claim
/// itself; the claim's own changes are applied to them afterwards. `turn` is released once
/// the transaction has ended.
async fn sqlite_claim(
    pool: &SqlitePool,
    turn: Option<MutexGuard<'_, ()>>,
    due_ids: &str,
    params: &ClaimParams,
) -> Result<Vec<UsageHourRow>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Events stored before this claim reach their hours before any is frozen.
    if let Err(e) = sqlite_fold(&mut tx).await {
        tx.rollback().await?;
        return Err(e);
    }
    // CROSS JOIN: from the due ids to their rows, never the other way round.
    let json: String = sqlx::query_scalar(&format!(
        "SELECT json_group_array(json_array({SQLITE_HOUR_JSON})) FROM \
         ({due_ids}) AS claimed CROSS JOIN usage_hours USING (id)"
    ))
    .bind(params.lease_id)
    .bind(params.locked_until)
    .bind(params.now)
    .bind(params.closed_through)
    .bind(params.limit)
    .fetch_one(&mut *tx)
    .await?;
    let mut rows: Vec<UsageHourRow> =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("due hours: {e}")))?;
    if !rows.is_empty() {
        // The hours just read, by id: the write lock is held, so they are still the due ones.
        let marked = sqlx::query(&format!(
            "{MARK} WHERE id IN (SELECT unhex(value) FROM json_each($4))"
        ))
        .bind(params.lease_id)
        .bind(params.locked_until)
        .bind(params.now)
        .bind(json_id_list(rows.iter().map(|r| r.id))?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked != rows.len() as u64 {
            tx.rollback().await?;
            return Err(StoreError::Corrupt(format!(
                "claim read {} due hours but marked {marked}",
                rows.len()
            )));
        }
    }
    // Also when nothing was due: the write lock must be released before the turn is, not by
    // the rollback a dropped transaction only queues.
    tx.commit().await?;
    drop(turn);
    for row in &mut rows {
        mark_claimed(row, params);
    }
    Ok(rows)
}

/// What [`MARK`] did to an hour's row, applied to the row as read before it.
fn mark_claimed(row: &mut UsageHourRow, params: &ClaimParams) {
    row.state = UsageHourState::Sending.as_str().to_owned();
    row.attempts += 1;
    row.lease_id = Some(params.lease_id);
    row.next_attempt_at = params.locked_until;
    row.sent_quantity_micros = Some(row.quantity_micros);
    row.updated_at = params.now;
}

/// The claim on PostgreSQL (ADR 0026): the fold runs beside ingest, and the ledger is locked
/// only as brief barriers. First everything stored is folded, the due hours are marked and
/// the lease is listed as pending ([`postgres::pending`]); from that commit on, a request for
/// one of them is refused, while folds may still add to them. Then a barrier waits out the
/// requests that were inserting meanwhile, and the events up to it are folded before the
/// claim stops pending and its hours are returned ([`postgres::freeze_claimed`]). `turn` is
/// released once the first transaction has ended.
async fn postgres_claim(
    pool: &PgPool,
    turn: Option<MutexGuard<'_, ()>>,
    due_ids: &str,
    params: &ClaimParams,
) -> Result<Vec<UsageHourRow>, StoreError> {
    let (mut tx, _) = postgres_fold_stored(pool).await?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar(&format!("{MARK} WHERE id IN ({due_ids}) RETURNING id"))
            .bind(params.lease_id)
            .bind(params.locked_until)
            .bind(params.now)
            .bind(params.closed_through)
            .bind(params.limit)
            .fetch_all(&mut *tx)
            .await?;
    if !ids.is_empty() {
        postgres::pending(&mut tx, params).await?;
    }
    tx.commit().await?;
    drop(turn);
    postgres::freeze_claimed(pool, params, &ids).await
}

/// Gives each claimed hour its cost-allocation tags, `(hour id, tags JSON, micros)`.
fn attach_allocations(
    hours: &mut [UsageHour],
    allocations: Vec<(Uuid, String, i64)>,
) -> Result<(), StoreError> {
    let mut by_hour: HashMap<Uuid, Vec<UsageAllocation>> = HashMap::new();
    for (hour_id, tags, micros) in allocations {
        let tags: Vec<(String, String)> = serde_json::from_str(&tags)
            .map_err(|e| StoreError::Corrupt(format!("allocation tags: {e}")))?;
        by_hour.entry(hour_id).or_default().push(UsageAllocation {
            quantity: quantity(micros)?,
            tags,
        });
    }
    for hour in hours {
        if let Some(a) = by_hour.remove(&hour.id) {
            hour.allocations = a;
        }
    }
    Ok(())
}
