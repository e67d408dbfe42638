//! A subscription's timeline (every event applied and its outcome) and its entitlements.
//! The entitlement index reads them with `grants`.

use marketlink_core::{Entitlement, EntitlementValue, SubscriptionId};
use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, millis, on_pool};

/// One line of a subscription's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub subscription_id: SubscriptionId,
    /// Where it came from: `inbox:<id>`, `landing`, `vendor`, `operator`.
    pub source: String,
    /// What happened, e.g. `lifecycle:activate`, `plan_changed`.
    pub kind: String,
    /// What we did: `applied`, `unchanged`, `stale`, `refused: ...`.
    pub outcome: String,
    pub detail: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct TimelineRow {
    id: Uuid,
    subscription_id: Uuid,
    source: String,
    kind: String,
    outcome: String,
    detail: Json<serde_json::Value>,
    occurred_at: i64,
    recorded_at: i64,
}

#[derive(sqlx::FromRow)]
struct EntitlementRow {
    dimension: String,
    value: Json<EntitlementValue>,
    expires_at: Option<i64>,
}

impl Store {
    pub async fn record_timeline(&self, entry: &TimelineEntry) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO subscription_events (id, subscription_id, source, kind, outcome, \
                 detail, occurred_at, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(entry.id)
            .bind(entry.subscription_id.0)
            .bind(&entry.source)
            .bind(&entry.kind)
            .bind(&entry.outcome)
            .bind(Json(&entry.detail))
            .bind(millis(entry.occurred_at))
            .bind(millis(entry.recorded_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The timeline, oldest first.
    pub async fn timeline(
        &self,
        subscription: SubscriptionId,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows: Vec<TimelineRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, subscription_id, source, kind, outcome, detail, occurred_at, \
                 recorded_at FROM subscription_events WHERE subscription_id = $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(subscription.0)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(TimelineEntry {
                    id: row.id,
                    subscription_id: SubscriptionId(row.subscription_id),
                    source: row.source,
                    kind: row.kind,
                    outcome: row.outcome,
                    detail: row.detail.0,
                    occurred_at: from_millis(row.occurred_at)?,
                    recorded_at: from_millis(row.recorded_at)?,
                })
            })
            .collect()
    }

    /// Replaces the subscription's entitlements with the marketplace's full current set.
    pub async fn replace_entitlements(
        &self,
        subscription: SubscriptionId,
        entitlements: &[Entitlement],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM entitlements WHERE subscription_id = $1")
                .bind(subscription.0)
                .execute(&mut *tx)
                .await?;
            for e in entitlements {
                sqlx::query(
                    "INSERT INTO entitlements (subscription_id, dimension, value, expires_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(subscription.0)
                .bind(&e.dimension)
                .bind(Json(&e.value))
                .bind(e.expires_at.map(millis))
                .bind(millis(now))
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    StoreError::on_unique(err, || {
                        format!(
                            "dimension `{}` appears twice in the entitlements",
                            e.dimension
                        )
                    })
                })?;
            }
            // The subscription changed as far as readers of its entitlements are concerned.
            sqlx::query("UPDATE subscriptions SET updated_at = $1 WHERE id = $2")
                .bind(millis(now))
                .bind(subscription.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn entitlements(
        &self,
        subscription: SubscriptionId,
    ) -> Result<Vec<Entitlement>, StoreError> {
        let rows: Vec<EntitlementRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT dimension, value, expires_at FROM entitlements \
                 WHERE subscription_id = $1 ORDER BY dimension",
            )
            .bind(subscription.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(Entitlement {
                    dimension: row.dimension,
                    value: row.value.0,
                    expires_at: row.expires_at.map(from_millis).transpose()?,
                })
            })
            .collect()
    }
}
