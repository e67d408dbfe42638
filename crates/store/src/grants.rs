//! What the entitlement index reads: a tenant's subscriptions with their entitlements, either
//! for one tenant (a check answered from the database while the index loads) or page by page
//! in change order (the index's load and its incremental syncs).
//!
//! Only the columns a check needs are read, so a page of many thousand rows decodes with few
//! allocations per row.

use std::collections::HashMap;

use marketlink_core::{
    Entitlement, EntitlementValue, PlanId, ProductId, SubscriptionId, SubscriptionStatus, TenantId,
    Term,
};
use sqlx::types::Json;
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, on_pool};

/// One subscription bound to a tenant, as an entitlement check sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRow {
    pub subscription_id: SubscriptionId,
    pub tenant_id: TenantId,
    pub marketplace: String,
    pub product_code: String,
    pub product_id: Option<ProductId>,
    pub plan_id: Option<PlanId>,
    pub status: SubscriptionStatus,
    pub quantity: Option<u32>,
    pub free_trial: bool,
    pub term: Option<Term>,
    pub entitlements: Vec<Entitlement>,
}

/// One page of [`Store::changed_grants`]; `last` is the keyset position to continue from.
#[derive(Debug, Default)]
pub struct GrantPage {
    pub rows: Vec<GrantRow>,
    /// `(updated_at, id)` of the page's last row; `None` when nothing changed.
    pub last: Option<(i64, Uuid)>,
}

const GRANT_COLUMNS: &str = "s.id, s.tenant_id, s.marketplace, s.product_code, s.product_id, \
    s.plan_id, s.quantity, s.status, s.free_trial, s.term_start, s.term_end, s.term_unit, \
    s.updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    marketplace: String,
    product_code: String,
    product_id: Option<String>,
    plan_id: Option<String>,
    quantity: Option<i64>,
    status: String,
    free_trial: bool,
    term_start: Option<i64>,
    term_end: Option<i64>,
    term_unit: Option<String>,
    updated_at: i64,
}

type EntitlementTuple = (Uuid, String, Json<EntitlementValue>, Option<i64>);

impl Row {
    fn into_grant(self, entitlements: Vec<Entitlement>) -> Result<GrantRow, StoreError> {
        let status = SubscriptionStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status `{}`", self.status)))?;
        let quantity = self
            .quantity
            .map(u32::try_from)
            .transpose()
            .map_err(|_| StoreError::Corrupt("quantity out of range".into()))?;
        let term =
            if self.term_start.is_some() || self.term_end.is_some() || self.term_unit.is_some() {
                Some(Term {
                    start: self.term_start.map(from_millis).transpose()?,
                    end: self.term_end.map(from_millis).transpose()?,
                    unit: self.term_unit,
                })
            } else {
                None
            };
        Ok(GrantRow {
            subscription_id: SubscriptionId(self.id),
            tenant_id: TenantId(self.tenant_id),
            marketplace: self.marketplace,
            product_code: self.product_code,
            product_id: self.product_id.map(ProductId),
            plan_id: self.plan_id.map(PlanId),
            status,
            quantity,
            free_trial: self.free_trial,
            term,
            entitlements,
        })
    }
}

/// Joins rows with their entitlements (most subscriptions have none).
fn assemble(rows: Vec<Row>, ents: Vec<EntitlementTuple>) -> Result<Vec<GrantRow>, StoreError> {
    let mut by_subscription: HashMap<Uuid, Vec<Entitlement>> = HashMap::new();
    for (id, dimension, value, expires_at) in ents {
        by_subscription.entry(id).or_default().push(Entitlement {
            dimension,
            value: value.0,
            expires_at: expires_at.map(from_millis).transpose()?,
        });
    }
    rows.into_iter()
        .map(|row| {
            let entitlements = by_subscription.remove(&row.id).unwrap_or_default();
            row.into_grant(entitlements)
        })
        .collect()
}

impl Store {
    /// Subscriptions bound to a tenant and changed after `(since, after_id)` in
    /// `(updated_at, id)` order, with their entitlements: what the in-memory entitlement
    /// index loads. Pass the page's `last` to continue; an empty page means caught up.
    pub async fn changed_grants(
        &self,
        since: i64,
        after_id: Option<Uuid>,
        limit: u32,
    ) -> Result<GrantPage, StoreError> {
        let after_id = after_id.unwrap_or(Uuid::nil());
        let rows: Vec<Row> = on_pool!(self, |pool| {
            // Row-value comparisons let both databases walk the (updated_at, id) index.
            sqlx::query_as(&format!(
                "SELECT {GRANT_COLUMNS} FROM subscriptions s WHERE s.tenant_id IS NOT NULL \
                 AND (s.updated_at, s.id) > ($1, $3) ORDER BY s.updated_at, s.id LIMIT $2"
            ))
            .bind(since)
            .bind(i64::from(limit))
            .bind(after_id)
            .fetch_all(pool)
            .await?
        });
        let Some(last) = rows.last().map(|r| (r.updated_at, r.id)) else {
            return Ok(GrantPage::default());
        };
        // One query for the page's entitlements, bounded by its (updated_at, id) range.
        let ents: Vec<EntitlementTuple> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT e.subscription_id, e.dimension, e.value, e.expires_at \
                 FROM entitlements e JOIN subscriptions s ON s.id = e.subscription_id \
                 WHERE s.tenant_id IS NOT NULL \
                 AND (s.updated_at, s.id) > ($1, $3) AND (s.updated_at, s.id) <= ($2, $4)",
            )
            .bind(since)
            .bind(last.0)
            .bind(after_id)
            .bind(last.1)
            .fetch_all(pool)
            .await?
        });
        Ok(GrantPage {
            rows: assemble(rows, ents)?,
            last: Some(last),
        })
    }

    /// One tenant's subscriptions with their entitlements, read now: two indexed point
    /// queries, for checks answered while the in-memory index is still loading.
    pub async fn tenant_grants(&self, tenant: TenantId) -> Result<Vec<GrantRow>, StoreError> {
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {GRANT_COLUMNS} FROM subscriptions s WHERE s.tenant_id = $1 ORDER BY s.id"
            ))
            .bind(tenant.0)
            .fetch_all(pool)
            .await?
        });
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ents: Vec<EntitlementTuple> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT e.subscription_id, e.dimension, e.value, e.expires_at \
                 FROM entitlements e JOIN subscriptions s ON s.id = e.subscription_id \
                 WHERE s.tenant_id = $1",
            )
            .bind(tenant.0)
            .fetch_all(pool)
            .await?
        });
        assemble(rows, ents)
    }
}
