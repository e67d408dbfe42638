//! Procurement API resources as the discovery document defines them (gcp.md §3, S8): field
//! names in camelCase, timestamps RFC 3339 with `Z`, absent fields left out.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `EntitlementState` values (S8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntitlementState {
    #[default]
    EntitlementActivationRequested,
    EntitlementActive,
    EntitlementPendingCancellation,
    EntitlementCancelled,
    EntitlementPendingPlanChange,
    EntitlementPendingPlanChangeApproval,
    EntitlementSuspended,
}

impl EntitlementState {
    /// The wire name (`ENTITLEMENT_ACTIVE`...).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `Approval.state` (S8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub name: String,
    pub state: ApprovalState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub update_time: String,
}

/// A buyer's procurement account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub name: String,
    pub provider: String,
    /// `ACCOUNT_ACTIVE`: accounts start active now (gcp.md §2, ACCOUNT_ACTIVATION_REQUESTED is
    /// deprecated); the vendor's `signup` approval is what stays pending.
    pub state: String,
    pub approvals: Vec<Approval>,
    pub create_time: String,
    pub update_time: String,
}

/// An entitlement: one order of the product by an account.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    pub name: String,
    pub account: String,
    pub provider: String,
    pub product_external_name: String,
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_pending_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_pending_offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_end_time: Option<String>,
    pub state: EntitlementState,
    pub create_time: String,
    pub update_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    pub order_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlement_benefit_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_to_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub project: String,
}

impl Entitlement {
    /// The last path segment of `name`.
    pub fn id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or_default()
    }

    /// The last path segment of `account`.
    pub fn account_id(&self) -> &str {
        self.account.rsplit('/').next().unwrap_or_default()
    }
}

/// Google's timestamp form (RFC 3339, UTC, `Z`).
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}
