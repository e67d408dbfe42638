//! Bulk loading, for benchmarks and imports: many rows per statement, one transaction.

use marketlink_core::{Subscription, Tenant};

use crate::{Store, StoreError, millis, on_pool, rows::bind_subscription};

/// Rows per multi-row INSERT (18 bind parameters each stays under SQLite's limit).
const CHUNK: usize = 500;

impl Store {
    pub async fn insert_tenants_bulk(&self, tenants: &[Tenant]) -> Result<(), StoreError> {
        for chunk in tenants.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO tenants (id, name, company, contact_email, created_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                ));
            }
            on_pool!(self, |pool| {
                let mut query = sqlx::query(&sql);
                for t in chunk {
                    query = query
                        .bind(t.id.0)
                        .bind(&t.name)
                        .bind(&t.company)
                        .bind(&t.contact_email)
                        .bind(millis(t.created_at));
                }
                query.execute(pool).await?;
            });
        }
        Ok(())
    }

    pub async fn insert_subscriptions_bulk(
        &self,
        subscriptions: &[Subscription],
    ) -> Result<(), StoreError> {
        const COLS: usize = 18;
        for chunk in subscriptions.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO subscriptions (id, tenant_id, marketplace, external_id, product_code, \
                 customer_id, customer_account_id, license_arn, product_id, plan_id, quantity, \
                 status, free_trial, term_start, term_end, term_unit, created_at, updated_at) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let params: Vec<String> =
                    (1..=COLS).map(|c| format!("${}", i * COLS + c)).collect();
                sql.push('(');
                sql.push_str(&params.join(", "));
                sql.push(')');
            }
            on_pool!(self, |pool| {
                let mut query = sqlx::query(&sql);
                for s in chunk {
                    query = bind_subscription!(query, s);
                }
                query.execute(pool).await?;
            });
        }
        Ok(())
    }
}
