//! Bulk loading, for benchmarks and imports: many rows per statement, one transaction.

use marketlink_core::{Subscription, Tenant};

use crate::{Store, StoreError, millis, on_pool, rows::bind_subscription};

/// `INSERT ... VALUES ($1, .. $cols), ...` for `rows` rows.
fn multi_row_insert(head: &str, cols: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        let params: Vec<String> = (1..=cols).map(|c| format!("${}", row * cols + c)).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}

impl Store {
    pub async fn insert_tenants_bulk(&self, tenants: &[Tenant]) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in tenants.chunks(self.backend().insert_rows()) {
                let sql = multi_row_insert(
                    "INSERT INTO tenants (id, name, company, contact_email, created_at) VALUES ",
                    5,
                    chunk.len(),
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
                let sql = multi_row_insert(
                    "INSERT INTO subscriptions (id, tenant_id, marketplace, external_id, \
                     product_code, customer_id, customer_account_id, license_arn, product_id, \
                     plan_id, quantity, status, free_trial, term_start, term_end, term_unit, \
                     created_at, updated_at) VALUES ",
                    18,
                    chunk.len(),
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
