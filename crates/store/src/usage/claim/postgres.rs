//! The PostgreSQL claim's steps around its mark (ADR 0026): the claim marks its hours
//! `sending` and lists its lease as pending in one transaction, then folds up to a barrier and
//! stops pending, which freezes the hours for good.
//!
//! Why that order is enough: a request's frozen-hour check runs after its insert, which holds
//! the ledger's `ROW EXCLUSIVE` lock until the request ends (ADR 0010). A request that passed
//! its check before the mark committed was therefore still holding that lock, or had ended,
//! when the barrier that follows asked for the ledger: the barrier waits for it, and its
//! events are at or below the barrier's bound. A request that checks after the mark committed
//! is refused. So once the fold through the barrier's bound has run, every accepted event of a
//! claimed hour is in its total.
//!
//! While the claim is pending, a fold of anyone's (another claim's, a reader's) adds to its
//! hours as to open ones, their sent quantity with them (`fold::hour_upsert`); they are sent
//! only once [`freeze_claimed`] returns them, no longer pending. If the claimer dies in
//! between, its lease stays pending: the hours stay foldable until the lease runs out and the
//! next claim takes them again, as any expired lease, under a pending lease of its own.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    super::{
        fold::postgres_fold_stored,
        hour_row::{HOUR_COLUMNS, UsageHourRow},
    },
    ClaimParams,
};
use crate::StoreError;

/// How long a dead claimer's lease stays listed as pending after it ran out: by then its hours
/// have been claimed again (under another lease) unless no flusher ran all that time.
const PRUNE_AFTER_MS: i64 = 24 * 3_600_000;

/// Lists the claim's lease as pending, in the transaction that marks its hours.
pub(super) async fn pending(tx: &mut PgConnection, params: &ClaimParams) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO usage_pending_claims (lease_id, locked_until) VALUES ($1, $2)")
        .bind(params.lease_id)
        .bind(params.locked_until)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Folds everything stored up to a new barrier, then ends the claim's pending (pruning the
/// leases of long-dead claimers) and returns the hours `ids` still under its lease, frozen, in
/// one transaction. An hour whose lease was taken over in the meantime (it ran out) is left to
/// its new holder.
pub(super) async fn freeze_claimed(
    pool: &PgPool,
    params: &ClaimParams,
    ids: &[Uuid],
) -> Result<Vec<UsageHourRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (mut tx, _) = postgres_fold_stored(pool).await?;
    sqlx::query("DELETE FROM usage_pending_claims WHERE lease_id = $1 OR locked_until < $2")
        .bind(params.lease_id)
        .bind(params.now - PRUNE_AFTER_MS)
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query_as(&format!(
        "SELECT {HOUR_COLUMNS} FROM usage_hours \
         WHERE id = ANY($1) AND lease_id = $2 AND state = 'sending'"
    ))
    .bind(ids)
    .bind(params.lease_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}
