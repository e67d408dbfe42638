//! Changes the vendor starts: plan, quantity, cancellation (Microsoft lets the publisher do
//! all three; AWS changes start on the marketplace only). The marketplace confirms through
//! its notification, which the inbox applies like any other.

use marketlink_core::{ChangeOutcome, PlanId, ProviderError, SubscriptionId, SubscriptionStatus};
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
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
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
        Ok(result?)
    }
}
