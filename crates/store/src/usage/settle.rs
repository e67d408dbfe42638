//! Settling claimed hours with what came of sending them, and requeueing dead ones.

use time::OffsetDateTime;
use uuid::Uuid;

use super::types::{UsageHourState, UsageSettlement};
use crate::{
    Pool, Store, StoreError,
    bind_lists::{anonymous_rows, array_column, sqlite_chunks},
    millis, on_pool,
};

impl Store {
    /// Records what came of sending claimed hours, in one transaction: one statement on
    /// PostgreSQL (the settlements bound as arrays), a few on SQLite (multi-row `VALUES` with
    /// `?` parameters). Hours whose lease was taken over meanwhile are left alone (their new
    /// holder settles them). Returns how many were settled.
    pub async fn usage_settle(
        &self,
        lease_id: Uuid,
        settlements: &[(Uuid, UsageSettlement)],
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if settlements.is_empty() {
            return Ok(0);
        }
        let rows: Vec<SettleRow<'_>> = settlements
            .iter()
            .map(|(id, settlement)| settle_row(*id, settlement, now))
            .collect();
        let _turn = self.write_turn().await;
        let settled = match &self.pool {
            Pool::Sqlite(pool) => sqlite_settle(pool, lease_id, &rows, millis(now)).await?,
            // The lease travels as a column of the settlements, from a subquery the planner
            // keeps whole (`OFFSET 0`), rather than as `lease_id = $8` on the table: a new
            // lease id is never in the statistics, so any condition on it alone was estimated
            // at one row, and the planner scanned the table for the lease and matched each row
            // found against every settlement (ADR 0025).
            Pool::Postgres(pool) => sqlx::query(&format!(
                "UPDATE usage_hours {SET} updated_at = $7 FROM (SELECT u.*, $8::uuid AS lease \
                     FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                     $6::text[]) AS u (id, state, next_at, record_id, outcome, err) OFFSET 0) AS v \
                     WHERE usage_hours.id = v.id AND usage_hours.lease_id = v.lease"
            ))
            .bind(array_column(&rows, |r| r.id))
            .bind(array_column(&rows, |r| r.state.as_str()))
            .bind(array_column(&rows, |r| r.next_at))
            .bind(array_column(&rows, |r| r.record_id))
            .bind(array_column(&rows, |r| r.outcome))
            .bind(array_column(&rows, |r| r.error))
            .bind(millis(now))
            .bind(lease_id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(settled)
    }

    /// Sends a dead hour again (an operator fixed the cause): the identical frozen record goes
    /// out on the next flush, with a fresh attempt budget. Only dead hours qualify; a
    /// mismatch is the marketplace holding another quantity, which resending cannot fix.
    pub async fn usage_requeue(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE usage_hours SET state = 'sending', next_attempt_at = $1, attempts = 0, \
                 lease_id = NULL, locked_until = NULL, outcome = 'requeued', updated_at = $1 \
                 WHERE id = $2 AND state = 'dead'",
            )
            .bind(millis(now))
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound("dead usage hour"));
        }
        Ok(())
    }
}

/// What a settlement sets, from the columns of `v`.
const SET: &str = "SET state = v.state, next_attempt_at = v.next_at, \
    marketplace_record_id = COALESCE(v.record_id, usage_hours.marketplace_record_id), \
    outcome = v.outcome, last_error = v.err, lease_id = NULL, locked_until = NULL, ";

/// Settles on SQLite in one transaction, 256 rows a statement at most. Delivered hours, nearly
/// all of a flush, bind only their id and record id (the rest is the same for the statement):
/// a third of the parameters and of the `VALUES` SQLite builds.
async fn sqlite_settle(
    pool: &sqlx::SqlitePool,
    lease_id: Uuid,
    rows: &[SettleRow<'_>],
    now: i64,
) -> Result<u64, StoreError> {
    let (delivered, other): (Vec<&SettleRow<'_>>, Vec<&SettleRow<'_>>) = rows
        .iter()
        .partition(|r| r.state == UsageHourState::Delivered && r.next_at == now);
    let mut outcomes: Vec<&str> = delivered.iter().map(|r| r.outcome).collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    // `id IN (…)` makes SQLite look each settled hour up by key; with only the join, it scans
    // the whole table once a chunk is large.
    const WHERE: &str = "WHERE usage_hours.id IN (SELECT id FROM v) \
        AND usage_hours.id = v.id AND usage_hours.lease_id = ?";
    let mut tx = pool.begin().await?;
    let mut settled = 0;
    for outcome in outcomes {
        let same: Vec<&SettleRow<'_>> = delivered
            .iter()
            .copied()
            .filter(|r| r.outcome == outcome)
            .collect();
        for chunk in sqlite_chunks(&same) {
            let sql = anonymous_rows(
                "WITH v (id, record_id) AS (VALUES ",
                "(?,?)",
                chunk.len(),
                &format!(
                    ") UPDATE usage_hours SET state = 'delivered', next_attempt_at = ?, \
                     marketplace_record_id = COALESCE(v.record_id, \
                     usage_hours.marketplace_record_id), outcome = ?, last_error = NULL, \
                     lease_id = NULL, locked_until = NULL, updated_at = ? FROM v {WHERE}"
                ),
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(r.id).bind(r.record_id);
            }
            settled += query
                .bind(now)
                .bind(outcome)
                .bind(now)
                .bind(lease_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
    }
    for chunk in sqlite_chunks(&other) {
        let sql = anonymous_rows(
            "WITH v (id, state, next_at, record_id, outcome, err) AS (VALUES ",
            "(?,?,?,?,?,?)",
            chunk.len(),
            &format!(") UPDATE usage_hours {SET} updated_at = ? FROM v {WHERE}"),
        );
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(r.id)
                .bind(r.state.as_str())
                .bind(r.next_at)
                .bind(r.record_id)
                .bind(r.outcome)
                .bind(r.error);
        }
        settled += query
            .bind(now)
            .bind(lease_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(settled)
}

/// A settlement as the columns it sets.
struct SettleRow<'a> {
    id: Uuid,
    state: UsageHourState,
    /// Unix milliseconds of the next attempt.
    next_at: i64,
    record_id: Option<&'a str>,
    outcome: &'a str,
    error: Option<&'a str>,
}

fn settle_row(id: Uuid, settlement: &UsageSettlement, now: OffsetDateTime) -> SettleRow<'_> {
    let row = |state, next_at, record_id, outcome, error| SettleRow {
        id,
        state,
        next_at: millis(next_at),
        record_id,
        outcome,
        error,
    };
    match settlement {
        UsageSettlement::Delivered {
            marketplace_id,
            outcome,
        } => row(
            UsageHourState::Delivered,
            now,
            marketplace_id.as_deref(),
            outcome,
            None,
        ),
        UsageSettlement::Retry { error, at } => {
            row(UsageHourState::Sending, *at, None, "retry", Some(error))
        }
        UsageSettlement::Mismatch { detail } => row(
            UsageHourState::Mismatch,
            now,
            None,
            "quantity_mismatch",
            Some(detail),
        ),
        UsageSettlement::Dead { reason } => {
            row(UsageHourState::Dead, now, None, "dead", Some(reason))
        }
        UsageSettlement::Skipped { reason } => {
            row(UsageHourState::Skipped, now, None, reason, None)
        }
    }
}
