//! Subscriptions: one row per marketplace subscription, unique by (marketplace, external id).

use marketlink_core::{
    Lifecycle, Marketplace, Subscription, SubscriptionId, SubscriptionStatus, TenantId, Transition,
};
use time::OffsetDateTime;

use crate::{
    Store, StoreError, from_millis, millis, on_pool,
    rows::{SUBSCRIPTION_COLUMNS, SubscriptionRow, bind_subscription},
};

/// A subscription row with the time of its current status.
#[derive(sqlx::FromRow)]
struct DatedRow {
    #[sqlx(flatten)]
    subscription: SubscriptionRow,
    status_as_of: Option<i64>,
}

/// Narrows [`Store::list_subscriptions`]; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub tenant_id: Option<TenantId>,
    pub marketplace: Option<Marketplace>,
    pub status: Option<SubscriptionStatus>,
    /// Keyset cursor: only subscriptions with a greater id.
    pub after: Option<SubscriptionId>,
    pub limit: u32,
}

/// How many times a compare-and-swap update is retried when a concurrent writer won.
const CAS_ATTEMPTS: usize = 8;

impl Store {
    /// Records a resolved purchase, or returns the subscription already recorded under the same
    /// marketplace id (landing pages are reloaded; notifications can arrive first).
    pub async fn upsert_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<Subscription, StoreError> {
        let s = subscription;
        on_pool!(self, |pool| {
            bind_subscription!(
                sqlx::query(
                "INSERT INTO subscriptions (id, tenant_id, marketplace, external_id, product_code, \
                 customer_id, customer_account_id, license_arn, product_id, plan_id, quantity, \
                 status, free_trial, term_start, term_end, term_unit, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (marketplace, external_id) DO NOTHING",
            ),
                s
            )
            .execute(pool)
            .await?;
        });
        self.find_subscription(&s.external.marketplace, &s.external.external_id)
            .await?
            .ok_or(StoreError::NotFound("subscription"))
    }

    pub async fn get_subscription(&self, id: SubscriptionId) -> Result<Subscription, StoreError> {
        let row: Option<SubscriptionRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
            ))
            .bind(id.0)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound("subscription"))?.try_into()
    }

    pub async fn find_subscription(
        &self,
        marketplace: &Marketplace,
        external_id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE marketplace = $1 AND external_id = $2"
            ))
            .bind(marketplace.as_str())
            .bind(external_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(Subscription::try_from).transpose()
    }

    pub async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR marketplace = $2) \
                 AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id > $4) \
                 ORDER BY id LIMIT $5"
            ))
            .bind(filter.tenant_id.map(|t| t.0))
            .bind(filter.marketplace.as_ref().map(|m| m.as_str()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.after.map(|s| s.0))
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Subscription::try_from).collect()
    }

    /// Binds a subscription to a tenant. Refused when it already belongs to another tenant:
    /// one marketplace identity, one account (seed 000, step 8).
    pub async fn bind_subscription(
        &self,
        id: SubscriptionId,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<Subscription, StoreError> {
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE subscriptions SET tenant_id = $1, updated_at = $2 \
                 WHERE id = $3 AND (tenant_id IS NULL OR tenant_id = $1)",
            )
            .bind(tenant.0)
            .bind(millis(now))
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let current = self.get_subscription(id).await?;
        if updated == 0 {
            return Err(StoreError::Conflict(
                "this marketplace subscription is already linked to another account".into(),
            ));
        }
        Ok(current)
    }

    /// Applies a lifecycle event of our own making (the vendor's activation, a failed one) at
    /// `now`: [`Store::apply_lifecycle_at`] with our clock as the event's time.
    pub async fn apply_lifecycle(
        &self,
        id: SubscriptionId,
        event: Lifecycle,
        now: OffsetDateTime,
    ) -> Result<(Subscription, Transition), StoreError> {
        self.apply_lifecycle_at(id, event, now, now).await
    }

    /// Applies a lifecycle event the marketplace dated `occurred_at` through the core state
    /// machine with time ([`SubscriptionStatus::apply_at`]): older than the last change it is
    /// stale, newer than a cancellation an activation revives the subscription. A change keeps
    /// `occurred_at` as the status's time. Concurrent writers are resolved by compare-and-swap
    /// on the status and its time, so no lock is held across the decision.
    pub async fn apply_lifecycle_at(
        &self,
        id: SubscriptionId,
        event: Lifecycle,
        occurred_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(Subscription, Transition), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut subscription, as_of) = self.subscription_with_status_time(id).await?;
            let before = subscription.status;
            let transition = before.apply_at(event, occurred_at, as_of)?;
            let Transition::Changed { to, .. } = transition else {
                return Ok((subscription, transition));
            };
            let swapped = on_pool!(self, |pool| {
                sqlx::query(
                    "UPDATE subscriptions SET status = $1, status_as_of = $2, updated_at = $3 \
                     WHERE id = $4 AND status = $5 AND status_as_of IS NOT DISTINCT FROM $6",
                )
                .bind(to.as_str())
                .bind(millis(occurred_at))
                .bind(millis(now))
                .bind(id.0)
                .bind(before.as_str())
                .bind(as_of.map(millis))
                .execute(pool)
                .await?
                .rows_affected()
            });
            if swapped == 1 {
                subscription.status = to;
                subscription.updated_at = now;
                return Ok((subscription, transition));
            }
        }
        Err(StoreError::Conflict(format!(
            "subscription {id} kept changing while applying {event}"
        )))
    }

    /// A subscription and the marketplace time of its current status (`None`: unknown).
    async fn subscription_with_status_time(
        &self,
        id: SubscriptionId,
    ) -> Result<(Subscription, Option<OffsetDateTime>), StoreError> {
        let row: Option<DatedRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS}, status_as_of FROM subscriptions WHERE id = $1"
            ))
            .bind(id.0)
            .fetch_optional(pool)
            .await?
        });
        let row = row.ok_or(StoreError::NotFound("subscription"))?;
        let as_of = row.status_as_of.map(from_millis).transpose()?;
        Ok((row.subscription.try_into()?, as_of))
    }

    /// Stores plan, quantity, term, trial flag and catalog product as the marketplace stated
    /// them at `as_of`. A statement older than the one already stored is stale (deliveries
    /// arrive out of order) and is ignored: returns whether it was applied.
    pub async fn update_subscription_terms(
        &self,
        subscription: &Subscription,
        as_of: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let s = subscription;
        let term = s.term.as_ref();
        let updated = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE subscriptions SET product_id = $1, plan_id = $2, quantity = $3, \
                 free_trial = $4, term_start = $5, term_end = $6, term_unit = $7, updated_at = $8, \
                 terms_as_of = $10 \
                 WHERE id = $9 AND (terms_as_of IS NULL OR terms_as_of <= $10)",
            )
            .bind(s.product_id.as_ref().map(|p| p.as_str()))
            .bind(s.plan_id.as_ref().map(|p| p.as_str()))
            .bind(s.quantity.map(i64::from))
            .bind(s.free_trial)
            .bind(term.and_then(|t| t.start).map(millis))
            .bind(term.and_then(|t| t.end).map(millis))
            .bind(term.and_then(|t| t.unit.as_deref()))
            .bind(millis(now))
            .bind(s.id.0)
            .bind(millis(as_of))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            // Distinguish a stale statement from a missing subscription.
            self.get_subscription(s.id).await?;
            return Ok(false);
        }
        Ok(true)
    }
}
