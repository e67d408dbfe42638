//! The marketplace's own view of a subscription, in our vocabulary, for reconciliation
//! ([`MarketplaceProvider::survey`]).
//!
//! [`MarketplaceProvider::survey`]: crate::MarketplaceProvider::survey

use serde::{Deserialize, Serialize};

use crate::{Entitlement, ExternalRef, PlanId, SubscriptionStatus};

/// What the marketplace says about one subscription. `None` means the marketplace does not
/// tell (AWS has no status for a contract, only entitlements): it is not compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketplaceView {
    pub subscription: ExternalRef,
    pub status: Option<SubscriptionStatus>,
    pub plan_id: Option<PlanId>,
    pub quantity: Option<u32>,
    /// The full set, when the marketplace keeps entitlements.
    pub entitlements: Option<Vec<Entitlement>>,
    /// Why the marketplace's status could not be read (a missing permission, an outage):
    /// `status` is then `None`, nothing is changed, and reconciliation reports the reason.
    #[serde(default)]
    pub status_unknown: Option<String>,
}

impl MarketplaceView {
    /// A view that states nothing yet; fill in what the marketplace says.
    pub fn of(subscription: ExternalRef) -> Self {
        Self {
            subscription,
            status: None,
            plan_id: None,
            quantity: None,
            entitlements: None,
            status_unknown: None,
        }
    }
}
