//! The PostgreSQL claim's steps after its hours are marked (ADR 0026): the claim marks them
//! `sending` without freezing their quantities, then folds up to a barrier and freezes them.
//!
//! Why that order is enough: a request's frozen-hour check runs after its insert, which holds
//! the ledger's `ROW EXCLUSIVE` lock until the request ends (ADR 0010). A request that passed
//! its check before the mark committed was therefore still holding that lock, or had ended,
//! when the barrier that follows asked for the ledger: the barrier waits for it, and its
//! events are at or below the barrier's bound. A request that checks after the mark committed
//! is refused. So when the fold through the barrier's bound has run, every accepted event of a
//! claimed hour is in its total, and the total can be frozen.
//!
//! Between the mark and the freeze an hour is `sending` with no sent quantity. A fold of
//! anyone's (another claim's, a reader's) adds to it, as to an open hour (`fold::hour_upsert`);
//! it is never sent so: only [`freeze_claimed`] returns hours to send, frozen in its statement.
//! If the claimer dies in between, the lease runs out and the next claim takes the hour again,
//! as any expired lease, and freezes it after a barrier of its own.

use sqlx::PgPool;
use uuid::Uuid;

use super::super::{
    fold::postgres_fold_stored,
    hour_row::{HOUR_COLUMNS, UsageHourRow},
};
use crate::StoreError;

/// What the claim's `MARK` statement freezes; [`unfrozen`] leaves it as it was.
const FREEZE: &str = "sent_quantity_micros = quantity_micros";

/// `mark` without the freeze: a first claim's sent quantity stays NULL (not frozen yet), a
/// retry's stays what was sent. An error if `mark` no longer freezes that way (this must then
/// follow it).
pub(super) fn unfrozen(mark: &str) -> Result<String, StoreError> {
    if !mark.contains(FREEZE) {
        return Err(StoreError::Unsupported(format!(
            "the claim's mark statement no longer sets `{FREEZE}`; the PostgreSQL claim must \
             be told how it freezes"
        )));
    }
    Ok(mark.replacen(FREEZE, "sent_quantity_micros = sent_quantity_micros", 1))
}

/// Folds everything stored up to a new barrier, then freezes the hours `ids` that are still
/// this lease's and returns them, in one transaction. An hour whose lease was taken over in
/// the meantime (it ran out) is left to its new holder.
pub(super) async fn freeze_claimed(
    pool: &PgPool,
    lease_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<UsageHourRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (mut tx, _) = postgres_fold_stored(pool).await?;
    let rows = sqlx::query_as(&format!(
        "UPDATE usage_hours \
         SET sent_quantity_micros = COALESCE(sent_quantity_micros, quantity_micros) \
         WHERE id = ANY($1) AND lease_id = $2 AND state = 'sending' RETURNING {HOUR_COLUMNS}"
    ))
    .bind(ids)
    .bind(lease_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_taken_apart_from_its_freeze() {
        let mark = unfrozen(super::super::MARK).unwrap();
        assert!(!mark.contains(FREEZE), "{mark}");
        assert!(mark.contains("state = 'sending'"), "{mark}");
        assert!(unfrozen("UPDATE usage_hours SET state = 'sending'").is_err());
    }
}
