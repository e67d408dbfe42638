//! Other names of a subscription at its marketplace (core `Alias`): recorded as providers learn
//! them, looked up when a notification names a subscription only that way.

use marketlink_core::{Alias, Marketplace, Subscription, SubscriptionId};
use time::OffsetDateTime;

use crate::{
    Store, StoreError, millis, on_pool,
    rows::{SUBSCRIPTION_COLUMNS, SubscriptionRow},
};

impl Store {
    /// Records `aliases` for `subscription`. A name already recorded keeps the subscription it
    /// names (names never move), so a repeated or stale message changes nothing.
    pub async fn record_aliases(
        &self,
        subscription: SubscriptionId,
        marketplace: &Marketplace,
        aliases: &[Alias],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for alias in aliases {
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO subscription_aliases \
                     (marketplace, kind, value, subscription_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (marketplace, kind, value) DO NOTHING",
                )
                .bind(marketplace.as_str())
                .bind(&alias.kind)
                .bind(&alias.value)
                .bind(subscription.0)
                .bind(millis(now))
                .execute(pool)
                .await?;
            });
        }
        Ok(())
    }

    /// The subscription `alias` names on `marketplace`, if any.
    pub async fn find_subscription_by_alias(
        &self,
        marketplace: &Marketplace,
        alias: &Alias,
    ) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = \
                 (SELECT subscription_id FROM subscription_aliases \
                  WHERE marketplace = $1 AND kind = $2 AND value = $3)"
            ))
            .bind(marketplace.as_str())
            .bind(&alias.kind)
            .bind(&alias.value)
            .fetch_optional(pool)
            .await?
        });
        row.map(Subscription::try_from).transpose()
    }

    /// Every alias recorded for a subscription, oldest first (for the admin timeline).
    pub async fn subscription_aliases(
        &self,
        subscription: SubscriptionId,
    ) -> Result<Vec<Alias>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT kind, value FROM subscription_aliases \
                 WHERE subscription_id = $1 ORDER BY created_at, kind, value",
            )
            .bind(subscription.0)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(kind, value)| Alias { kind, value })
            .collect())
    }

    /// Moves a subscription to a new licence (AWS renewal or replacement with a new LicenseArn)
    /// the marketplace announced at `as_of`. A licence already current is unchanged; an
    /// announcement older than the current licence's is stale (a late delivery must not move
    /// metering back to a licence that was replaced).
    pub async fn set_license_arn(
        &self,
        subscription: SubscriptionId,
        license_arn: &str,
        as_of: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<LicenseChange, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE subscriptions SET license_arn = $1, license_as_of = $2, updated_at = $3 \
                 WHERE id = $4 AND (license_arn IS NULL OR license_arn <> $1) \
                 AND (license_as_of IS NULL OR license_as_of <= $2)",
            )
            .bind(license_arn)
            .bind(millis(as_of))
            .bind(millis(now))
            .bind(subscription.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done > 0 {
            return Ok(LicenseChange::Changed);
        }
        let current = self.get_subscription(subscription).await?;
        Ok(
            if current.external.license_arn.as_deref() == Some(license_arn) {
                LicenseChange::Unchanged
            } else {
                LicenseChange::Stale
            },
        )
    }
}

/// What [`Store::set_license_arn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseChange {
    Changed,
    /// Already the subscription's licence (a repeated delivery).
    Unchanged,
    /// Older than the announcement of the current licence: ignored.
    Stale,
}
