//! Tenants: the vendor's customer accounts.

use marketlink_core::{Tenant, TenantId};

use crate::{Store, StoreError, millis, on_pool, rows::TenantRow};

impl Store {
    pub async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO tenants (id, name, company, contact_email, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.id.0)
            .bind(&tenant.name)
            .bind(&tenant.company)
            .bind(&tenant.contact_email)
            .bind(millis(tenant.created_at))
            .execute(pool)
            .await
            .map_err(|e| StoreError::on_unique(e, || format!("tenant {} exists", tenant.id)))?;
        });
        Ok(())
    }

    pub async fn get_tenant(&self, id: TenantId) -> Result<Tenant, StoreError> {
        let row: Option<TenantRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, company, contact_email, created_at FROM tenants WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound("tenant"))?.try_into()
    }

    /// Tenants, oldest first, after the cursor `after` (keyset pagination on the v7 id).
    pub async fn list_tenants(
        &self,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let rows: Vec<TenantRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, company, contact_email, created_at FROM tenants \
                 WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            )
            .bind(after.map(|t| t.0))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Tenant::try_from).collect()
    }
}
