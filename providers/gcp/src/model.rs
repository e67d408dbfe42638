//! Partner Procurement API v1 resources (discovery doc revision 20250914, gcp.md §3 S8) and
//! how they read in marketlink's words. One marketlink subscription is one entitlement: with
//! multiple orders an account holds several, so the entitlement id is the key (S5).

use marketlink_core::{Alias, ExternalRef, Marketplace, PlanId, SubscriptionStatus, Term};
use serde::Deserialize;
use time::OffsetDateTime;

/// The alias kind under which an entitlement's `orderId` is kept.
pub const ORDER_ALIAS: &str = "order";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Account {
    pub name: String,
    pub state: String,
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Approval {
    pub name: String,
    pub state: String,
}

impl Account {
    /// Whether the `signup` approval is granted (REJECTED may still become APPROVED).
    pub fn signup_approved(&self) -> bool {
        self.approvals
            .iter()
            .any(|a| a.name == "signup" && a.state == "APPROVED")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Entitlement {
    /// `providers/{p}/entitlements/{id}`.
    pub name: String,
    /// `providers/{p}/accounts/{id}`.
    pub account: String,
    pub product: String,
    pub product_external_name: String,
    pub plan: String,
    pub new_pending_plan: String,
    pub offer: String,
    pub offer_duration: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub offer_end_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub new_offer_start_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub subscription_end_time: Option<OffsetDateTime>,
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub create_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub update_time: Option<OffsetDateTime>,
    pub usage_reporting_id: String,
    pub order_id: String,
    pub cancellation_reason: String,
}

/// The last segment of a resource name (`providers/p/entitlements/e` → `e`).
pub fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Entitlement {
    pub fn id(&self) -> &str {
        last_segment(&self.name)
    }

    pub fn account_id(&self) -> &str {
        last_segment(&self.account)
    }

    /// The reference `resolve`, `interpret` and `survey` all produce for this entitlement.
    pub fn external_ref(&self, marketplace: &Marketplace) -> ExternalRef {
        let product = if self.product_external_name.is_empty() {
            &self.product
        } else {
            &self.product_external_name
        };
        ExternalRef {
            marketplace: marketplace.clone(),
            external_id: self.id().to_owned(),
            product_code: product.clone(),
            customer_id: self.account_id().to_owned(),
            customer_account_id: None,
            license_arn: None,
        }
    }

    pub fn plan_id(&self) -> Option<PlanId> {
        (!self.plan.is_empty()).then(|| PlanId::new(self.plan.clone()))
    }

    pub fn aliases(&self) -> Vec<Alias> {
        if self.order_id.is_empty() {
            return Vec::new();
        }
        vec![Alias::new(ORDER_ALIAS, self.order_id.clone())]
    }

    /// The offer's term (private offers: duration and end), when Google states one.
    pub fn term(&self) -> Option<Term> {
        let end = self.offer_end_time.or(self.subscription_end_time);
        let unit = (!self.offer_duration.is_empty()).then(|| self.offer_duration.clone());
        if end.is_none() && unit.is_none() {
            return None;
        }
        Some(Term {
            start: self.new_offer_start_time,
            end,
            unit,
        })
    }

    /// The subscription status this state means (EntitlementState, S8).
    pub fn status(&self) -> Option<SubscriptionStatus> {
        Some(match self.state.as_str() {
            "ENTITLEMENT_ACTIVATION_REQUESTED" => SubscriptionStatus::Pending,
            // A pending cancellation is still usable until the term ends (S5, codelab step 5):
            // not marketlink's UnsubscribePending, whose access has ended.
            "ENTITLEMENT_ACTIVE"
            | "ENTITLEMENT_PENDING_PLAN_CHANGE"
            | "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"
            | "ENTITLEMENT_PENDING_CANCELLATION" => SubscriptionStatus::Active,
            "ENTITLEMENT_CANCELLED" => SubscriptionStatus::Cancelled,
            "ENTITLEMENT_SUSPENDED" => SubscriptionStatus::Suspended,
            _ => return None,
        })
    }
}
