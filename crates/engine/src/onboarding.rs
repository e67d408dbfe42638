//! Turning a resolved purchase into a subscription bound to a tenant (a signed-in user
//! linking it, or any claim), announcing it to the vendor, and activating it where the
//! marketplace expects us to. Sign-up's claim is in `signup`.

use marketlink_core::{
    Lifecycle, ResolvedPurchase, Subscription, SubscriptionId, TenantId, Transition, User,
};
use marketlink_store::{NewJob, StoreError, TimelineEntry, signup::Claim};
use uuid::Uuid;

use crate::Engine;

pub const ACTIVATE_JOB: &str = "activate";

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The marketplace identity already belongs to another tenant (seed 000, step 8).
    #[error("this {0} subscription is already linked to another account")]
    AlreadyLinked(String),
    /// Only the account's owners and admins add subscriptions to it.
    #[error("only owners and admins can add subscriptions to this account")]
    NotPermitted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// A signed-in user adds a purchase to their own tenant: the purchase was resolved for
    /// this browser by the marketplace, so holding it is the buyer's proof, and the user must
    /// be one of the tenant's owners or admins (a member cannot bind a bill to the account).
    /// `user` is as the store has it now (removed users are not found).
    pub async fn link_purchase(
        &self,
        user: &User,
        purchase: &ResolvedPurchase,
    ) -> Result<Subscription, ClaimError> {
        if !crate::may_change_subscriptions(user.role) {
            return Err(ClaimError::NotPermitted);
        }
        let linked = self.claim_purchase(purchase, user.tenant_id).await?;
        tracing::info!(subscription = %linked.id, tenant = %user.tenant_id, "subscription linked");
        Ok(linked)
    }

    /// The subscription a resolved purchase already is, if we have stored it: under its
    /// marketplace id, or under another name the marketplace gave it (a renewal's new licence).
    pub async fn stored_purchase(
        &self,
        purchase: &ResolvedPurchase,
    ) -> Result<Option<Subscription>, StoreError> {
        let external = &purchase.subscription;
        if let Some(found) = self
            .store
            .find_subscription(&external.marketplace, &external.external_id)
            .await?
        {
            return Ok(Some(found));
        }
        for alias in &purchase.aliases {
            if let Some(found) = self
                .store
                .find_subscription_by_alias(&external.marketplace, alias)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// A buyer who comes back with a purchase an account here already holds: AWS classic
    /// listings give a buyer who subscribes again after cancelling the same
    /// CustomerIdentifier, so the landing resolves to the subscription they had. They sign in
    /// to that account (which links it again); a new account would be refused.
    pub async fn returning_purchase(
        &self,
        purchase: &ResolvedPurchase,
    ) -> Result<Option<Subscription>, StoreError> {
        Ok(self
            .stored_purchase(purchase)
            .await?
            .filter(|s| s.tenant_id.is_some()))
    }

    /// The purchase as we know it: named by the subscription already stored for it when the
    /// marketplace resolved one of its other names, so a claim binds that subscription rather
    /// than storing a second one.
    pub(crate) async fn known_purchase(
        &self,
        purchase: &ResolvedPurchase,
    ) -> Result<ResolvedPurchase, StoreError> {
        let mut known = purchase.clone();
        if let Some(stored) = self.stored_purchase(purchase).await? {
            known.subscription = stored.external;
        }
        Ok(known)
    }

    /// Records the purchase the buyer just resolved (or finds the subscription a notification
    /// created first, or the buyer had before) and binds it to `tenant` in one transaction,
    /// then announces it (see [`Engine::announce_claim`]). AWS subscriptions stay pending
    /// until subscribe-success.
    pub async fn claim_purchase(
        &self,
        purchase: &ResolvedPurchase,
        tenant: TenantId,
    ) -> Result<Subscription, ClaimError> {
        let now = self.clock.now();
        let purchase = &self.known_purchase(purchase).await?;
        let fresh = self.fresh_subscription(purchase, now);
        match self.store.claim_subscription(&fresh, tenant, now).await? {
            Claim::Bound(bound) => {
                self.announce_claim(&bound, purchase, tenant).await?;
                Ok(*bound)
            }
            Claim::LinkedElsewhere | Claim::EmailTaken(_) => Err(ClaimError::AlreadyLinked(
                purchase.subscription.marketplace.to_string(),
            )),
        }
    }

    /// After the claim is committed: the timeline entry, the contract's entitlements, the
    /// vendor's `subscription.linked` webhook, and activation where the marketplace waits for
    /// us (Azure).
    pub(crate) async fn announce_claim(
        &self,
        bound: &Subscription,
        purchase: &ResolvedPurchase,
        tenant: TenantId,
    ) -> Result<(), StoreError> {
        let external = &purchase.subscription;
        self.store
            .record_aliases(
                bound.id,
                &external.marketplace,
                &purchase.aliases,
                self.clock.now(),
            )
            .await?;
        self.record(
            bound.id,
            "landing",
            "registered",
            "applied",
            serde_json::json!({
                "tenant_id": tenant,
                "plan_id": bound.plan_id,
                "quantity": bound.quantity,
                "free_trial": bound.free_trial,
            }),
        )
        .await?;
        self.refresh_entitlements(bound, "landing").await;
        let mut data = crate::webhooks::subscription_data(bound);
        data["registration"] = serde_json::json!({
            "buyer_email": purchase.buyer_email,
            "display_name": purchase.display_name,
            "customer_id": external.customer_id,
            "customer_account_id": external.customer_account_id,
        });
        self.notify_vendor("subscription.linked", data).await?;
        let vendor_activates = self
            .providers
            .get(&external.marketplace)
            .is_some_and(|p| p.capabilities().vendor_activates);
        if vendor_activates && bound.status == marketlink_core::SubscriptionStatus::Pending {
            let now = self.clock.now();
            self.store
                .outbox_enqueue(
                    &NewJob {
                        marketplace: external.marketplace.to_string(),
                        kind: ACTIVATE_JOB.into(),
                        dedup_key: bound.id.to_string(),
                        payload: serde_json::json!({ "subscription_id": bound.id }),
                        run_at: now,
                    },
                    now,
                )
                .await?;
            self.outbox_ready.notify_one();
        }
        Ok(())
    }

    /// Reads the contract's entitlements from the marketplace (contracts are bought with
    /// quantities up front). Best effort: on failure the next entitlement notification brings
    /// them, so the buyer's registration does not fail for it.
    pub async fn refresh_entitlements(&self, subscription: &Subscription, source: &str) {
        let Some(provider) = self.providers.get(&subscription.external.marketplace) else {
            return;
        };
        match provider.entitlements(&subscription.external).await {
            Ok(entitlements) => {
                let now = self.clock.now();
                let stored = self
                    .store
                    .replace_entitlements(subscription.id, &entitlements, now)
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(subscription = %subscription.id, %error, "cannot store entitlements");
                    return;
                }
                let _ = self
                    .record(
                        subscription.id,
                        source,
                        "entitlements_read",
                        "applied",
                        serde_json::json!({ "count": entitlements.len() }),
                    )
                    .await;
            }
            Err(error) => {
                tracing::warn!(subscription = %subscription.id, %error, "cannot read entitlements at registration");
            }
        }
    }

    /// Runs one activation: tells the marketplace, then marks the subscription active.
    pub(crate) async fn activate(
        &self,
        id: SubscriptionId,
    ) -> Result<(), marketlink_core::ProviderError> {
        let subscription = self.store.get_subscription(id).await.map_err(|e| {
            marketlink_core::ProviderError::retryable(format!("cannot read subscription: {e}"))
        })?;
        if subscription.status != marketlink_core::SubscriptionStatus::Pending {
            return Ok(());
        }
        let provider = self
            .providers
            .get(&subscription.external.marketplace)
            .ok_or_else(|| {
                marketlink_core::ProviderError::Configuration(format!(
                    "no provider for {}",
                    subscription.external.marketplace
                ))
            })?;
        provider
            .activate(
                &subscription.external,
                subscription.plan_id.as_ref(),
                subscription.quantity,
            )
            .await?;
        let now = self.clock.now();
        let outcome = match self
            .store
            .apply_lifecycle(id, Lifecycle::Activate, now)
            .await
        {
            Ok((_, Transition::Changed { .. })) => "applied",
            Ok((_, Transition::Unchanged(_))) => "unchanged",
            Ok((_, Transition::Stale(_))) => "stale",
            Err(StoreError::Domain(_)) => "refused: no longer pending",
            Err(e) => {
                return Err(marketlink_core::ProviderError::retryable(format!(
                    "activated at the marketplace but not recorded yet: {e}"
                )));
            }
        };
        self.record(
            id,
            "vendor",
            "lifecycle:activate",
            outcome,
            serde_json::json!({}),
        )
        .await
        .map_err(|e| marketlink_core::ProviderError::retryable(e.to_string()))?;
        if outcome == "applied" {
            let current = self
                .store
                .get_subscription(id)
                .await
                .map_err(|e| marketlink_core::ProviderError::retryable(e.to_string()))?;
            self.notify_vendor(
                "subscription.activated",
                crate::webhooks::subscription_data(&current),
            )
            .await
            .map_err(|e| marketlink_core::ProviderError::retryable(e.to_string()))?;
        }
        Ok(())
    }

    pub(crate) async fn record(
        &self,
        id: SubscriptionId,
        source: &str,
        kind: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.store
            .record_timeline(&TimelineEntry {
                id: Uuid::now_v7(),
                subscription_id: id,
                source: source.into(),
                kind: kind.into(),
                outcome: outcome.into(),
                detail,
                occurred_at: now,
                recorded_at: now,
            })
            .await
    }
}
