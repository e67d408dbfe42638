//! Changes the vendor starts: plan, quantity, cancellation (Microsoft lets the publisher do
//! all three; AWS changes start on the marketplace only). A change still running is followed
//! by an outbox job until it ends (`follow.rs`); the marketplace's notification, when it
//! comes, is applied by the inbox like any other.

use marketlink_core::{
    ChangeOutcome, PlanId, ProviderError, Role, SubscriptionId, SubscriptionStatus, User,
};
use marketlink_store::StoreError;

use crate::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorChange {
    Plan(PlanId),
    Quantity(u32),
    Cancel,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0} does not let the vendor make this change; the buyer makes it on the marketplace")]
    NotOffered(String),
    #[error("the subscription is {0}; only an active subscription can be changed")]
    NotChangeable(SubscriptionStatus),
    /// The subscription is not the user's tenant's (or does not exist).
    #[error("there is no such subscription in this account")]
    NotFound,
    /// Only the account's owners and admins change subscriptions.
    #[error("only owners and admins can change subscriptions")]
    NotPermitted,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a buyer-side user in `role` may start changes to their tenant's subscriptions.
pub fn may_change_subscriptions(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

impl Engine {
    /// A change started from the account page by a signed-in `user`: only to their own
    /// tenant's subscription, and only by its owners and admins.
    pub async fn request_change_as(
        &self,
        user: &User,
        id: SubscriptionId,
        change: VendorChange,
    ) -> Result<ChangeOutcome, ChangeError> {
        if self
            .tenant_subscription(user.tenant_id, id)
            .await?
            .is_none()
        {
            return Err(ChangeError::NotFound);
        }
        if !may_change_subscriptions(user.role) {
            return Err(ChangeError::NotPermitted);
        }
        self.request_change(id, change).await
    }

    /// Asks the marketplace for a change and records the request in the timeline.
    pub async fn request_change(
        &self,
        id: SubscriptionId,
        change: VendorChange,
    ) -> Result<ChangeOutcome, ChangeError> {
        let subscription = self.store.get_subscription(id).await?;
        let marketplace = &subscription.external.marketplace;
        let provider = self
            .providers
            .get(marketplace)
            .ok_or_else(|| ChangeError::NotOffered(marketplace.to_string()))?;
        let capabilities = provider.capabilities();
        let offered = match change {
            VendorChange::Plan(_) | VendorChange::Quantity(_) => capabilities.vendor_changes_plan,
            VendorChange::Cancel => capabilities.vendor_cancels,
        };
        if !offered {
            return Err(ChangeError::NotOffered(marketplace.to_string()));
        }
        let changeable = match change {
            VendorChange::Cancel => matches!(
                subscription.status,
                SubscriptionStatus::Active | SubscriptionStatus::Suspended
            ),
            _ => subscription.status == SubscriptionStatus::Active,
        };
        if !changeable {
            return Err(ChangeError::NotChangeable(subscription.status));
        }
        let (kind, detail, result) = match &change {
            VendorChange::Plan(plan) => (
                "vendor_change_plan",
                serde_json::json!({ "plan_id": plan }),
                provider.change_plan(&subscription.external, plan).await,
            ),
            VendorChange::Quantity(quantity) => (
                "vendor_change_quantity",
                serde_json::json!({ "quantity": quantity }),
                provider
                    .change_quantity(&subscription.external, *quantity)
                    .await,
            ),
            VendorChange::Cancel => (
                "vendor_cancel",
                serde_json::json!({}),
                provider.cancel(&subscription.external).await,
            ),
        };
        let outcome = match &result {
            Ok(ChangeOutcome::Done) => "requested".to_owned(),
            Ok(ChangeOutcome::InProgress { operation_id }) => {
                format!("in progress (operation {operation_id})")
            }
            Err(error) => format!("refused: {error}"),
        };
        self.record(id, "vendor", kind, &outcome, detail).await?;
        if let Ok(ChangeOutcome::InProgress { operation_id }) = &result {
            // Not left to the marketplace's notification, which may never come.
            self.follow_change_later(id, &subscription.external, operation_id)
                .await?;
        }
        Ok(result?)
    }
}
