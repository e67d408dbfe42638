//! A row of `usage_hours` as read back, and the columns it is read from.

use marketlink_core::{Quantity, SubscriptionId};
use uuid::Uuid;

use super::types::{UsageHour, UsageHourState};
use crate::{StoreError, from_millis};

/// A row of `usage_hours`: from the driver, or from the JSON array of a SQLite claim (whose
/// ids are hex strings).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct UsageHourRow {
    pub(super) id: Uuid,
    pub(super) subscription_id: Uuid,
    pub(super) marketplace: String,
    pub(super) dimension: String,
    pub(super) hour: i64,
    pub(super) quantity_micros: i64,
    pub(super) state: String,
    pub(super) attempts: i64,
    pub(super) next_attempt_at: i64,
    pub(super) lease_id: Option<Uuid>,
    pub(super) sent_quantity_micros: Option<i64>,
    pub(super) marketplace_record_id: Option<String>,
    pub(super) outcome: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) updated_at: i64,
}

pub(super) const HOUR_COLUMNS: &str = "id, subscription_id, marketplace, dimension, hour, quantity_micros, \
    state, attempts, next_attempt_at, lease_id, sent_quantity_micros, marketplace_record_id, \
    outcome, last_error, updated_at";

/// [`HOUR_COLUMNS`] of an hour about to be claimed, as the elements of a SQLite `json_array`
/// (ids in hex), in [`UsageHourRow`]'s field order. The lease is left out: the claim sets it.
pub(super) const SQLITE_HOUR_JSON: &str = "hex(id), hex(subscription_id), marketplace, dimension, hour, \
    quantity_micros, state, attempts, next_attempt_at, NULL, sent_quantity_micros, \
    marketplace_record_id, outcome, last_error, updated_at";

/// A stored quantity, checked.
pub(super) fn quantity(micros: i64) -> Result<Quantity, StoreError> {
    Quantity::from_micros(micros).map_err(|e| StoreError::Corrupt(format!("quantity: {e}")))
}

impl TryFrom<UsageHourRow> for UsageHour {
    type Error = StoreError;
    fn try_from(row: UsageHourRow) -> Result<Self, Self::Error> {
        Ok(UsageHour {
            id: row.id,
            subscription_id: SubscriptionId(row.subscription_id),
            marketplace: row.marketplace,
            dimension: row.dimension,
            hour: from_millis(row.hour)?,
            quantity: quantity(row.quantity_micros)?,
            state: UsageHourState::parse(&row.state)?,
            attempts: row.attempts,
            next_attempt_at: from_millis(row.next_attempt_at)?,
            lease_id: row.lease_id,
            sent_quantity: row.sent_quantity_micros.map(quantity).transpose()?,
            marketplace_record_id: row.marketplace_record_id,
            outcome: row.outcome,
            last_error: row.last_error,
            allocations: Vec::new(),
            updated_at: from_millis(row.updated_at)?,
        })
    }
}
