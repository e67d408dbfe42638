//! Claiming a purchase for a tenant in one transaction: the subscription row as the landing
//! page resolved it (or as a notification created it first), bound to the tenant, and — at
//! sign-up — the tenant and its owner with it. Either all of it is stored or none: a claim
//! that is refused leaves no tenant without a subscription behind.

use marketlink_core::{Subscription, Tenant, TenantId, User};
use time::OffsetDateTime;

use crate::{
    Store, StoreError, millis, on_pool,
    rows::{SUBSCRIPTION_COLUMNS, SubscriptionRow, bind_subscription},
    users::insert_tenant_with_owner,
};

/// How a claim ended. The refusals roll the whole transaction back.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The subscription as stored, bound to the tenant.
    Bound(Box<Subscription>),
    /// The marketplace identity already belongs to another tenant (seed 000, step 8).
    LinkedElsewhere,
    /// Sign-up only: an account with the owner's email exists (the message says so).
    EmailTaken(String),
}

/// Fills in what the landing page learned on a subscription a notification created first;
/// what the notification stated wins.
fn fill_in(stored: &mut Subscription, fresh: &Subscription) {
    stored.product_id = stored
        .product_id
        .take()
        .or_else(|| fresh.product_id.clone());
    stored.plan_id = stored.plan_id.take().or_else(|| fresh.plan_id.clone());
    stored.quantity = stored.quantity.or(fresh.quantity);
    stored.free_trial |= fresh.free_trial;
    stored.term = stored.term.take().or_else(|| fresh.term.clone());
}

/// Inside an open transaction `$tx`: records `$fresh` (or finds the row already recorded under
/// its marketplace id), fills it in, and binds it to `$tenant`. Evaluates to
/// `Result<Option<Subscription>, StoreError>`: `None` when another tenant holds it.
macro_rules! claim_in {
    ($tx:ident, $fresh:expr, $tenant:expr, $now:expr) => {
        async {
            let (fresh, tenant, now): (&Subscription, TenantId, OffsetDateTime) =
                ($fresh, $tenant, $now);
            bind_subscription!(
                sqlx::query(
                    "INSERT INTO subscriptions (id, tenant_id, marketplace, external_id, \
                     product_code, customer_id, customer_account_id, license_arn, product_id, \
                     plan_id, quantity, status, free_trial, term_start, term_end, term_unit, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18) ON CONFLICT (marketplace, external_id) DO NOTHING",
                ),
                fresh
            )
            .execute(&mut *$tx)
            .await?;
            let select = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE marketplace = $1 AND external_id = $2"
            );
            let row: SubscriptionRow = sqlx::query_as(&select)
                .bind(fresh.external.marketplace.as_str())
                .bind(&fresh.external.external_id)
                .fetch_one(&mut *$tx)
                .await?;
            let mut stored = Subscription::try_from(row)?;
            if stored.id != fresh.id {
                fill_in(&mut stored, fresh);
                let term = stored.term.as_ref();
                sqlx::query(
                    "UPDATE subscriptions SET product_id = $1, plan_id = $2, quantity = $3, \
                     free_trial = $4, term_start = $5, term_end = $6, term_unit = $7, \
                     updated_at = $8, terms_as_of = $8 \
                     WHERE id = $9 AND (terms_as_of IS NULL OR terms_as_of <= $8)",
                )
                .bind(stored.product_id.as_ref().map(|p| p.as_str()))
                .bind(stored.plan_id.as_ref().map(|p| p.as_str()))
                .bind(stored.quantity.map(i64::from))
                .bind(stored.free_trial)
                .bind(term.and_then(|t| t.start).map(millis))
                .bind(term.and_then(|t| t.end).map(millis))
                .bind(term.and_then(|t| t.unit.as_deref()))
                .bind(millis(now))
                .bind(stored.id.0)
                .execute(&mut *$tx)
                .await?;
            }
            let bound = sqlx::query(
                "UPDATE subscriptions SET tenant_id = $1, updated_at = $2 \
                 WHERE id = $3 AND (tenant_id IS NULL OR tenant_id = $1)",
            )
            .bind(tenant.0)
            .bind(millis(now))
            .bind(stored.id.0)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if bound == 0 {
                return Ok::<_, StoreError>(None);
            }
            let select = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
            let row: SubscriptionRow = sqlx::query_as(&select)
                .bind(stored.id.0)
                .fetch_one(&mut *$tx)
                .await?;
            Ok(Some(Subscription::try_from(row)?))
        }
        .await
    };
}

impl Store {
    /// Records a resolved purchase (or finds the subscription a notification created first,
    /// filling in what it lacks) and binds it to `tenant`, in one transaction.
    pub async fn claim_subscription(
        &self,
        fresh: &Subscription,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            match claim_in!(tx, fresh, tenant, now)? {
                Some(bound) => {
                    tx.commit().await?;
                    Ok(Claim::Bound(Box::new(bound)))
                }
                None => Ok(Claim::LinkedElsewhere),
            }
        })
    }

    /// Sign-up: creates `tenant` and its `owner`, records the purchase and binds it to the new
    /// tenant, all in one transaction. A refused claim stores nothing.
    pub async fn sign_up_and_claim(
        &self,
        tenant: &Tenant,
        owner: &User,
        password_hash: &str,
        fresh: &Subscription,
        now: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            match insert_tenant_with_owner!(tx, tenant, owner, password_hash) {
                Ok(()) => {}
                Err(StoreError::Conflict(message)) => return Ok(Claim::EmailTaken(message)),
                Err(error) => return Err(error),
            }
            match claim_in!(tx, fresh, tenant.id, now)? {
                Some(bound) => {
                    tx.commit().await?;
                    Ok(Claim::Bound(Box::new(bound)))
                }
                None => Ok(Claim::LinkedElsewhere),
            }
        })
    }
}
