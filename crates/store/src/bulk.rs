//! Bulk loading, for benchmarks and imports: many rows per statement, one transaction.

use marketlink_core::{Subscription, Tenant};

use crate::{
    Store, StoreError, bind_lists::numbered_rows, millis, on_pool, rows::bind_subscription,
};

impl Store {
    pub async fn insert_tenants_bulk(&self, tenants: &[Tenant]) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in tenants.chunks(self.backend().insert_rows()) {
                let sql = numbered_rows(
                    "INSERT INTO tenants (id, name, company, contact_email, created_at) VALUES ",
                    chunk.len(),
                    5,
                    "",
                    "",
                );
                let mut query = sqlx::query(&sql);
                for t in chunk {
                    query = query
                        .bind(t.id.0)
                        .bind(&t.name)
                        .bind(&t.company)
                        .bind(&t.contact_email)
                        .bind(millis(t.created_at));
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn insert_subscriptions_bulk(
        &self,
        subscriptions: &[Subscription],
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in subscriptions.chunks(self.backend().insert_rows()) {
                let sql = numbered_rows(
                    "INSERT INTO subscriptions (id, tenant_id, marketplace, external_id, \
                     product_code, customer_id, customer_account_id, license_arn, product_id, \
                     plan_id, quantity, status, free_trial, term_start, term_end, term_unit, \
                     created_at, updated_at) VALUES ",
                    chunk.len(),
                    18,
                    "",
                    "",
                );
                let mut query = sqlx::query(&sql);
                for s in chunk {
                    query = bind_subscription!(query, s);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
