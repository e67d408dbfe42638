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
}
