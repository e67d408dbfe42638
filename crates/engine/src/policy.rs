//! How we answer a marketplace that asks us to accept a plan or quantity change (Microsoft
//! lets the publisher refuse within 10 s, e.g. to block downgrades; seed 002), and whether a
//! Reinstate is honoured.

use marketlink_core::{Catalog, PlanId, Subscription};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangePolicy {
    /// Refuse a move to a plan listed earlier in the product's catalog (plans are listed from
    /// smallest to largest).
    pub refuse_downgrades: bool,
    /// Refuse a seat count below this.
    pub min_quantity: Option<u32>,
    /// Decline a marketplace's Reinstate of a suspended subscription (e.g. the vendor closed
    /// the account for abuse, not only for the unpaid bill): Microsoft's webhook page says a
    /// Reinstate that cannot be honoured is answered by deleting the subscription, so it is
    /// cancelled at the marketplace and ends cancelled on both sides.
    pub decline_reinstate: bool,
}

impl ChangePolicy {
    /// `Ok(())` to accept, `Err(reason)` to refuse.
    pub fn decide(
        &self,
        catalog: &Catalog,
        subscription: &Subscription,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), String> {
        if let (Some(min), Some(quantity)) = (self.min_quantity, quantity)
            && quantity < min
        {
            return Err(format!("quantity {quantity} is below the minimum of {min}"));
        }
        if let (true, Some(target), Some(current)) =
            (self.refuse_downgrades, plan, subscription.plan_id.as_ref())
        {
            let product = catalog.by_listing(
                &subscription.external.marketplace,
                &subscription.external.product_code,
            );
            let rank = |p: &PlanId| product.and_then(|pr| pr.plans.iter().position(|x| &x.id == p));
            if let (Some(from), Some(to)) = (rank(current), rank(target))
                && to < from
            {
                return Err(format!(
                    "downgrades from {current} to {target} are not offered"
                ));
            }
        }
        Ok(())
    }
}
