//! Private row types: the database shape, converted into domain types at the boundary.

use marketlink_core::{
    ExternalRef, Marketplace, PlanId, ProductId, Subscription, SubscriptionId, SubscriptionStatus,
    Tenant, TenantId, Term,
};
use uuid::Uuid;

use crate::{StoreError, from_millis};

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub company: Option<String>,
    pub contact_email: String,
    pub created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            id: TenantId(row.id),
            name: row.name,
            company: row.company,
            contact_email: row.contact_email,
            created_at: from_millis(row.created_at)?,
        })
    }
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "id, tenant_id, marketplace, external_id, \
    product_code, customer_id, customer_account_id, license_arn, product_id, plan_id, quantity, \
    status, free_trial, term_start, term_end, term_unit, created_at, updated_at";

/// The columns naming a subscription on its marketplace ([`ExternalRef`]): from the driver,
/// or as a JSON array (a SQLite read returning one JSON row).
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ExternalColumns {
    pub marketplace: String,
    pub external_id: String,
    pub product_code: String,
    pub customer_id: String,
    pub customer_account_id: Option<String>,
    pub license_arn: Option<String>,
}

impl TryFrom<ExternalColumns> for ExternalRef {
    type Error = StoreError;
    fn try_from(row: ExternalColumns) -> Result<Self, Self::Error> {
        Ok(ExternalRef {
            marketplace: Marketplace::parse(&row.marketplace)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            external_id: row.external_id,
            product_code: row.product_code,
            customer_id: row.customer_id,
            customer_account_id: row.customer_account_id,
            license_arn: row.license_arn,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    #[sqlx(flatten)]
    pub external: ExternalColumns,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub quantity: Option<i64>,
    pub status: String,
    pub free_trial: bool,
    pub term_start: Option<i64>,
    pub term_end: Option<i64>,
    pub term_unit: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;
    fn try_from(row: SubscriptionRow) -> Result<Self, Self::Error> {
        let status = SubscriptionStatus::parse(&row.status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status `{}`", row.status)))?;
        let quantity = row
            .quantity
            .map(u32::try_from)
            .transpose()
            .map_err(|_| StoreError::Corrupt("quantity out of range".into()))?;
        let term = if row.term_start.is_some() || row.term_end.is_some() || row.term_unit.is_some()
        {
            Some(Term {
                start: row.term_start.map(from_millis).transpose()?,
                end: row.term_end.map(from_millis).transpose()?,
                unit: row.term_unit,
            })
        } else {
            None
        };
        Ok(Subscription {
            id: SubscriptionId(row.id),
            tenant_id: row.tenant_id.map(TenantId),
            external: ExternalRef::try_from(row.external)?,
            product_id: row.product_id.map(ProductId),
            plan_id: row.plan_id.map(PlanId),
            quantity,
            status,
            free_trial: row.free_trial,
            term,
            created_at: from_millis(row.created_at)?,
            updated_at: from_millis(row.updated_at)?,
        })
    }
}

/// Binds a subscription's columns in `SUBSCRIPTION_COLUMNS` order, for single and bulk inserts.
macro_rules! bind_subscription {
    ($query:expr, $s:expr) => {{
        let s = $s;
        let term = s.term.as_ref();
        $query
            .bind(s.id.0)
            .bind(s.tenant_id.map(|t| t.0))
            .bind(s.external.marketplace.as_str())
            .bind(&s.external.external_id)
            .bind(&s.external.product_code)
            .bind(&s.external.customer_id)
            .bind(&s.external.customer_account_id)
            .bind(&s.external.license_arn)
            .bind(s.product_id.as_ref().map(|p| p.as_str()))
            .bind(s.plan_id.as_ref().map(|p| p.as_str()))
            .bind(s.quantity.map(i64::from))
            .bind(s.status.as_str())
            .bind(s.free_trial)
            .bind(term.and_then(|t| t.start).map($crate::millis))
            .bind(term.and_then(|t| t.end).map($crate::millis))
            .bind(term.and_then(|t| t.unit.as_deref()))
            .bind($crate::millis(s.created_at))
            .bind($crate::millis(s.updated_at))
    }};
}
pub(crate) use bind_subscription;
