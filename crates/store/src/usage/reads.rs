//! Reads of the hourly totals and the ledger: by state, by subscription, the backlog, and the
//! subscriptions a claim carries.

use std::collections::HashMap;

use marketlink_core::{ExternalRef, PlanId, Subscription, SubscriptionId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    hour_row::{HOUR_COLUMNS, UsageHourRow},
    types::{UsageBacklog, UsageHour, UsageHourState, UsageTarget},
};
use crate::{
    Pool, Store, StoreError,
    bind_lists::{anonymous_rows, array_column, json_id_list, sqlite_chunks},
    from_millis, millis, on_pool,
    rows::{ExternalColumns, SUBSCRIPTION_COLUMNS, SubscriptionRow},
};

impl Store {
    /// The subscriptions with these ids (unknown ids are left out), a few queries for a whole
    /// batch rather than one per subscription: one `= ANY(array)` on PostgreSQL, `IN` lists of
    /// a few fixed widths on SQLite (so the prepared statements are reused).
    pub async fn usage_subscriptions(
        &self,
        ids: &[SubscriptionId],
    ) -> Result<HashMap<SubscriptionId, Subscription>, StoreError> {
        let mut rows: Vec<SubscriptionRow> = Vec::with_capacity(ids.len());
        match &self.pool {
            Pool::Sqlite(pool) => {
                for chunk in sqlite_chunks(ids) {
                    let sql = anonymous_rows(
                        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id IN ("),
                        "?",
                        chunk.len(),
                        ")",
                    );
                    let mut query = sqlx::query_as(&sql);
                    for id in chunk {
                        query = query.bind(id.0);
                    }
                    rows.extend(query.fetch_all(pool).await?);
                }
            }
            Pool::Postgres(pool) if !ids.is_empty() => {
                rows = sqlx::query_as(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1)"
                ))
                .bind(array_column(ids, |id| id.0))
                .fetch_all(pool)
                .await?;
            }
            Pool::Postgres(_) => {}
        }
        rows.into_iter()
            .map(|row| Subscription::try_from(row).map(|s| (s.id, s)))
            .collect()
    }

    /// What the records of these subscriptions' hours are sent with (unknown ids are left
    /// out): the few columns of [`UsageTarget`], not whole subscriptions. A flush reads one
    /// per subscription and claim in steady state (each hour of 100k subscriptions touches
    /// all of them), so this is per-row work. On SQLite the list comes back as one JSON row
    /// rather than a row per subscription from the driver's thread, as the claim's hours do.
    pub(super) async fn usage_targets(
        &self,
        ids: &[SubscriptionId],
    ) -> Result<HashMap<SubscriptionId, UsageTarget>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        const EXTERNAL: &str = "marketplace, external_id, product_code, customer_id, \
            customer_account_id, license_arn";
        let rows: Vec<TargetRow> = match &self.pool {
            Pool::Sqlite(pool) => {
                let json: String = sqlx::query_scalar(&format!(
                    "SELECT json_group_array(json_array(hex(id), json_array({EXTERNAL}), plan_id)) \
                     FROM subscriptions \
                     WHERE id IN (SELECT unhex(value) FROM json_each($1))"
                ))
                .bind(json_id_list(ids.iter().map(|id| id.0))?)
                .fetch_one(pool)
                .await?;
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("usage targets: {e}")))?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "SELECT id, {EXTERNAL}, plan_id FROM subscriptions WHERE id = ANY($1)"
                ))
                .bind(array_column(ids, |id| id.0))
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|row| {
                let target = UsageTarget {
                    external: ExternalRef::try_from(row.external)?,
                    plan_id: row.plan_id.map(PlanId),
                };
                Ok((SubscriptionId(row.id), target))
            })
            .collect()
    }

    /// Hourly totals in one state (newest hour first), e.g. the dead letters.
    pub async fn usage_hours_in(
        &self,
        state: UsageHourState,
        limit: u32,
    ) -> Result<Vec<UsageHour>, StoreError> {
        self.usage_fold().await?;
        let rows: Vec<UsageHourRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {HOUR_COLUMNS} FROM usage_hours WHERE state = $1 \
                 ORDER BY hour DESC, id LIMIT $2"
            ))
            .bind(state.as_str())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UsageHour::try_from).collect()
    }

    /// A subscription's hourly totals, oldest first.
    pub async fn usage_hours_of(
        &self,
        subscription: SubscriptionId,
    ) -> Result<Vec<UsageHour>, StoreError> {
        self.usage_fold().await?;
        let rows: Vec<UsageHourRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {HOUR_COLUMNS} FROM usage_hours WHERE subscription_id = $1 \
                 ORDER BY hour, dimension"
            ))
            .bind(subscription.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(UsageHour::try_from).collect()
    }

    /// How many events are stored for a subscription (audit ledger).
    pub async fn usage_event_count(&self, subscription: SubscriptionId) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_events WHERE subscription_id = $1")
                .bind(subscription.0)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Counts per state and the closed hours still waiting for delivery.
    pub async fn usage_backlog(
        &self,
        closed_through: OffsetDateTime,
    ) -> Result<UsageBacklog, StoreError> {
        self.usage_fold().await?;
        type Counts = (Vec<(String, i64)>, (i64, Option<i64>));
        let (states, due): Counts = on_pool!(self, |pool| {
            let states = sqlx::query_as("SELECT state, COUNT(*) FROM usage_hours GROUP BY state")
                .fetch_all(pool)
                .await?;
            let due = sqlx::query_as(
                "SELECT COUNT(*), MIN(hour) FROM usage_hours \
                 WHERE (state = 'open' AND hour <= $1) OR state = 'sending'",
            )
            .bind(millis(closed_through))
            .fetch_one(pool)
            .await?;
            (states, due)
        });
        Ok(UsageBacklog {
            by_state: states.into_iter().collect(),
            due: due.0,
            oldest_due_hour: due.1.map(from_millis).transpose()?,
        })
    }
}

/// The columns of a subscription a usage record is sent with: from the driver, or from the
/// JSON array of a SQLite read (whose ids are hex strings).
#[derive(sqlx::FromRow, serde::Deserialize)]
struct TargetRow {
    id: Uuid,
    #[sqlx(flatten)]
    external: ExternalColumns,
    plan_id: Option<String>,
}
