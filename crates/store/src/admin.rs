//! Read models for the operators' admin portal: searches and counts.

use marketlink_core::{Tenant, TenantId};

use crate::{Store, StoreError, on_pool, rows::TenantRow};

impl Store {
    /// Tenants whose name or contact email contains `query` (case-insensitive), by id, after
    /// the cursor.
    pub async fn search_tenants(
        &self,
        query: Option<&str>,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let pattern = query
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| format!("%{}%", q.to_lowercase().replace(['%', '_'], "")));
        let rows: Vec<TenantRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, company, contact_email, created_at FROM tenants \
                 WHERE ($1 IS NULL OR LOWER(name) LIKE $1 OR LOWER(contact_email) LIKE $1) \
                 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(pattern)
            .bind(after.map(|t| t.0))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Tenant::try_from).collect()
    }

    /// Subscriptions per marketplace and status, for the overview.
    pub async fn subscription_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT marketplace, status, COUNT(*) FROM subscriptions \
                 GROUP BY marketplace, status ORDER BY marketplace, status",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn tenant_count(&self) -> Result<i64, StoreError> {
        let count: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// Hourly totals per hour and marketplace since `since`, newest first: how many were
    /// delivered, are still waiting (open or sending), failed (dead or mismatched) or were
    /// skipped. For the portal's "usage sent and pending per hour".
    pub async fn usage_by_hour(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Vec<UsageHourSummary>, StoreError> {
        self.usage_fold().await?;
        let rows: Vec<(i64, String, i64, i64, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT hour, marketplace, \
                 SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN state IN ('open', 'sending') THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN state IN ('dead', 'mismatch') THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN state = 'skipped' THEN 1 ELSE 0 END) \
                 FROM usage_hours WHERE hour >= $1 \
                 GROUP BY hour, marketplace ORDER BY hour DESC, marketplace",
            )
            .bind(crate::millis(since))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(hour, marketplace, delivered, waiting, failed, skipped)| {
                Ok(UsageHourSummary {
                    hour: crate::from_millis(hour)?,
                    marketplace,
                    delivered,
                    waiting,
                    failed,
                    skipped,
                })
            })
            .collect()
    }
}

/// One hour of one marketplace's usage, counted by outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageHourSummary {
    pub hour: time::OffsetDateTime,
    pub marketplace: String,
    pub delivered: i64,
    pub waiting: i64,
    pub failed: i64,
    pub skipped: i64,
}
